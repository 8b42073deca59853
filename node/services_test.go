package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/consensus/raftnode"
	"github.com/shoal-org/shoal/node/httpapi"
	"github.com/shoal-org/shoal/node/instance"
	"github.com/shoal-org/shoal/node/scheduler/servicespec"
	"github.com/shoal-org/shoal/node/wire"
	"github.com/shoal-org/shoal/node/writes"
)

// newSoloAgent returns a test agent that leads a one-node cluster on an
// in-memory Raft, with two services: web (3 replicas, with a previous spec
// that publishes 8080) and db (publishes 5432). It has no runtime or image
// store: enough for the service routes up to their image check.
func newSoloAgent(t *testing.T) *Agent {
	t.Helper()
	a := newTestAgent(t)
	cfg := raftnode.DefaultConfig()
	cfg.NodeID = a.id.NodeID
	cfg.HeartbeatTimeout = 50 * time.Millisecond
	cfg.ElectionTimeout = 50 * time.Millisecond
	cfg.LeaderLeaseTimeout = 50 * time.Millisecond
	cfg.HeartbeatInterval = 20 * time.Millisecond
	cfg.CommitTimeout = 5 * time.Millisecond
	_, trans := raft.NewInmemTransport("")
	store := consensus.NewStore()
	r, err := raftnode.NewInmem(cfg, store, trans)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Shutdown() })
	if err := r.BootstrapSelf(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !r.IsLeader() {
		if time.Now().After(deadline) {
			t.Fatal("the solo raft never led")
		}
		time.Sleep(5 * time.Millisecond) // polling raft's state; no event to wait on
	}
	now := time.Now().UTC()
	ctx := context.Background()
	must := func(cmd command.Command) {
		t.Helper()
		if _, err := r.Apply(ctx, cmd); err != nil {
			t.Fatalf("apply %T: %v", cmd, err)
		}
	}
	must(&command.BootstrapCluster{
		Cluster: consensus.ClusterState{ClusterID: "c1", CACertPEM: []byte("cert"), CAKeyPEM: []byte("key"),
			TokenSecretHash: "h", GossipKeys: [][]byte{make([]byte, 32)}, ClusterCIDR: "10.42.0.0/16",
			VIPCIDR: "10.43.0.0/16", CreatedAt: now},
		Node: api.Node{ID: a.id.NodeID, Hostname: "test-host", Addr: "127.0.0.1", Status: api.NodeReady,
			Availability: api.AvailabilityActive, CreatedAt: now},
	})
	web := servicespec.Defaults(api.ServiceSpec{Name: "web", Image: "bb:1", Replicas: 3})
	prev := web
	prev.Ports = []api.PortConfig{{Published: 8080, Target: 80, Protocol: "tcp"}}
	must(&command.CreateService{Service: api.Service{ID: "svc-web", Name: "web", Spec: web, PreviousSpec: &prev,
		CreatedAt: now, UpdatedAt: now}})
	db := servicespec.Defaults(api.ServiceSpec{Name: "db", Image: "bb:1",
		Ports: []api.PortConfig{{Published: 5432, Target: 5432}}})
	must(&command.CreateService{Service: api.Service{ID: "svc-db", Name: "db", Spec: db, CreatedAt: now, UpdatedAt: now}})
	a.cl = &instance.Instance{Host: a.host(), ID: "c1", Store: store, Raft: r}
	return a
}

