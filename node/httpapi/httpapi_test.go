package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

var (
	errOutcome  = errors.New("outcome unknown")
	errAlready  = errors.New("already in a cluster")
	errNoClu    = errors.New("no cluster")
	errForbid   = errors.New("forbidden")
	errWorker   = errors.New("worker")
	errQuorum   = errors.New("no quorum")
	errRefused  = errors.New("refused by a peer")
	testErrors  = Errors{OutcomeUnknown: errOutcome, AlreadyInCluster: errAlready, NoCluster: errNoClu, Forbidden: errForbid, Worker: errWorker, NoQuorum: errQuorum, Refused: func(err error) bool { return errors.Is(err, errRefused) }}
	wrap        = func(e error) error { return fmt.Errorf("update service web: %w", e) }
	ownStatusFn = func(code int) error { return &Error{Status: code, Msg: "x"} }
)

func TestErrorsStatus(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		want int
	}{
		{"own status", ownStatusFn(http.StatusTeapot), http.StatusTeapot},
		{"own status, wrapped", wrap(BadRequest("x")), http.StatusBadRequest},
		{"not found helper", NotFound("no such %s", "x"), http.StatusNotFound},
		{"outcome unknown", wrap(errOutcome), http.StatusServiceUnavailable},
		{"not found", wrap(consensus.ErrNotFound), http.StatusNotFound},
		{"ambiguous", wrap(consensus.ErrAmbiguous), http.StatusBadRequest},
		{"invalid", wrap(consensus.ErrInvalid), http.StatusBadRequest},
		{"name taken", wrap(consensus.ErrNameTaken), http.StatusBadRequest},
		{"exists", wrap(consensus.ErrExists), http.StatusBadRequest},
		{"version mismatch", wrap(consensus.ErrVersionMismatch), http.StatusConflict},
		{"in use", wrap(consensus.ErrInUse), http.StatusConflict},
		{"unsupported", wrap(command.ErrUnsupported), http.StatusConflict},
		{"already in cluster", wrap(errAlready), http.StatusConflict},
		{"no cluster", errNoClu, http.StatusPreconditionFailed},
		{"refused", wrap(errRefused), http.StatusBadRequest},
		{"forbidden", wrap(errForbid), http.StatusForbidden},
		{"worker", wrap(errWorker), http.StatusForbidden},
		{"no quorum", wrap(errQuorum), http.StatusServiceUnavailable},
		// The first match wins: a write whose outcome is unknown is not
		// a missing object.
		{"order", fmt.Errorf("%w: %w", errOutcome, consensus.ErrNotFound), http.StatusServiceUnavailable},
		{"anything else", errors.New("disk on fire"), http.StatusInternalServerError},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := testErrors.Status(tt.err); got != tt.want {
				t.Errorf("status %d, want %d", got, tt.want)
			}
		})
	}
	// Unset sentinels match nothing (a nil target would match a nil error
	// chain element nowhere, but must not turn every error into a 503).
	if got := (Errors{}).Status(errors.New("x")); got != http.StatusInternalServerError {
		t.Errorf("empty Errors: %d", got)
	}
}

// fakeCluster records what the node routes asked of the agent.
type fakeCluster struct {
	fakeAgent
	joinErr error
	upd     api.NodeUpdate
}

func (f *fakeCluster) Status() api.Status {
	return api.Status{NodeID: "n1", Joined: f.inCluster == nil}
}
func (f *fakeCluster) Join(ctx context.Context, req api.JoinRequest) error {
	f.calls = append(f.calls, "join "+req.Addr)
	return f.joinErr
}
func (f *fakeCluster) Nodes() ([]api.Node, error) {
	f.calls = append(f.calls, "nodes")
	return []api.Node{{ID: "n1"}}, nil
}
func (f *fakeCluster) Node(ref string) (api.Node, error) {
	f.calls = append(f.calls, "node "+ref)
	if ref != "n1" {
		return api.Node{}, NotFound("no such node: %s", ref)
	}
	return api.Node{ID: "n1"}, nil
}
func (f *fakeCluster) UpdateNode(ctx context.Context, ref string, upd api.NodeUpdate) (api.Node, error) {
	f.calls = append(f.calls, "update "+ref)
	f.upd = upd
	return api.Node{ID: ref, Availability: upd.Availability}, nil
}
func (f *fakeCluster) RemoveNode(ctx context.Context, ref string, force bool) error {
	f.calls = append(f.calls, fmt.Sprintf("remove %s force=%v", ref, force))
	return nil
}

func serve(t *testing.T, c Cluster, method, path, body string) (int, string) {
	t.Helper()
	rt := NewRouter(testErrors)
	NodeRoutes(rt, c)
	rec := httptest.NewRecorder()
	rt.Mux().ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: content type %q", method, path, ct)
	}
	return rec.Code, rec.Body.String()
}

