package node

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

const testUIToken = "SHOALUI-0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab"

func TestUIGuard(t *testing.T) {
	noToken := func() (string, error) { return "", nil }
	withToken := func() (string, error) { return testUIToken, nil }
	broken := func() (string, error) { return "", errors.New("UI token file is malformed") }
	type req struct {
		method, host string
		header       map[string]string
	}
	get := func(host string, h map[string]string) req { return req{http.MethodGet, host, h} }
	post := func(host string, h map[string]string) req { return req{http.MethodPost, host, h} }
	csrf := map[string]string{uiCSRFHeader: "1"}
	tokHdr := map[string]string{uiTokenHeader: testUIToken}
	both := map[string]string{uiTokenHeader: testUIToken, uiCSRFHeader: "1"}
	cases := []struct {
		name     string
		loopback bool
		token    func() (string, error)
		r        req
		want     int // 0 = allowed
	}{
		{"loopback, no token, loopback host", true, noToken, get("127.0.0.1:8080", nil), 0},
		{"loopback, no token, localhost", true, noToken, get("localhost:8080", nil), 0},
		{"loopback, no token, ipv6 loopback", true, noToken, get("[::1]:8080", nil), 0},
		{"loopback, no token, rebound host name", true, noToken, get("evil.example:8080", nil), http.StatusForbidden},
		{"loopback, no token, post with csrf header", true, noToken, post("127.0.0.1:8080", csrf), 0},
		{"loopback, no token, post without csrf header", true, noToken, post("127.0.0.1:8080", nil), http.StatusForbidden},
		{"loopback, no token, post from another origin", true, noToken,
			post("127.0.0.1:8080", map[string]string{uiCSRFHeader: "1", "Origin": "http://evil.example"}), http.StatusForbidden},
		{"loopback, no token, post from own origin", true, noToken,
			post("127.0.0.1:8080", map[string]string{uiCSRFHeader: "1", "Origin": "http://127.0.0.1:8080"}), 0},
		{"non-loopback without token fails closed", false, noToken, get("10.0.0.1:8080", nil), http.StatusForbidden},
		{"token: missing", false, withToken, get("10.0.0.1:8080", nil), http.StatusUnauthorized},
		{"token: wrong", false, withToken, get("10.0.0.1:8080", map[string]string{uiTokenHeader: testUIToken + "x"}), http.StatusUnauthorized},
		{"token: wrong, same length", false, withToken,
			get("10.0.0.1:8080", map[string]string{uiTokenHeader: strings.Replace(testUIToken, "0", "1", 1)}), http.StatusUnauthorized},
		{"token: right", false, withToken, get("10.0.0.1:8080", tokHdr), 0},
		{"token: right on loopback too", true, withToken, get("127.0.0.1:8080", tokHdr), 0},
		{"token: loopback without it once one exists", true, withToken, get("127.0.0.1:8080", nil), http.StatusUnauthorized},
		{"token: post with token and csrf header", false, withToken, post("10.0.0.1:8080", both), 0},
		{"token: post with token but no csrf header", false, withToken, post("10.0.0.1:8080", tokHdr), http.StatusForbidden},
		{"token: post with csrf header but no token", false, withToken, post("10.0.0.1:8080", csrf), http.StatusUnauthorized},
		{"token: cookie only is not enough (get)", false, withToken,
			get("10.0.0.1:8080", map[string]string{"Cookie": "shoal_ui_token=" + testUIToken}), http.StatusUnauthorized},
		{"token: cookie only is not enough (post)", false, withToken,
			post("10.0.0.1:8080", map[string]string{"Cookie": "shoal_ui_token=" + testUIToken, uiCSRFHeader: "1"}), http.StatusUnauthorized},
		{"unreadable token file refuses", true, broken, get("127.0.0.1:8080", tokHdr), http.StatusForbidden},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.r.method, "http://"+tc.r.host+"/ui/v1/state", nil)
			r.Host = tc.r.host
			for k, v := range tc.r.header {
				r.Header.Set(k, v)
			}
			err := uiGuard{loopback: tc.loopback, token: tc.token}.check(r)
			var he *httpError
			switch {
			case tc.want == 0 && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != 0 && !errors.As(err, &he):
				t.Fatalf("allowed (err %v), want status %d", err, tc.want)
			case tc.want != 0 && he.status != tc.want:
				t.Fatalf("status %d (%v), want %d", he.status, err, tc.want)
			}
		})
	}
}

func TestUIAddrLoopback(t *testing.T) {
	cases := []struct {
		addr     string
		loopback bool
		bad      bool
	}{
		{"127.0.0.1:8080", true, false},
		{"127.1.2.3:8080", true, false},
		{"[::1]:8080", true, false},
		{"localhost:8080", true, false},
		{"10.0.0.1:8080", false, false},
		{"0.0.0.0:8080", false, false},
		{":8080", false, false},
		{"127.0.0.1", false, true},
		{"example.com:8080", false, true},
		{"127.0.0.1:http-nope", false, true},
		{"127.0.0.1:99999", false, true},
	}
	for _, tc := range cases {
		lb, err := uiAddrLoopback(tc.addr)
		if (err != nil) != tc.bad || (err == nil && lb != tc.loopback) {
			t.Errorf("uiAddrLoopback(%q) = %v, %v; want loopback %v, bad %v", tc.addr, lb, err, tc.loopback, tc.bad)
		}
	}
}

