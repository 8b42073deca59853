package ui

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
	csrf := map[string]string{CSRFHeader: "1"}
	tokHdr := map[string]string{TokenHeader: testUIToken}
	both := map[string]string{TokenHeader: testUIToken, CSRFHeader: "1"}
	cases := []struct {
		name     string
		loopback bool
		token    func() (string, error)
		r        req
		want     int // 0 = allowed
	}{
		// Loopback is no exception: any local user reaches 127.0.0.1, and
		// the dashboard must not give them what the root-only socket refuses.
		{"loopback, no token, loopback host", true, noToken, get("127.0.0.1:8080", nil), http.StatusForbidden},
		{"loopback, no token, post with csrf header", true, noToken, post("127.0.0.1:8080", csrf), http.StatusForbidden},
		{"token: loopback, localhost", true, withToken, get("localhost:8080", tokHdr), 0},
		{"token: loopback, ipv6 loopback", true, withToken, get("[::1]:8080", tokHdr), 0},
		{"token: loopback, rebound host name", true, withToken, get("evil.example:8080", tokHdr), http.StatusForbidden},
		{"token: loopback, post without csrf header", true, withToken, post("127.0.0.1:8080", tokHdr), http.StatusForbidden},
		{"token: loopback, post from another origin", true, withToken,
			post("127.0.0.1:8080", map[string]string{TokenHeader: testUIToken, CSRFHeader: "1", "Origin": "http://evil.example"}), http.StatusForbidden},
		{"token: loopback, post from own origin", true, withToken,
			post("127.0.0.1:8080", map[string]string{TokenHeader: testUIToken, CSRFHeader: "1", "Origin": "http://127.0.0.1:8080"}), 0},
		{"non-loopback without token fails closed", false, noToken, get("10.0.0.1:8080", nil), http.StatusForbidden},
		{"token: missing", false, withToken, get("10.0.0.1:8080", nil), http.StatusUnauthorized},
		{"token: wrong", false, withToken, get("10.0.0.1:8080", map[string]string{TokenHeader: testUIToken + "x"}), http.StatusUnauthorized},
		{"token: wrong, same length", false, withToken,
			get("10.0.0.1:8080", map[string]string{TokenHeader: strings.Replace(testUIToken, "0", "1", 1)}), http.StatusUnauthorized},
		{"token: right", false, withToken, get("10.0.0.1:8080", tokHdr), 0},
		{"token: right on loopback too", true, withToken, get("127.0.0.1:8080", tokHdr), 0},
		{"token: loopback without it once one exists", true, withToken, get("127.0.0.1:8080", nil), http.StatusUnauthorized},
		{"token: post with token and csrf header", false, withToken, post("10.0.0.1:8080", both), 0},
		{"token: post with token but no csrf header", false, withToken, post("10.0.0.1:8080", tokHdr), http.StatusForbidden},
		{"token: post with csrf header but no token", false, withToken, post("10.0.0.1:8080", csrf), http.StatusUnauthorized},
		{"token: cookie only is not enough (get)", false, withToken,
			get("10.0.0.1:8080", map[string]string{"Cookie": "shoal_ui_token=" + testUIToken}), http.StatusUnauthorized},
		{"token: cookie only is not enough (post)", false, withToken,
			post("10.0.0.1:8080", map[string]string{"Cookie": "shoal_ui_token=" + testUIToken, CSRFHeader: "1"}), http.StatusUnauthorized},
		{"unreadable token file refuses", true, broken, get("127.0.0.1:8080", tokHdr), http.StatusForbidden},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.r.method, "http://"+tc.r.host+"/ui/v1/state", nil)
			r.Host = tc.r.host
			for k, v := range tc.r.header {
				r.Header.Set(k, v)
			}
			err := Guard{Loopback: tc.loopback, Token: tc.token}.Check(r)
			var he *Refusal
			switch {
			case tc.want == 0 && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != 0 && !errors.As(err, &he):
				t.Fatalf("allowed (err %v), want status %d", err, tc.want)
			case tc.want != 0 && he.Status != tc.want:
				t.Fatalf("status %d (%v), want %d", he.Status, err, tc.want)
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
		lb, err := AddrLoopback(tc.addr)
		if (err != nil) != tc.bad || (err == nil && lb != tc.loopback) {
			t.Errorf("AddrLoopback(%q) = %v, %v; want loopback %v, bad %v", tc.addr, lb, err, tc.loopback, tc.bad)
		}
	}
}

func TestUIToken(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadToken(dir); !errors.Is(err, ErrNoToken) {
		t.Fatalf("LoadUIToken on an empty dir: %v, want ErrNoToken", err)
	}
	src := &TokenSource{DataDir: dir}
	if tok, err := src.Token(); tok != "" || err != nil {
		t.Fatalf("source without a file: %q, %v", tok, err)
	}
	tok, err := EnsureToken(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, tokenPrefix) || len(tok) != len(tokenPrefix)+64 {
		t.Fatalf("token %q", tok)
	}
	st, err := os.Stat(TokenPath(dir))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v, %v; want 0600", st.Mode(), err)
	}
	if again, err := EnsureToken(dir, false); err != nil || again != tok {
		t.Fatalf("second EnsureUIToken = %q, %v; want the same token", again, err)
	}
	if got, err := src.Token(); got != tok || err != nil {
		t.Fatalf("source after create: %q, %v", got, err)
	}
	rotated, err := EnsureToken(dir, true)
	if err != nil || rotated == tok {
		t.Fatalf("rotate = %q, %v", rotated, err)
	}
	if got, err := src.Token(); got != rotated || err != nil {
		t.Fatalf("source after rotate: %q, %v; want the new token", got, err)
	}
	if err := os.WriteFile(TokenPath(dir), []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := src.Token(); err == nil {
		t.Fatalf("malformed file accepted: %q", got)
	}
	// A link planted in place of the file is not followed.
	os.Remove(TokenPath(dir))
	target := filepath.Join(t.TempDir(), "elsewhere")
	if err := os.WriteFile(target, []byte(testUIToken), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, TokenPath(dir)); err != nil {
		t.Fatal(err)
	}
	if got, err := LoadToken(dir); err == nil || errors.Is(err, ErrNoToken) {
		t.Fatalf("symlinked token read: %q, %v", got, err)
	}
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
	st := BuildState(State{Joined: true, NodeID: "n1", Hostname: "h1", Leader: "n1", Index: 42}, nodes, services, tasks)
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
	empty, _ := json.Marshal(BuildState(State{}, nil, nil, nil))
	if !strings.Contains(string(empty), `"nodes":[]`) || !strings.Contains(string(empty), `"services":[]`) {
		t.Fatalf("empty state %s", empty)
	}
}
