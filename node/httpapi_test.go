package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/httpapi"
	"github.com/shoal-org/shoal/node/identity"
	"github.com/shoal-org/shoal/node/instance"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/wire"
	"github.com/shoal-org/shoal/node/writes"
)

// newTestAgent returns an agent in no cluster, without runtime or image
// store: enough for the routes that answer before touching them.
func newTestAgent(t *testing.T) *Agent {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.AdvertiseAddr = "127.0.0.1"
	cfg.Hostname = "test-host"
	cfg.WriteTimeout = 2 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return &Agent{
		cfg: cfg,
		ctx: ctx,
		id:  identity.Node{NodeID: identity.NewID(), Hostname: cfg.Hostname},
		log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// do sends one request through the agent's routes and returns the status
// and the body.
func do(t *testing.T, h http.Handler, method, path, body string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes()
}

func errorBody(t *testing.T, b []byte) string {
	t.Helper()
	var er api.ErrorResponse
	if err := json.Unmarshal(b, &er); err != nil {
		t.Fatalf("error body is not an ErrorResponse: %v: %s", err, b)
	}
	return er.Error
}

func TestStatusWithoutCluster(t *testing.T) {
	a := newTestAgent(t)
	code, body := do(t, a.routes(), "GET", "/v1/status", "")
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	var st api.Status
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	if st.Joined || st.ClusterID != "" || st.Leader != "" || len(st.Voters) != 0 {
		t.Errorf("a node in no cluster reports cluster state: %+v", st)
	}
	if st.NodeID != a.id.NodeID || st.Hostname != "test-host" || st.Addr != "127.0.0.1:2377" {
		t.Errorf("identity = %q %q %q, want %q test-host 127.0.0.1:2377", st.NodeID, st.Hostname, st.Addr, a.id.NodeID)
	}
	if !strings.Contains(string(body), `"joined":false`) {
		t.Errorf("JSON lacks joined=false: %s", body)
	}
}

// TestRoutesMatchAPI checks that every route documented in api/routes.go
// is served.
func TestRoutesMatchAPI(t *testing.T) {
	a := newTestAgent(t)
	mux, ok := a.routes().(*http.ServeMux)
	if !ok {
		t.Fatalf("routes() is %T, not a *http.ServeMux", a.routes())
	}
	for _, r := range []string{
		"GET /v1/status", "POST /v1/init", "POST /v1/join", "GET /v1/token", "POST /v1/token/rotate",
		"POST /v1/leave", "GET /v1/nodes", "GET /v1/nodes/x", "POST /v1/nodes/x/update", "DELETE /v1/nodes/x",
		"GET /v1/images", "POST /v1/images/import", "POST /v1/images/load", "POST /v1/images/pull",
		"GET /v1/images/busybox:latest", "GET /v1/images/registry.local/a/b:1", "DELETE /v1/images/busybox",
		"GET /v1/containers", "POST /v1/containers", "GET /v1/containers/x", "POST /v1/containers/x/wait",
		"POST /v1/containers/x/stop", "DELETE /v1/containers/x", "GET /v1/containers/x/logs",
		"GET /v1/services", "POST /v1/services", "GET /v1/services/x", "POST /v1/services/x/update",
		"POST /v1/services/x/scale", "POST /v1/services/x/rollback", "DELETE /v1/services/x", "POST /v1/services/check",
		"GET /v1/services/x/tasks", "GET /v1/services/x/logs", "GET /v1/tasks",
	} {
		method, path, _ := strings.Cut(r, " ")
		req := httptest.NewRequest(method, path, nil)
		if _, pattern := mux.Handler(req); pattern == "" {
			t.Errorf("%s is not routed", r)
		}
	}
}

func TestClusterRoutesWithoutCluster(t *testing.T) {
	a := newTestAgent(t)
	h := a.routes()
	for _, tt := range []struct{ method, path, body string }{
		{"GET", "/v1/token", ""},
		{"POST", "/v1/token/rotate", ""},
		{"POST", "/v1/leave", ""},
		{"GET", "/v1/nodes", ""},
		{"GET", "/v1/nodes/abc", ""},
		{"POST", "/v1/nodes/abc/update", `{"availability":"drain"}`},
		{"POST", "/v1/nodes/abc/update", `{"availability":"bogus"}`},
		{"DELETE", "/v1/nodes/abc", ""},
		{"GET", "/v1/services", ""},
		{"POST", "/v1/services", `{"name":"web"}`},
		{"POST", "/v1/services/check", `{"create":[{"name":"web"}]}`},
		{"GET", "/v1/services/web", ""},
		{"POST", "/v1/services/web/update", `{}`},
		{"POST", "/v1/services/web/scale", `{"replicas":3}`},
		{"POST", "/v1/services/web/rollback", ""},
		{"DELETE", "/v1/services/web", ""},
		{"GET", "/v1/services/web/tasks", ""},
		{"GET", "/v1/services/web/logs", ""},
		{"GET", "/v1/tasks", ""},
	} {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			code, body := do(t, h, tt.method, tt.path, tt.body)
			if code != http.StatusPreconditionFailed {
				t.Fatalf("status %d, want 412: %s", code, body)
			}
			if msg := errorBody(t, body); msg != ErrNoCluster.Error() {
				t.Errorf("error %q, want %q", msg, ErrNoCluster.Error())
			}
		})
	}
}

