package node

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/identity"
	"github.com/shoal-org/shoal/node/ui"
)

const testUIToken = "SHOALUI-0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab"

// An agent refuses --ui-addr until a token exists, loopback or not (any
// local user reaches 127.0.0.1).
func TestListenUIRefusesNonLoopbackWithoutToken(t *testing.T) {
	dir := t.TempDir()
	a := &Agent{cfg: Config{DataDir: dir, UIAddr: "0.0.0.0:0"}}
	for _, addr := range []string{"0.0.0.0:0", "127.0.0.1:0", "localhost:0"} {
		a.cfg.UIAddr = addr
		if ln, _, err := a.listenUI(); !errors.Is(err, ui.ErrNeedsToken) {
			if ln != nil {
				ln.Close()
			}
			t.Fatalf("listenUI %s without a token: %v, want ui.ErrNeedsToken", addr, err)
		}
	}
	a.cfg.UIAddr = "0.0.0.0:0"
	if s := a.newUIServer(false); s.IdleTimeout <= 0 || s.ReadTimeout <= 0 {
		t.Fatalf("dashboard server without idle (%v) or read (%v) timeouts: idle connections are held for good", s.IdleTimeout, s.ReadTimeout)
	}
	if _, err := ui.EnsureToken(dir, false); err != nil {
		t.Fatal(err)
	}
	ln, loopback, err := a.listenUI()
	if err != nil {
		t.Fatalf("listenUI with a token: %v", err)
	}
	ln.Close()
	if loopback {
		t.Fatal("0.0.0.0 reported as loopback")
	}
	a.cfg.UIAddr = "localhost:0"
	ln, loopback, err = a.listenUI()
	if err != nil || !loopback {
		t.Fatalf("localhost: loopback %v, %v", loopback, err)
	}
	ln.Close()
}

// The handler end to end, on an agent in no cluster: the page is public,
// the API is behind the guard, the stream pushes a state event.
func TestUIHandler(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := &Agent{cfg: Config{DataDir: dir}, ctx: ctx, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		id: identity.Node{NodeID: "n1", Hostname: "h1"}}
	tok, err := ui.EnsureToken(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.newUIServer(false).Handler)
	defer srv.Close()

	do := func(method, path string, hdr map[string]string) *http.Response {
		t.Helper()
		r, _ := http.NewRequestWithContext(ctx, method, srv.URL+path, strings.NewReader(`{"replicas":3}`))
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		res, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	for _, p := range []string{"/", "/app.js", "/style.css"} {
		res := do("GET", p, nil)
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || len(body) == 0 {
			t.Fatalf("GET %s: %d", p, res.StatusCode)
		}
		if res.Header.Get("X-Frame-Options") != "DENY" || !strings.Contains(res.Header.Get("Content-Security-Policy"), "default-src 'self'") {
			t.Fatalf("GET %s: security headers missing: %v", p, res.Header)
		}
	}
	for _, tc := range []struct {
		hdr map[string]string
		ok  bool
	}{{nil, false}, {map[string]string{ui.TokenHeader: "SHOALUI-nope"}, false}, {map[string]string{ui.TokenHeader: tok}, true}} {
		res := do("GET", "/ui/v1/auth", tc.hdr)
		var ar uiAuthResponse
		if err := json.NewDecoder(res.Body).Decode(&ar); err != nil || res.StatusCode != 200 {
			t.Fatalf("auth: %d, %v", res.StatusCode, err)
		}
		res.Body.Close()
		if !ar.TokenRequired || ar.OK != tc.ok {
			t.Fatalf("auth with %v = %+v, want token_required and ok=%v", tc.hdr, ar, tc.ok)
		}
	}
	if res := do("GET", "/ui/v1/state", nil); res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("state without token: %d", res.StatusCode)
	}
	if res := do("POST", "/ui/v1/services/web/scale", map[string]string{ui.TokenHeader: tok}); res.StatusCode != http.StatusForbidden {
		t.Fatalf("scale without the CSRF header: %d", res.StatusCode)
	}
	// With both headers the request reaches the CLI's handler, which
	// answers that this node is in no cluster.
	if res := do("POST", "/ui/v1/services/web/scale", map[string]string{ui.TokenHeader: tok, ui.CSRFHeader: "1"}); res.StatusCode != http.StatusPreconditionFailed {
		t.Fatalf("scale outside a cluster: %d, want 412 from the API handler", res.StatusCode)
	}
	res := do("GET", "/ui/v1/state", map[string]string{ui.TokenHeader: tok})
	var st ui.State
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil || res.StatusCode != 200 {
		t.Fatalf("state: %d, %v", res.StatusCode, err)
	}
	res.Body.Close()
	if st.Joined || st.NodeID != "n1" || st.Nodes == nil {
		t.Fatalf("state %+v", st)
	}

	sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
	defer scancel()
	r, _ := http.NewRequestWithContext(sctx, "GET", srv.URL+"/ui/v1/stream", nil)
	r.Header.Set(ui.TokenHeader, tok)
	res, err = http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("stream content type %q", ct)
	}
	buf := make([]byte, 0, 4096)
	for !strings.Contains(string(buf), "\n\n") {
		chunk := make([]byte, 1024)
		n, err := res.Body.Read(chunk)
		buf = append(buf, chunk[:n]...)
		if err != nil {
			t.Fatalf("stream read: %v (got %q)", err, buf)
		}
	}
	if !strings.HasPrefix(string(buf), "event: state\ndata: {") {
		t.Fatalf("stream began %q", buf)
	}
}

