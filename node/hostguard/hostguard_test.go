package hostguard

import (
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestLoopbackHost(t *testing.T) {
	for _, tc := range []struct {
		host string
		want bool
	}{
		{"localhost", true}, {"LOCALHOST:9100", true}, {"127.0.0.1", true}, {"127.0.0.1:9100", true},
		{"127.1.2.3:80", true}, {"[::1]:9100", true}, {"::1", true},
		{"", false}, {"evil.example", false}, {"evil.example:9100", false}, {"localhost.evil.example:9100", false},
		{"10.0.0.1:9100", false}, {"0.0.0.0:9100", false}, {"[::]:9100", false}, {"127.0.0.1.nip.io", false},
	} {
		if got := LoopbackHost(tc.host); got != tc.want {
			t.Errorf("LoopbackHost(%q) = %v, want %v", tc.host, got, tc.want)
		}
	}
}

func TestLoopbackAddr(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want bool
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, true},
		{&net.TCPAddr{IP: net.IPv6loopback, Port: 1}, true},
		{&net.TCPAddr{IP: net.IPv4zero, Port: 1}, false},
		{&net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 1}, false},
		{&net.UnixAddr{Name: "/x", Net: "unix"}, false},
	} {
		if got := LoopbackAddr(tc.addr); got != tc.want {
			t.Errorf("LoopbackAddr(%v) = %v, want %v", tc.addr, got, tc.want)
		}
	}
}

func TestHandler(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	for _, tc := range []struct {
		loopback bool
		host     string
		want     int
	}{
		{true, "127.0.0.1:9100", http.StatusTeapot},
		{true, "localhost:9100", http.StatusTeapot},
		{true, "rebind.example:9100", http.StatusForbidden},
		{false, "rebind.example:9100", http.StatusTeapot},
	} {
		r := httptest.NewRequest("GET", "/metrics", nil)
		r.Host = tc.host
		w := httptest.NewRecorder()
		Handler(tc.loopback, ok).ServeHTTP(w, r)
		if w.Code != tc.want {
			t.Errorf("loopback %v, Host %q: status %d, want %d", tc.loopback, tc.host, w.Code, tc.want)
		}
	}
}