func TestUIToken(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadUIToken(dir); !errors.Is(err, ErrNoUIToken) {
		t.Fatalf("LoadUIToken on an empty dir: %v, want ErrNoUIToken", err)
	}
	src := &uiTokenSource{dataDir: dir}
	if tok, err := src.token(); tok != "" || err != nil {
		t.Fatalf("source without a file: %q, %v", tok, err)
	}
	tok, err := EnsureUIToken(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, uiTokenPrefix) || len(tok) != len(uiTokenPrefix)+64 {
		t.Fatalf("token %q", tok)
	}
	st, err := os.Stat(UITokenPath(dir))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v, %v; want 0600", st.Mode(), err)
	}
	if again, err := EnsureUIToken(dir, false); err != nil || again != tok {
		t.Fatalf("second EnsureUIToken = %q, %v; want the same token", again, err)
	}
	if got, err := src.token(); got != tok || err != nil {
		t.Fatalf("source after create: %q, %v", got, err)
	}
	rotated, err := EnsureUIToken(dir, true)
	if err != nil || rotated == tok {
		t.Fatalf("rotate = %q, %v", rotated, err)
	}
	if got, err := src.token(); got != rotated || err != nil {
		t.Fatalf("source after rotate: %q, %v; want the new token", got, err)
	}
	if err := os.WriteFile(UITokenPath(dir), []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := src.token(); err == nil {
		t.Fatalf("malformed file accepted: %q", got)
	}
	// A link planted in place of the file is not followed.
	os.Remove(UITokenPath(dir))
	target := filepath.Join(t.TempDir(), "elsewhere")
	if err := os.WriteFile(target, []byte(testUIToken), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, UITokenPath(dir)); err != nil {
		t.Fatal(err)
	}
	if got, err := LoadUIToken(dir); err == nil || errors.Is(err, ErrNoUIToken) {
		t.Fatalf("symlinked token read: %q, %v", got, err)
	}
}

