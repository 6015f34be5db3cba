// A tiny golang/groupcache node for interoperability tests with shoal.
//
// It serves group "scores" on one port: the groupcache peer protocol under
// /_groupcache/ and a small API, GET /api?key=K, that reads through the group
// (so a key owned by another peer is fetched over the peer protocol).
//
// The loader answers "go:" + (hex(sha256(K)) * 2)[:100] so a test can tell
// which node loaded a value; keys starting with "fail:" make it fail.
//
// Flags: -peers (comma-separated URLs of the other members). The node listens
// on 127.0.0.1 with a port picked by the system and prints "READY <port>" once
// it serves; it exits when its standard input closes.
//
// Mutual TLS: with -tls-cert, -tls-key and -tls-ca the node serves HTTPS on
// its port (TLS 1.2 or newer) and requires every client, peers and API callers
// alike, to present a certificate signed by the CA; its peer requests present
// its own certificate and verify the peers' against the CA, and its URL is
// https://. -no-client-cert makes those peer requests present no certificate
// (a peer must refuse them).
package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/golang/groupcache"
)

func value(key string) string {
	sum := sha256.Sum256([]byte(key))
	h := hex.EncodeToString(sum[:])
	return "go:" + (h + h)[:100]
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

// mutualTLS reads the node's certificate and the CA: the server side requires
// a client certificate signed by the CA, the client side presents the node's
// certificate (unless noClientCert) and verifies the server's against the CA.
func mutualTLS(certFile, keyFile, caFile string, noClientCert bool) (*tls.Config, *tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, nil, err
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, nil, err
	}
	cas := x509.NewCertPool()
	if !cas.AppendCertsFromPEM(pem) {
		return nil, nil, errors.New("no certificate in " + caFile)
	}
	server := &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    cas,
		MinVersion:   tls.VersionTLS12,
	}
	client := &tls.Config{RootCAs: cas, MinVersion: tls.VersionTLS12}
	if !noClientCert {
		client.Certificates = []tls.Certificate{cert}
	}
	return server, client, nil
}

func main() {
	peers := flag.String("peers", "", "comma-separated URLs of the other members")
	tlsCert := flag.String("tls-cert", "", "PEM file of the node's certificate (with -tls-key, -tls-ca: mutual TLS)")
	tlsKey := flag.String("tls-key", "", "PEM file of the certificate's key")
	tlsCA := flag.String("tls-ca", "", "PEM file of the CA that signs every member's certificate")
	noClientCert := flag.Bool("no-client-cert", false, "with TLS: present no certificate in peer requests")
	flag.Parse()

	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	port := listener.Addr().(*net.TCPAddr).Port
	scheme := "http"
	var transport http.RoundTripper = http.DefaultTransport
	if *tlsCert != "" || *tlsKey != "" || *tlsCA != "" {
		if *tlsCert == "" || *tlsKey == "" || *tlsCA == "" {
			fail(errors.New("mutual TLS needs -tls-cert, -tls-key and -tls-ca"))
		}
		server, client, err := mutualTLS(*tlsCert, *tlsKey, *tlsCA, *noClientCert)
		if err != nil {
			fail(err)
		}
		listener = tls.NewListener(listener, server)
		tuned := http.DefaultTransport.(*http.Transport).Clone()
		tuned.TLSClientConfig = client
		transport = tuned
		scheme = "https"
	}
	self := fmt.Sprintf("%s://127.0.0.1:%d", scheme, port)

	pool := groupcache.NewHTTPPoolOpts(self, nil)
	pool.Transport = func(context.Context) http.RoundTripper { return transport }
	// After the transport: Set copies it into each peer's client.
	members := []string{self}
	for _, p := range strings.Split(*peers, ",") {
		if p != "" {
			members = append(members, p)
		}
	}
	pool.Set(members...)

	group := groupcache.NewGroup("scores", 64<<20, groupcache.GetterFunc(
		func(ctx context.Context, key string, dest groupcache.Sink) error {
			if strings.HasPrefix(key, "fail:") {
				return errors.New("go loader failed for " + key)
			}
			return dest.SetString(value(key))
		}))

	mux := http.NewServeMux()
	mux.Handle("/_groupcache/", pool)
	mux.HandleFunc("/api", func(w http.ResponseWriter, r *http.Request) {
		var out string
		if err := group.Get(r.Context(), r.URL.Query().Get("key"), groupcache.StringSink(&out)); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, out)
	})
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "loads=%d peer_loads=%d peer_errors=%d server_requests=%d\n",
			group.Stats.Loads.Get(), group.Stats.PeerLoads.Get(),
			group.Stats.PeerErrors.Get(), group.Stats.ServerRequests.Get())
	})

	go func() {
		// The test owns this process: when it closes our stdin, stop.
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	fmt.Printf("READY %d\n", port)
	if err := http.Serve(listener, mux); err != nil {
		fail(err)
	}
}
