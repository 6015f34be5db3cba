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
//
// The node prints "READY <port>" once it serves; it exits when its standard
// input closes or on SIGTERM.
package main

import (
	"context"
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

func main() {
	port := flag.Int("port", 0, "port to listen on (127.0.0.1)")
	peers := flag.String("peers", "", "comma-separated URLs of every member")
	keys := flag.Int("keys", 10000, "keys k0 .. k<keys-1> the loader answers")
	cacheBytes := flag.Int64("cache-bytes", 64<<20, "the group's cache budget (0: none)")
	idleConns := flag.Int("idle-conns", 0, "idle peer connections per host (0: Go's default transport)")
	flag.Parse()

	listener, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bound := listener.Addr().(*net.TCPAddr).Port
	self := fmt.Sprintf("http://127.0.0.1:%d", bound)

	members := []string{}
	for _, p := range strings.Split(*peers, ",") {
		if p != "" {
			members = append(members, p)
		}
	}
	pool := groupcache.NewHTTPPoolOpts(self, nil)
	var transport http.RoundTripper = http.DefaultTransport
	if *idleConns > 0 {
		tuned := http.DefaultTransport.(*http.Transport).Clone()
		tuned.MaxIdleConnsPerHost = *idleConns
		tuned.MaxIdleConns = *idleConns * len(members)
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
	mux.HandleFunc("/api", func(w http.ResponseWriter, r *http.Request) {
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
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
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
	fmt.Printf("READY %d\n", bound)
	if err := http.Serve(listener, mux); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
