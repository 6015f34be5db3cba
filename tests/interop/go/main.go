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
package main

import (
	"context"
	"crypto/sha256"
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

func main() {
	peers := flag.String("peers", "", "comma-separated URLs of the other members")
	flag.Parse()

	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	port := listener.Addr().(*net.TCPAddr).Port
	self := fmt.Sprintf("http://127.0.0.1:%d", port)

	pool := groupcache.NewHTTPPoolOpts(self, nil)
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
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