// servicesJSON is the stored state of every service, to compare before and
// after a refused write.
func servicesJSON(t *testing.T, a *Agent) string {
	t.Helper()
	b, err := json.Marshal(a.cl.Store.Services())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestServiceWritesRefuseBadSpecs(t *testing.T) {
	a := newSoloAgent(t)
	h := a.routes()
	spec := func(mutate func(*api.ServiceSpec)) string {
		s := api.ServiceSpec{Name: "new", Image: "bb:1", Replicas: 1}
		mutate(&s)
		b, _ := json.Marshal(s)
		return string(b)
	}
	upd := func(mutate func(*api.ServiceSpec)) string {
		return spec(func(s *api.ServiceSpec) { s.Name = "web"; mutate(s) })
	}
	const tooMany = `replicas 2000000: more than 65536`
	big := `{"name":"new","image":"bb:1","env":["` + strings.Repeat("x", 5<<20) + `"]}`
	tests := []struct {
		name, method, path, body string
		status                   int
		want                     string
	}{
		// create (and `stack deploy` of a new service, which uses it)
		{"create: too many replicas", "POST", "/v1/services", spec(func(s *api.ServiceSpec) { s.Replicas = 2000000 }), 400, tooMany},
		{"create: NUL in env", "POST", "/v1/services", spec(func(s *api.ServiceSpec) { s.Env = []string{"A=\x00"} }), 400, "env[0]"},
		{"create: NUL in command", "POST", "/v1/services", spec(func(s *api.ServiceSpec) { s.Command = []string{"sleep\x00"} }), 400, "command[0]"},
		{"create: global with replicas", "POST", "/v1/services", spec(func(s *api.ServiceSpec) { s.Mode = api.ModeGlobal; s.Replicas = 3 }), 400, "a global service"},
		{"create: port clash", "POST", "/v1/services", spec(func(s *api.ServiceSpec) { s.Ports = []api.PortConfig{{Published: 5432, Target: 1}} }), 400, "5432/tcp is published by service db"},
		{"create: body too large", "POST", "/v1/services", big, 413, "request body larger than 4 MiB"},
		// update (and `stack deploy` of an existing service)
		{"update: too many replicas", "POST", "/v1/services/web/update", upd(func(s *api.ServiceSpec) { s.Replicas = 2000000 }), 400, tooMany},
		{"update: NUL in env", "POST", "/v1/services/web/update", upd(func(s *api.ServiceSpec) { s.Env = []string{"\x00=1"} }), 400, "NUL"},
		{"update: bad restart", "POST", "/v1/services/web/update", upd(func(s *api.ServiceSpec) { s.RestartPolicy.Condition = "always" }), 400, "restart_policy.condition"},
		{"update: body too large", "POST", "/v1/services/web/update", big, 413, "request body larger than 4 MiB"},
		// scale
		{"scale: too many replicas", "POST", "/v1/services/web/scale", `{"replicas":2000000}`, 400, tooMany},
		{"scale: unknown service", "POST", "/v1/services/nosuch/scale", `{"replicas":1}`, 404, "no such service: nosuch"},
		{"scale: malformed", "POST", "/v1/services/web/scale", `{"replicas":-1}`, 400, "malformed request body"},
		// rollback to a spec whose port another service took since
		{"rollback: port taken", "POST", "/v1/services/web/rollback", ``, 400, "cannot roll back web"},
	}
	// web's previous spec publishes 8080: give it to db first.
	dbSpec := servicespec.Defaults(api.ServiceSpec{Name: "db", Image: "bb:1",
		Ports: []api.PortConfig{{Published: 5432, Target: 5432}, {Published: 8080, Target: 1}}})
	cur, _ := a.cl.Store.Service("svc-db")
	cur.Spec = dbSpec
	if _, err := a.cl.Raft.Apply(context.Background(), &command.UpdateService{Service: *cur}); err != nil {
		t.Fatal(err)
	}
	before := servicesJSON(t, a)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := do(t, h, tt.method, tt.path, tt.body)
			if code != tt.status {
				t.Fatalf("status %d, want %d: %.300s", code, tt.status, body)
			}
			msg := errorBody(t, body)
			if !strings.Contains(msg, tt.want) {
				t.Errorf("error %q lacks %q", msg, tt.want)
			}
			if strings.Count(msg, "invalid service spec") > 1 {
				t.Errorf("error %q repeats itself", msg)
			}
			if after := servicesJSON(t, a); after != before {
				t.Errorf("a refused write changed the services:\n%s\n%s", before, after)
			}
		})
	}
}

// TestScaleRefusedWithCreatesMessage: `service scale web=N` beyond the limit
// says exactly what `service create --replicas N` says.
func TestScaleRefusedWithCreatesMessage(t *testing.T) {
	a := newSoloAgent(t)
	h := a.routes()
	_, cb := do(t, h, "POST", "/v1/services", `{"name":"x","image":"bb:1","replicas":2000000}`)
	code, sb := do(t, h, "POST", "/v1/services/web/scale", `{"replicas":2000000}`)
	if code != http.StatusBadRequest {
		t.Fatalf("scale status %d: %s", code, sb)
	}
	if c, s := errorBody(t, cb), errorBody(t, sb); c != s {
		t.Fatalf("create says %q, scale says %q", c, s)
	}
}

