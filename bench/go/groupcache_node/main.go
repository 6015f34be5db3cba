// A golang/groupcache node for the cluster benchmark (bench/cluster.py).
//
// It serves group "bench" on one port: the groupcache peer protocol under
// /_groupcache/, an API that reads through the group, GET /api?key=K (a key
// owned by another member is fetched over the peer protocol), and GET /stats,
// the group's counters as JSON.
//
// The loader answers the keys k0 .. k<keys-1> with the key padded with dots to
// 100 bytes (the value the Python nodes of the benchmark give), and fails for
// any other key.
//
// Flags:
//
//	-port        port to listen on, on 127.0.0.1
//	-peers       comma-separated URLs of every member, this node's included
//	-keys        how many keys the loader answers (default 10000)
//	-cache-bytes the group's cache budget; 0 keeps nothing (every read of a key
//	             owned elsewhere is a peer fetch; default 64 MiB)
//	-idle-conns  idle connections the peer client keeps per host; 0 keeps Go's
//	             default transport (http.DefaultTransport: 2 per host)
//	-api-port    serve /api and /stats on this port of their own instead of on
//	             the peer port (0: the peer port)
//	-tls-cert, -tls-key, -tls-ca
//	             mutual TLS: the peer port serves HTTPS (TLS 1.2 or newer) and
//	             requires a client certificate signed by the CA; peer requests
//	             present the node's certificate and verify the peers' against
//	             the CA; the node's URL is https://. The API port, if one of its
//	             own, serves HTTPS without asking for a client certificate (a
//	             load generator has none), as shoal's API does by default.
//	-http2       with TLS, let peers speak HTTP/2 (ALPN) instead of HTTP/1.1
//
// The node prints "READY <port>" once it serves; it exits when its standard
// input closes or on SIGTERM.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/golang/groupcache"
)

const valueSize = 100

// loggingTransport writes the failed peer requests to stderr (groupcache counts
// them in PeerErrors but keeps no trace of why).
type loggingTransport struct{ next http.RoundTripper }

func (t loggingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := t.next.RoundTrip(r)
	if err != nil {
		fmt.Fprintf(os.Stderr, "peer request %s failed: %v\n", r.URL, err)
	} else if res.StatusCode != http.StatusOK {
		fmt.Fprintf(os.Stderr, "peer request %s answered %s\n", r.URL, res.Status)
	}
	return res, err
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

// mutualTLS reads the node's certificate and the CA: the peer server requires a
// client certificate signed by the CA, the peer client presents the node's
// certificate and verifies the server's against the CA, and the API server
// asks for no client certificate.
func mutualTLS(certFile, keyFile, caFile string) (peer, client, api *tls.Config, err error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, nil, nil, err
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, nil, nil, err
	}
	cas := x509.NewCertPool()
	if !cas.AppendCertsFromPEM(pem) {
		return nil, nil, nil, errors.New("no certificate in " + caFile)
	}
	peer = &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    cas,
		MinVersion:   tls.VersionTLS12,
	}
	client = &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      cas,
		MinVersion:   tls.VersionTLS12,
	}
	api = &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
	}
	return peer, client, api, nil
}

func listen(port int) net.Listener {
	listener, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		fail(err)
	}
	return listener
}