// An agent refuses a non-loopback --ui-addr until a token exists.
func TestListenUIRefusesNonLoopbackWithoutToken(t *testing.T) {
	dir := t.TempDir()
	a := &Agent{cfg: Config{DataDir: dir, UIAddr: "0.0.0.0:0"}}
	if ln, _, err := a.listenUI(); !errors.Is(err, ErrUINeedsToken) {
		if ln != nil {
			ln.Close()
		}
		t.Fatalf("listenUI without a token: %v, want ErrUINeedsToken", err)
	}
	if _, err := EnsureUIToken(dir, false); err != nil {
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

func TestBuildUIState(t *testing.T) {
	nodes := []api.Node{
		{ID: "n1", Hostname: "h1", Addr: "10.0.0.1", Status: api.NodeReady, Availability: api.AvailabilityActive,
			Role: api.RoleManager, ManagerStatus: api.ManagerLeader, Version: 7, Resources: api.Resources{NanoCPUs: 2e9, MemoryBytes: 1 << 30}},
		{ID: "n2", Hostname: "h2", Addr: "10.0.0.2", Status: api.NodeDown, Availability: api.AvailabilityDrain, Role: api.RoleWorker},
	}
	services := []api.Service{
		{ID: "s2", Name: "web", Mode: api.ModeReplicated, Image: "busybox", Replicas: 3, Running: 1, Version: 4, VIP: "10.43.0.2",
			UpdateStatus: &api.UpdateStatus{State: api.UpdateRollbackStarted}},
		{ID: "s1", Name: "api", Mode: api.ModeReplicated, Image: "busybox", Replicas: 0},
	}
	tasks := []api.Task{
		{ID: "t3", Name: "web.3", ServiceID: "s2", Slot: 3, State: api.TaskNew},
		{ID: "t2", Name: "web.2", ServiceID: "s2", Slot: 2, NodeID: "n2", Node: "h2", State: api.TaskOrphaned},
		{ID: "t1", Name: "web.1", ServiceID: "s2", Slot: 1, NodeID: "n1", Node: "h1", State: api.TaskRunning, IP: "10.42.1.2"},
		{ID: "t4", Name: "web.4", ServiceID: "s2", Slot: 4, NodeID: "gone", Node: "", State: api.TaskRunning},
	}
	st := buildUIState(uiState{Joined: true, NodeID: "n1", Hostname: "h1", Leader: "n1", Index: 42}, nodes, services, tasks)
	got, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "joined": true,
  "node_id": "n1",
  "hostname": "h1",
  "leader": "n1",
  "index": 42,
  "nodes": [
    {
      "id": "n1",
      "hostname": "h1",
      "addr": "10.0.0.1",
      "status": "ready",
      "availability": "active",
      "role": "manager",
      "manager_status": "leader",
      "version": 7,
      "resources": {
        "nano_cpus": 2000000000,
        "memory_bytes": 1073741824
      },
      "running": 1
    },
    {
      "id": "n2",
      "hostname": "h2",
      "addr": "10.0.0.2",
      "status": "down",
      "availability": "drain",
      "role": "worker",
      "manager_status": "",
      "version": 0,
      "resources": {},
      "running": 0
    }
  ],
  "services": [
    {
      "id": "s1",
      "name": "api",
      "mode": "replicated",
      "image": "busybox",
      "replicas": 0,
      "running": 0,
      "version": 0,
      "placement": []
    },
    {
      "id": "s2",
      "name": "web",
      "mode": "replicated",
      "image": "busybox",
      "replicas": 3,
      "running": 1,
      "version": 4,
      "vip": "10.43.0.2",
      "update": "rollback_started",
      "placement": [
        {
          "node_id": "n1",
          "hostname": "h1",
          "tasks": [
            {
              "id": "t1",
              "name": "web.1",
              "slot": 1,
              "state": "running",
              "ip": "10.42.1.2"
            }
          ]
        },
        {
          "node_id": "n2",
          "hostname": "h2",
          "tasks": [
            {
              "id": "t2",
              "name": "web.2",
              "slot": 2,
              "state": "orphaned"
            }
          ]
        },
        {
          "node_id": "",
          "hostname": "",
          "tasks": [
            {
              "id": "t3",
              "name": "web.3",
              "slot": 3,
              "state": "new"
            },
            {
              "id": "t4",
              "name": "web.4",
              "slot": 4,
              "state": "running"
            }
          ]
        }
      ]
    }
  ]
}`
	if string(got) != want {
		t.Fatalf("state JSON:\n%s\nwant:\n%s", got, want)
	}
	// Empty lists are [] for the page, never null.
	empty, _ := json.Marshal(buildUIState(uiState{}, nil, nil, nil))
	if !strings.Contains(string(empty), `"nodes":[]`) || !strings.Contains(string(empty), `"services":[]`) {
		t.Fatalf("empty state %s", empty)
	}
}

// The handler end to end, on an agent in no cluster: the page is public,
// the API is behind the guard, the stream pushes a state event.
func TestUIHandler(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := &Agent{cfg: Config{DataDir: dir}, ctx: ctx, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		id: identity{NodeID: "n1", Hostname: "h1"}}
	tok, err := EnsureUIToken(dir, false)
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
	}{{nil, false}, {map[string]string{uiTokenHeader: "SHOALUI-nope"}, false}, {map[string]string{uiTokenHeader: tok}, true}} {
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
	if res := do("POST", "/ui/v1/services/web/scale", map[string]string{uiTokenHeader: tok}); res.StatusCode != http.StatusForbidden {
		t.Fatalf("scale without the CSRF header: %d", res.StatusCode)
	}
	// With both headers the request reaches the CLI's handler, which
	// answers that this node is in no cluster.
	if res := do("POST", "/ui/v1/services/web/scale", map[string]string{uiTokenHeader: tok, uiCSRFHeader: "1"}); res.StatusCode != http.StatusPreconditionFailed {
		t.Fatalf("scale outside a cluster: %d, want 412 from the API handler", res.StatusCode)
	}
	res := do("GET", "/ui/v1/state", map[string]string{uiTokenHeader: tok})
	var st uiState
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
	r.Header.Set(uiTokenHeader, tok)
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

func (s *sseReader) next() uiState {
	s.t.Helper()
	for {
		if i := strings.Index(string(s.buf), "\n\n"); i >= 0 {
			block := string(s.buf[:i])
			s.buf = s.buf[i+2:]
			data, ok := strings.CutPrefix(block, "event: state\ndata: ")
			if !ok {
				continue // a keepalive
			}
			var st uiState
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

// The stream pushes a write made through the dashboard's buttons (the
// CLI's scale and node-update handlers) as soon as the store applies it:
// with the periodic recheck out of the way, only Store.Subscribe can wake it.
func TestUIStreamPushesStoreChanges(t *testing.T) {
	old := uiStreamRecheck
	uiStreamRecheck = time.Hour
	t.Cleanup(func() { uiStreamRecheck = old })
	a := newSoloAgent(t)
	srv := httptest.NewServer(a.newUIServer(true).Handler) // loopback, no token
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	r, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/ui/v1/stream", nil)
	res, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("stream: %d", res.StatusCode)
	}
	events := &sseReader{t: t, r: res.Body}
	replicas := func(st uiState, name string) uint64 {
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
		req.Header.Set(uiCSRFHeader, "1")
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
	req.Header.Set(uiCSRFHeader, "1")
	bad, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	bad.Body.Close()
	if bad.StatusCode != http.StatusBadRequest {
		t.Fatalf("scale to 2000000: %d, want 400", bad.StatusCode)
	}
	if s, _ := a.cl.store.ServiceByName("web"); s.Spec.Replicas != 5 {
		t.Fatalf("refused scale changed replicas to %d", s.Spec.Replicas)
	}
}