// TestLeaderRevalidatesForwardedSpecs: a command that reaches the leader
// without passing the API's checks (a node of another version, a bug) is
// refused before it is proposed.
func TestLeaderRevalidatesForwardedSpecs(t *testing.T) {
	a := newSoloAgent(t)
	before := servicesJSON(t, a)
	cur, err := a.cl.Store.Service("svc-web")
	if err != nil {
		t.Fatal(err)
	}
	huge := *cur
	huge.Spec.Replicas = 2_000_000
	nul := *cur
	nul.Spec.Env = []string{"A=\x00"}
	clash := *cur
	clash.Spec.Ports = []api.PortConfig{{Published: 5432, Target: 1}}
	created := api.Service{ID: "svc-new", Name: "new", Spec: huge.Spec}
	created.Spec.Name = "new"
	for _, tc := range []struct {
		name string
		cmd  command.Command
		want string
	}{
		{"update with huge replicas", &command.UpdateService{Service: huge}, "replicas 2000000: more than 65536"},
		{"create with huge replicas", &command.CreateService{Service: created}, "replicas 2000000"},
		{"update with NUL", &command.UpdateService{Service: nul}, "NUL"},
		{"update with port clash", &command.UpdateService{Service: clash}, "5432/tcp"},
		{"inside a batch", &command.Batch{Commands: []command.Command{&command.UpdateService{Service: huge}}}, "replicas 2000000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enc, err := command.Encode(tc.cmd)
			if err != nil {
				t.Fatal(err)
			}
			_, err = a.applyLocal(context.Background(), enc)
			var re *wire.Error
			if !errors.As(err, &re) || re.Code != wire.CodeRefused || !strings.Contains(re.Msg, tc.want) {
				t.Fatalf("applyLocal: %v, want a refusal mentioning %q", err, tc.want)
			}
			if writes.Retryable(err) {
				t.Errorf("the refusal %v would be retried", err)
			}
			if after := servicesJSON(t, a); after != before {
				t.Errorf("a refused command changed the services")
			}
		})
	}
}

func TestSyncReplicaOnLeader(t *testing.T) {
	a := newSoloAgent(t)
	if err := a.cl.Writer().SyncReplica(context.Background()); err != nil {
		t.Fatal(err)
	}
	idx, err := a.cl.Writer().ReadIndex(context.Background())
	if err != nil || idx == 0 || a.cl.Store.Index() < idx {
		t.Fatalf("read index %d (%v), store at %d", idx, err, a.cl.Store.Index())
	}
	code, body := do(t, a.routes(), "GET", "/v1/services?consistent=1", "")
	if code != http.StatusOK {
		t.Fatalf("consistent list: %d %s", code, body)
	}
	var svcs []api.Service
	if err := json.Unmarshal(body, &svcs); err != nil || len(svcs) != 2 {
		t.Fatalf("consistent list: %v %s", err, body)
	}
}

func TestImageRemoveWithoutReference(t *testing.T) {
	a := newTestAgent(t)
	code, body := do(t, a.routes(), "DELETE", "/v1/images/", "")
	if code != http.StatusBadRequest {
		t.Fatalf("status %d, want 400: %s", code, body)
	}
	if msg := errorBody(t, body); !strings.Contains(msg, "image rm needs an image reference") {
		t.Fatalf("error %q", msg)
	}
}

func TestBodyTooLarge(t *testing.T) {
	a := newTestAgent(t)
	big := fmt.Sprintf(`{"token":"%s","addr":"x"}`, strings.Repeat("a", httpapi.MaxBodyBytes))
	code, body := do(t, a.routes(), "POST", "/v1/join", big)
	if code != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413: %.200s", code, body)
	}
	if msg := errorBody(t, body); msg != "request body larger than 4 MiB" {
		t.Fatalf("error %q", msg)
	}
	// Exactly at the limit is still read (and then judged on content).
	exact := `{"token":"` + strings.Repeat("a", httpapi.MaxBodyBytes-len(`{"token":""}`)) + `"}`
	if code, body := do(t, a.routes(), "POST", "/v1/join", exact); code != http.StatusBadRequest ||
		!strings.Contains(errorBody(t, body), "join needs a token and the address") {
		t.Fatalf("a body of exactly %d bytes: %d %.200s", httpapi.MaxBodyBytes, code, body)
	}
}