// sseReader reads "event: state" blocks off a stream.
type sseReader struct {
	t   *testing.T
	r   io.Reader
	buf []byte
}

// The stream pushes a write made through the dashboard's buttons (the
// CLI's scale and node-update handlers) as soon as the store applies it:
// with the periodic recheck out of the way, only Store.Subscribe can wake it.
func (s *sseReader) next() ui.State {
	s.t.Helper()
	for {
		if i := strings.Index(string(s.buf), "\n\n"); i >= 0 {
			block := string(s.buf[:i])
			s.buf = s.buf[i+2:]
			data, ok := strings.CutPrefix(block, "event: state\ndata: ")
			if !ok {
				continue // a keepalive
			}
			var st ui.State
			if err := json.Unmarshal([]byte(data), &st); err != nil {
				s.t.Fatalf("state event %q: %v", data, err)
			}
			return st
		}
		chunk := make([]byte, 4096)
		n, err := s.r.Read(chunk)
		s.buf = append(s.buf, chunk[:n]...)
		if err != nil {
			s.t.Fatalf("stream read: %v (buffered %q)", err, s.buf)
		}
	}
}

func TestUIStreamPushesStoreChanges(t *testing.T) {
	old := uiStreamRecheck
	uiStreamRecheck = time.Hour
	t.Cleanup(func() { uiStreamRecheck = old })
	a := newSoloAgent(t)
	tok, err := ui.EnsureToken(a.cfg.DataDir, false)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.newUIServer(true).Handler) // loopback
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	r, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/ui/v1/stream", nil)
	r.Header.Set(ui.TokenHeader, tok)
	res, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("stream: %d", res.StatusCode)
	}
	events := &sseReader{t: t, r: res.Body}
	replicas := func(st ui.State, name string) uint64 {
		for _, s := range st.Services {
			if s.Name == name {
				return s.Replicas
			}
		}
		t.Fatalf("no service %s in %+v", name, st.Services)
		return 0
	}
	st := events.next()
	if !st.Joined || len(st.Nodes) != 1 || replicas(st, "web") != 3 {
		t.Fatalf("first state: %+v", st)
	}

	post := func(path, body string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+path, strings.NewReader(body))
		req.Header.Set(ui.CSRFHeader, "1")
		req.Header.Set(ui.TokenHeader, tok)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("POST %s: %d %s", path, res.StatusCode, b)
		}
	}
	post("/ui/v1/services/web/scale", `{"replicas":5}`)
	for st = events.next(); replicas(st, "web") != 5; st = events.next() {
	}
	post("/ui/v1/nodes/"+a.id.NodeID+"/update", `{"availability":"drain"}`)
	for st = events.next(); st.Nodes[0].Availability != api.AvailabilityDrain; st = events.next() {
	}
	if got := replicas(st, "web"); got != 5 {
		t.Fatalf("web replicas %d after the drain, want 5", got)
	}
	// Bad input through the dashboard is refused by the CLI's checks and
	// changes nothing.
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/ui/v1/services/web/scale", strings.NewReader(`{"replicas":2000000}`))
	req.Header.Set(ui.CSRFHeader, "1")
	req.Header.Set(ui.TokenHeader, tok)
	bad, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	bad.Body.Close()
	if bad.StatusCode != http.StatusBadRequest {
		t.Fatalf("scale to 2000000: %d, want 400", bad.StatusCode)
	}
	if s, _ := a.cl.Store.ServiceByName("web"); s.Spec.Replicas != 5 {
		t.Fatalf("refused scale changed replicas to %d", s.Spec.Replicas)
	}
}