func main() {
	port := flag.Int("port", 0, "port to listen on (127.0.0.1)")
	peers := flag.String("peers", "", "comma-separated URLs of every member")
	keys := flag.Int("keys", 10000, "keys k0 .. k<keys-1> the loader answers")
	cacheBytes := flag.Int64("cache-bytes", 64<<20, "the group's cache budget (0: none)")
	idleConns := flag.Int("idle-conns", 0, "idle peer connections per host (0: Go's default transport)")
	apiPort := flag.Int("api-port", 0, "port of the API, if not the peer port")
	tlsCert := flag.String("tls-cert", "", "PEM file of the node's certificate (mutual TLS, with -tls-key, -tls-ca)")
	tlsKey := flag.String("tls-key", "", "PEM file of the certificate's key")
	tlsCA := flag.String("tls-ca", "", "PEM file of the CA that signs every member's certificate")
	http2 := flag.Bool("http2", false, "with TLS, let peers speak HTTP/2")
	flag.Parse()

	listener := listen(*port)
	bound := listener.Addr().(*net.TCPAddr).Port
	var apiListener net.Listener
	if *apiPort != 0 {
		apiListener = listen(*apiPort)
	}
	scheme := "http"
	var peerTLS, clientTLS, apiTLS *tls.Config
	if *tlsCert != "" || *tlsKey != "" || *tlsCA != "" {
		if *tlsCert == "" || *tlsKey == "" || *tlsCA == "" {
			fail(errors.New("mutual TLS needs -tls-cert, -tls-key and -tls-ca"))
		}
		var err error
		if peerTLS, clientTLS, apiTLS, err = mutualTLS(*tlsCert, *tlsKey, *tlsCA); err != nil {
			fail(err)
		}
		scheme = "https"
	}
	self := fmt.Sprintf("%s://127.0.0.1:%d", scheme, bound)

	members := []string{}
	for _, p := range strings.Split(*peers, ",") {
		if p != "" {
			members = append(members, p)
		}
	}
	pool := groupcache.NewHTTPPoolOpts(self, nil)
	var transport http.RoundTripper = http.DefaultTransport
	if *idleConns > 0 || clientTLS != nil {
		tuned := http.DefaultTransport.(*http.Transport).Clone()
		if *idleConns > 0 {
			tuned.MaxIdleConnsPerHost = *idleConns
			tuned.MaxIdleConns = *idleConns * len(members)
		}
		if clientTLS != nil {
			tuned.TLSClientConfig = clientTLS
			tuned.ForceAttemptHTTP2 = *http2
		}
		transport = tuned
	}
	logged := loggingTransport{transport}
	pool.Transport = func(context.Context) http.RoundTripper { return logged }
	// After the transport: Set copies it into each peer's client.
	pool.Set(members...)

	group := groupcache.NewGroup("bench", *cacheBytes, groupcache.GetterFunc(
		func(ctx context.Context, key string, dest groupcache.Sink) error {
			n, err := strconv.Atoi(strings.TrimPrefix(key, "k"))
			if !strings.HasPrefix(key, "k") || err != nil || n < 0 || n >= *keys ||
				strconv.Itoa(n) != key[1:] {
				return errors.New("key not found: " + key)
			}
			value := []byte(key)
			for len(value) < valueSize {
				value = append(value, '.')
			}
			return dest.SetBytes(value)
		}))

	mux := http.NewServeMux()
	mux.Handle("/_groupcache/", pool)
	api := mux
	if apiListener != nil {
		api = http.NewServeMux()
	}
	api.HandleFunc("/api", func(w http.ResponseWriter, r *http.Request) {
		// Not the request's context: a client that hangs up (wrk, at the end of a
		// run) must not turn the fetch it was waiting for into a peer error.
		var value groupcache.ByteView
		key := r.URL.Query().Get("key")
		if err := group.Get(context.Background(), key, groupcache.ByteViewSink(&value)); err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		value.WriteTo(w)
	})
	api.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		s := &group.Stats
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]int64{
			"gets":            s.Gets.Get(),
			"hits":            s.CacheHits.Get(),
			"loads":           s.Loads.Get(),
			"local_loads":     s.LocalLoads.Get(),
			"peer_loads":      s.PeerLoads.Get(),
			"peer_errors":     s.PeerErrors.Get(),
			"server_requests": s.ServerRequests.Get(),
			"hot_items":       group.CacheStats(groupcache.HotCache).Items,
			"main_items":      group.CacheStats(groupcache.MainCache).Items,
		})
	})

	go func() {
		// The benchmark owns this process: when it closes our stdin, stop.
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	if apiListener != nil {
		// The API speaks HTTP/1.1 only, as wrk does.
		go func() { fail(serve(apiListener, api, apiTLS, false)) }()
	}
	fmt.Printf("READY %d\n", bound)
	fail(serve(listener, mux, peerTLS, *http2))
}

// serve answers on listener: plain HTTP/1.1 without conf, else HTTPS, with
// HTTP/2 offered (ALPN "h2") only if http2.
func serve(listener net.Listener, handler http.Handler, conf *tls.Config, http2 bool) error {
	server := &http.Server{Handler: handler, TLSConfig: conf}
	if conf == nil {
		return server.Serve(listener)
	}
	if !http2 {
		// A non-nil empty map turns off the server's automatic HTTP/2.
		server.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	}
	return server.ServeTLS(listener, "", "")
}