func TestBadRequests(t *testing.T) {
	a := newTestAgent(t)
	h := a.routes()
	tests := []struct {
		name               string
		method, path, body string
		want               []string // substrings of the error message
	}{
		{"join: malformed JSON", "POST", "/v1/join", `{"token":`, []string{"malformed request body"}},
		{"join: not JSON", "POST", "/v1/join", `token=x`, []string{"malformed request body", "invalid character"}},
		{"join: empty body", "POST", "/v1/join", ``, []string{"malformed request body"}},
		{"join: wrong type", "POST", "/v1/join", `{"token":1,"addr":"x"}`, []string{"malformed request body", "token"}},
		{"join: unknown field", "POST", "/v1/join", `{"token":"t","addr":"a","bogus":1}`, []string{"malformed request body", `unknown field "bogus"`}},
		{"join: missing token", "POST", "/v1/join", `{"addr":"10.0.0.1:2377"}`, []string{"join needs a token"}},
		{"join: missing addr", "POST", "/v1/join", `{"token":"SHOAL-1-a-b"}`, []string{"join needs a token and the address"}},
		{"join: malformed token", "POST", "/v1/join", `{"token":"nonsense","addr":"127.0.0.1:1"}`, []string{"invalid join token", "malformed join token"}},
		{"pull: malformed JSON", "POST", "/v1/images/pull", `[`, []string{"malformed request body"}},
		{"pull: unknown field", "POST", "/v1/images/pull", `{"reference":"busybox"}`, []string{`unknown field "reference"`}},
		{"pull: no reference", "POST", "/v1/images/pull", `{}`, []string{"pull needs an image reference"}},
		{"import: no ref", "POST", "/v1/images/import", `data`, []string{"import needs a NAME[:TAG]"}},
		{"run: malformed JSON", "POST", "/v1/containers", `{"image":}`, []string{"malformed request body"}},
		{"run: unknown field", "POST", "/v1/containers", `{"image":"busybox","memory":"64M"}`, []string{`unknown field "memory"`}},
		{"run: no image", "POST", "/v1/containers", `{"command":["true"]}`, []string{"run needs an image"}},
		{"stop: bad timeout", "POST", "/v1/containers/x/stop?timeout=soon", ``, []string{`invalid timeout "soon"`}},
		{"logs: bad tail", "GET", "/v1/containers/x/logs?tail=-1", ``, []string{`invalid tail "-1"`}},
		{"logs: bad since", "GET", "/v1/containers/x/logs?since=yesterday", ``, []string{`invalid since "yesterday"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := do(t, h, tt.method, tt.path, tt.body)
			if code != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", code, body)
			}
			msg := errorBody(t, body)
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
		})
	}
}

// TestJoinErrorsThroughAPI drives POST /v1/join against addresses where no
// cluster node answers; the user must learn what is wrong and nothing may
// be written.
func TestJoinErrorsThroughAPI(t *testing.T) {
	a := newTestAgent(t)
	h := a.routes()
	ca, err := pki.NewCA("cluster-x", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	token := pki.FormatToken(ca.Fingerprint(), pki.NewSecret())

	// A port where nothing listens.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	// A TCP server that is not Shoal: it answers garbage and hangs up.
	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	done := make(chan struct{})
	defer func() { other.Close(); <-done }()
	go func() {
		defer close(done)
		for {
			c, err := other.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("HTTP/1.0 400 Bad Request\r\n\r\n"))
			c.Close()
		}
	}()

	for _, tt := range []struct {
		name, addr, want string
	}{
		{"nothing listens", closed, "no shoal agent"},
		{"not a shoal node", other.Addr().String(), "not a Shoal cluster node"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			body := fmt.Sprintf(`{"token":%q,"addr":%q}`, token, tt.addr)
			code, b := do(t, h, "POST", "/v1/join", body)
			if code != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", code, b)
			}
			if msg := errorBody(t, b); !strings.Contains(msg, tt.want) || !strings.Contains(msg, tt.addr) {
				t.Errorf("error %q lacks %q or the address", msg, tt.want)
			}
			if instance.HasState(a.cfg.DataDir) {
				t.Error("a refused join wrote cluster state")
			}
		})
	}
}

func TestWriteErrorStatus(t *testing.T) {
	wrap := func(e error) error { return fmt.Errorf("update service web: %w", e) }
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"http error keeps its status", &httpError{status: http.StatusTeapot, msg: "x"}, http.StatusTeapot},
		{"bad request helper", httpapi.BadRequest("bad %s", "thing"), http.StatusBadRequest},
		{"not found helper", httpapi.NotFound("no such %s", "thing"), http.StatusNotFound},
		{"not found", wrap(consensus.ErrNotFound), http.StatusNotFound},
		{"ambiguous", wrap(consensus.ErrAmbiguous), http.StatusBadRequest},
		{"invalid", wrap(consensus.ErrInvalid), http.StatusBadRequest},
		{"name taken", wrap(consensus.ErrNameTaken), http.StatusBadRequest},
		{"exists", wrap(consensus.ErrExists), http.StatusBadRequest},
		{"version mismatch", wrap(consensus.ErrVersionMismatch), http.StatusConflict},
		{"in use", wrap(consensus.ErrInUse), http.StatusConflict},
		{"in use, forwarded", &wire.Error{Code: wire.ErrorCode(wrap(consensus.ErrInUse)), Msg: "published port 8080/tcp is taken by service web: already in use"}, http.StatusConflict},
		{"already in cluster", fmt.Errorf("%w abc: run `shoal leave` first", ErrAlreadyInCluster), http.StatusConflict},
		{"last member leaving", ErrLastMember, http.StatusConflict},
		{"no cluster", ErrNoCluster, http.StatusPreconditionFailed},
		{"no quorum", fmt.Errorf("%w: the write was not applied: no leader with a majority is reachable", ErrNoQuorum), http.StatusServiceUnavailable},
		{"no quorum, wrapped", fmt.Errorf("leave: %w", fmt.Errorf("%w: 1 of 3 voters reachable", ErrNoQuorum)), http.StatusServiceUnavailable},
		{"refused by a peer", &wire.Error{Code: wire.CodeRefused, Msg: "invalid join token"}, http.StatusBadRequest},
		{"refused by a peer, wrapped", fmt.Errorf("leave: %w", &wire.Error{Code: wire.CodeRefused, Msg: "no"}), http.StatusBadRequest},
		{"not leader from a peer", &wire.Error{Code: wire.CodeNotLeader, Msg: "not the raft leader"}, http.StatusInternalServerError},
		{"anything else", errors.New("disk on fire"), http.StatusInternalServerError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			writeError(rec, tt.err)
			if rec.Code != tt.want {
				t.Errorf("status %d, want %d", rec.Code, tt.want)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("content type %q", ct)
			}
			if msg := errorBody(t, rec.Body.Bytes()); msg != tt.err.Error() {
				t.Errorf("message %q, want %q", msg, tt.err.Error())
			}
		})
	}
}

// TestWriteErrorAfterApply documents how a refusal of the state machine
// reaches the user after write(): applyLocal turns every non-retryable
// error into a wire.Error (code refused) on the leader, whether the write
// was local or forwarded, so the consensus sentinel is lost on the way.
func TestWriteErrorAfterApply(t *testing.T) {
	fsmErr := fmt.Errorf("update service: %w", consensus.ErrVersionMismatch)
	// Local path: applyLocal returns the FSM error itself.
	// Forwarded path: it crosses the wire as a code and comes back as wire.Error.
	forwarded := &wire.Error{Code: wire.ErrorCode(fsmErr), Msg: fsmErr.Error()}
	for name, err := range map[string]error{"local": fsmErr, "forwarded": forwarded} {
		rec := httptest.NewRecorder()
		writeError(rec, err)
		if rec.Code != http.StatusConflict || !errors.Is(err, consensus.ErrVersionMismatch) {
			t.Errorf("%s: version mismatch answers %d (want 409), errors.Is=%v", name, rec.Code, errors.Is(err, consensus.ErrVersionMismatch))
		}
		if writes.Retryable(err) {
			t.Errorf("%s: a business refusal must not be retried", name)
		}
	}
}
