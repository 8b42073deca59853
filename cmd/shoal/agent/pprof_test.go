package agent

import (
	"context"
	"net/http"
	"testing"
)

// TestPprofRefusesForeignHost: the pprof listener (loopback only) answers
// a request naming another host (DNS rebinding from a web page) with 403.
func TestPprofRefusesForeignHost(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, err := servePprof(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]int{"rebind.example:6060": http.StatusForbidden, addr: http.StatusOK, "localhost": http.StatusOK} {
		req, err := http.NewRequest("GET", "http://"+addr+"/debug/pprof/cmdline", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Host %q: status %d, want %d", host, resp.StatusCode, want)
		}
	}
}
