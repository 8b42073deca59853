package collector

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestServeClosesIdleConnections: a connection left idle after a scrape
// is closed by the server, not held for good (any container or LAN
// neighbour can reach --metrics-addr).
func TestServeClosesIdleConnections(t *testing.T) {
	old := idleTimeout
	idleTimeout = 200 * time.Millisecond
	t.Cleanup(func() { idleTimeout = old })
	addr, stop, err := Serve("127.0.0.1:0", prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	// Now idle: the server must hang up. The deadline only bounds the
	// test; without the fix the read would wait for good.
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection not closed by the server: %v", err)
	}
}

// TestServeRefusesForeignHostOnLoopback: on a loopback address the metrics
// answer only to loopback host names, so a web page cannot read them by
// DNS rebinding; elsewhere any Host is served.
func TestServeRefusesForeignHostOnLoopback(t *testing.T) {
	for _, tc := range []struct {
		listen, host string
		want         int
	}{
		{"127.0.0.1:0", "rebind.example:9100", http.StatusForbidden},
		{"127.0.0.1:0", "127.0.0.1:9100", http.StatusOK},
		{"127.0.0.1:0", "localhost:9100", http.StatusOK},
		{"[::1]:0", "[::1]:9100", http.StatusOK},
		{"0.0.0.0:0", "node1.example:9100", http.StatusOK},
	} {
		addr, stop, err := Serve(tc.listen, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			if tc.listen == "[::1]:0" {
				continue // no IPv6 here
			}
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(addr)
		req, err := http.NewRequest("GET", "http://"+net.JoinHostPort("127.0.0.1", port)+"/metrics", nil)
		if tc.listen == "[::1]:0" {
			req, err = http.NewRequest("GET", "http://"+addr+"/metrics", nil)
		}
		if err != nil {
			t.Fatal(err)
		}
		req.Host = tc.host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			stop()
			t.Fatal(err)
		}
		resp.Body.Close()
		stop()
		if resp.StatusCode != tc.want {
			t.Errorf("listen %s, Host %q: status %d, want %d", tc.listen, tc.host, resp.StatusCode, tc.want)
		}
	}
}