// TestNodeRoutes checks what the routes decide themselves: which checks
// run before the agent is asked, and that bad input asks it nothing.
func TestNodeRoutes(t *testing.T) {
	for _, tt := range []struct {
		name, method, path, body string
		noCluster                bool
		code                     int
		syncs                    int
		calls                    string
		bodyHas                  string
	}{
		{name: "status in no cluster", method: "GET", path: "/v1/status", noCluster: true, code: 200, bodyHas: `"node_id":"n1"`},
		{name: "join", method: "POST", path: "/v1/join", body: `{"token":"t","addr":"h:1"}`, noCluster: true, code: 200, calls: "join h:1"},
		{name: "join without addr", method: "POST", path: "/v1/join", body: `{"token":"t"}`, noCluster: true, code: 400, bodyHas: "join needs a token"},
		{name: "join, unknown field", method: "POST", path: "/v1/join", body: `{"token":"t","addr":"h:1","x":1}`, noCluster: true, code: 400, bodyHas: "malformed request body"},
		{name: "nodes", method: "GET", path: "/v1/nodes", code: 200, calls: "nodes"},
		{name: "nodes, consistent", method: "GET", path: "/v1/nodes?consistent=1", code: 200, syncs: 1, calls: "nodes"},
		{name: "nodes in no cluster", method: "GET", path: "/v1/nodes", noCluster: true, code: 412},
		{name: "node", method: "GET", path: "/v1/nodes/n1?consistent=true", code: 200, syncs: 1, calls: "node n1"},
		{name: "no such node", method: "GET", path: "/v1/nodes/zz", code: 404, calls: "node zz", bodyHas: "no such node: zz"},
		{name: "update", method: "POST", path: "/v1/nodes/n1/update", body: `{"availability":"drain"}`, code: 200, calls: "update n1"},
		{name: "update, bad availability", method: "POST", path: "/v1/nodes/n1/update", body: `{"availability":"off"}`, code: 400, bodyHas: "invalid availability"},
		{name: "update, empty label key", method: "POST", path: "/v1/nodes/n1/update", body: `{"label_add":{"":"x"}}`, code: 400, bodyHas: "label keys must not be empty"},
		// No cluster is said before the body is read.
		{name: "update in no cluster, bad body", method: "POST", path: "/v1/nodes/n1/update", body: `{`, noCluster: true, code: 412},
		{name: "remove", method: "DELETE", path: "/v1/nodes/n1?force=1", code: 200, calls: "remove n1 force=true"},
		{name: "remove in no cluster", method: "DELETE", path: "/v1/nodes/n1", noCluster: true, code: 412},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeCluster{}
			if tt.noCluster {
				f.inCluster = errNoClu
			}
			code, body := serve(t, f, tt.method, tt.path, tt.body)
			if code != tt.code {
				t.Errorf("status %d, want %d: %s", code, tt.code, body)
			}
			if f.syncs != tt.syncs {
				t.Errorf("%d replica syncs, want %d", f.syncs, tt.syncs)
			}
			if got := strings.Join(f.calls, "; "); got != tt.calls {
				t.Errorf("agent calls %q, want %q", got, tt.calls)
			}
			if !strings.Contains(body, tt.bodyHas) {
				t.Errorf("body %s lacks %q", body, tt.bodyHas)
			}
			if code != 200 {
				var e api.ErrorResponse
				if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == "" {
					t.Errorf("error body %q is not an api.ErrorResponse", body)
				}
			}
		})
	}
}

func TestJoinFailureIsBadRequest(t *testing.T) {
	f := &fakeCluster{fakeAgent: fakeAgent{inCluster: errNoClu}, joinErr: errors.New("invalid join token")}
	code, body := serve(t, f, "POST", "/v1/join", `{"token":"t","addr":"h:1"}`)
	if code != http.StatusBadRequest || !strings.Contains(body, "invalid join token") {
		t.Fatalf("%d %s", code, body)
	}
}

func TestDecodeBodyLimit(t *testing.T) {
	exact := `{"token":"` + strings.Repeat("a", MaxBodyBytes-len(`{"token":""}`)) + `"}`
	var req api.JoinRequest
	if err := DecodeBody(httptest.NewRequest("POST", "/", strings.NewReader(exact)), &req); err != nil {
		t.Fatalf("a body of exactly MaxBodyBytes: %v", err)
	}
	err := DecodeBody(httptest.NewRequest("POST", "/", strings.NewReader(`{"token":"a`+exact[len(`{"token":"`):])), &req)
	var he *Error
	if !errors.As(err, &he) || he.Status != http.StatusRequestEntityTooLarge {
		t.Fatalf("one byte more: %v", err)
	}
}

// fakeAgent is what every route group's fake shares: whether there is a
// cluster, how often the replica was synced, and what the agent was asked.
type fakeAgent struct {
	inCluster error
	syncs     int
	calls     []string
}

func (f *fakeAgent) rec(format string, args ...any) {
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}
func (f *fakeAgent) InCluster() error                      { return f.inCluster }
func (f *fakeAgent) SyncReplica(ctx context.Context) error { f.syncs++; return nil }

// routeCase is one request to a route group and what must come of it.
type routeCase struct {
	name, method, path, body string
	noCluster                bool
	code, syncs              int
	calls, bodyHas           string
}

// checkRoute serves tt through the routes register adds, on an agent
// whose shared half is fa, and checks status, body, syncs and calls.
func checkRoute(t *testing.T, tt routeCase, fa *fakeAgent, register func(*Router)) {
	t.Helper()
	if tt.noCluster {
		fa.inCluster = errNoClu
	}
	rt := NewRouter(testErrors)
	register(rt)
	rec := httptest.NewRecorder()
	rt.Mux().ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body)))
	if rec.Code != tt.code || !strings.Contains(rec.Body.String(), tt.bodyHas) {
		t.Errorf("%d %s, want %d with %q", rec.Code, rec.Body.String(), tt.code, tt.bodyHas)
	}
	if fa.syncs != tt.syncs {
		t.Errorf("%d syncs, want %d", fa.syncs, tt.syncs)
	}
	if got := strings.Join(fa.calls, "; "); got != tt.calls {
		t.Errorf("agent calls %q, want %q", got, tt.calls)
	}
}
