package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/handlers"
	"github.com/shoal-org/shoal/node/httpapi"
	"github.com/shoal-org/shoal/runtime/image"
)

// deployCheckAgent is newSoloAgent with the image bb:1 known to the
// cluster, a network back, and a service front outside any stack on it
// with the alias www.
func deployCheckAgent(t *testing.T) *Agent {
	t.Helper()
	a := newSoloAgent(t)
	imgs, err := image.Open(image.DefaultConfig(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	a.images = imgs
	if _, err := a.cl.Raft.Apply(context.Background(), &command.UpsertImage{Image: api.Image{ID: "sha256:" + strings.Repeat("b", 64), Tags: []string{"bb:1"}}}); err != nil {
		t.Fatal(err)
	}
	h := a.routes()
	if code, b := do(t, h, "POST", "/v1/networks", `{"name":"back"}`); code != 200 {
		t.Fatalf("create network: %d %s", code, b)
	}
	front := api.ServiceSpec{Name: "front", Image: "bb:1", Replicas: 1, Networks: []string{"back"},
		NetworkAliases: map[string][]string{"back": {"www"}}}
	if code, b := do(t, h, "POST", "/v1/services", jsonOf(t, front)); code != 200 {
		t.Fatalf("create front: %d %s", code, b)
	}
	return a
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// clusterJSON is every object a deploy may write, to compare before and
// after a check.
func clusterJSON(t *testing.T, a *Agent) string {
	t.Helper()
	st := a.cl.Store
	return jsonOf(t, []any{st.Services(), st.Networks(), st.Secrets(), st.Configs(), st.Cluster().NextVIP})
}

// TestDeployCheck: POST /v1/services/check runs a deploy's writes in order
// against a copy of the state, with the checks their routes, the leader
// and the FSM run, and refuses the first one that would be refused,
// naming its service and the clash once; it never writes. Writes of the
// same deploy count: a removal or update frees a port a later create
// publishes, a network or secret it creates can be named.
func TestDeployCheck(t *testing.T) {
	a := deployCheckAgent(t)
	h := a.routes()
	svc := func(name string, mutate func(*api.ServiceSpec)) api.ServiceSpec {
		s := api.ServiceSpec{Name: name, Image: "bb:1", Replicas: 1, Labels: map[string]string{"com.docker.stack.namespace": "app"}}
		if mutate != nil {
			mutate(&s)
		}
		return s
	}
	onBack := func(aliases ...string) func(*api.ServiceSpec) {
		return func(s *api.ServiceSpec) {
			s.Networks = []string{"back"}
			if len(aliases) > 0 {
				s.NetworkAliases = map[string][]string{"back": aliases}
			}
		}
	}
	port := func(p int) func(*api.ServiceSpec) {
		return func(s *api.ServiceSpec) { s.Ports = []api.PortConfig{{Published: p, Target: 80, Protocol: "tcp"}} }
	}
	dbWithout5432 := svc("db", nil)
	dbWithout5432.Labels = nil
	tests := []struct {
		name   string
		req    api.DeployCheck
		status int
		want   []string // in the error, each once
	}{
		{"alias another service has", api.DeployCheck{Create: []api.ServiceSpec{svc("app_a", onBack()), svc("app_b", onBack("www"))}},
			400, []string{"app_b", "www"}},
		{"alias that is another service's name", api.DeployCheck{Create: []api.ServiceSpec{svc("app_a", nil), svc("app_b", onBack("front"))}},
			400, []string{"app_b", "front"}},
		{"port another service publishes", api.DeployCheck{Create: []api.ServiceSpec{svc("app_a", nil), svc("app_b", port(5432))}},
			400, []string{"app_b", "5432"}},
		{"name taken in another case", api.DeployCheck{Create: []api.ServiceSpec{svc("app_a", nil), svc("WEB", nil)}},
			400, []string{"WEB"}},
		{"spec the leader refuses", api.DeployCheck{Create: []api.ServiceSpec{svc("app_a", nil), svc("app_b", func(s *api.ServiceSpec) { s.Replicas = 2000000 })}},
			400, []string{"app_b", "2000000"}},
		{"two of the deploy clash", api.DeployCheck{Create: []api.ServiceSpec{svc("app_a", port(9000)), svc("app_b", port(9000))}},
			400, []string{"app_b", "9000"}},
		{"missing secret", api.DeployCheck{Create: []api.ServiceSpec{svc("app_a", func(s *api.ServiceSpec) {
			s.Secrets = []api.FileReference{{Source: "app_pw"}}
		})}}, 400, []string{"app_pw"}},
		{"network taken", api.DeployCheck{Networks: []api.Network{{Name: "back"}}}, 400, []string{"back"}},
		{"secret too large", api.DeployCheck{Configs: []api.ObjectCheck{{Name: "app_big", Size: api.MaxSecretSize + 1}}}, 400, []string{"app_big", "at most"}},
		{"secret of a negative size", api.DeployCheck{Secrets: []api.ObjectCheck{{Name: "app_neg", Size: -1}}}, 400, []string{"app_neg"}},
		{"secret taken", api.DeployCheck{Secrets: []api.ObjectCheck{{Name: "app_pw", Size: 3}, {Name: "app_pw", Size: 3}}}, 400, []string{"app_pw"}},
		{"update of a removed service", api.DeployCheck{Remove: []string{"db"}, Update: []api.ServiceUpdateCheck{{ID: "db", Spec: svc("db", nil)}}},
			404, []string{"db"}},

		// The deploy's own earlier writes.
		{"removal frees a port", api.DeployCheck{Remove: []string{"db"}, Create: []api.ServiceSpec{svc("app_a", port(5432))}}, 200, nil},
		{"update frees a port", api.DeployCheck{Update: []api.ServiceUpdateCheck{{ID: "db", Spec: dbWithout5432}},
			Create: []api.ServiceSpec{svc("app_a", port(5432))}}, 200, nil},
		{"network, secret and config of the deploy", api.DeployCheck{
			Networks: []api.Network{{Name: "app_net"}},
			Secrets:  []api.ObjectCheck{{Name: "app_pw", Size: 3}},
			Configs:  []api.ObjectCheck{{Name: "app_conf", Size: 5}},
			Create: []api.ServiceSpec{svc("app_a", func(s *api.ServiceSpec) {
				s.Networks = []string{"app_net"}
				s.NetworkAliases = map[string][]string{"app_net": {"www"}}
				s.Secrets = []api.FileReference{{Source: "app_pw"}}
				s.Configs = []api.FileReference{{Source: "app_conf"}}
			})}}, 200, nil},
	}
	before := clusterJSON(t, a)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := do(t, h, "POST", "/v1/services/check", jsonOf(t, tt.req))
			if code != tt.status {
				t.Fatalf("status %d, want %d: %s", code, tt.status, body)
			}
			if tt.status != 200 {
				msg := errorBody(t, body)
				for _, w := range tt.want {
					if !strings.Contains(msg, w) {
						t.Errorf("error %q lacks %q", msg, w)
					}
				}
				// Said once: no prefix repeated ("create service app_b:
				// create service app_b: ...").
				for _, op := range []string{"create service", "update service", "network", "secret"} {
					if strings.Count(msg, op+" "+tt.want[0]+":") > 1 {
						t.Errorf("error %q repeats %q", msg, op)
					}
				}
			}
			if after := clusterJSON(t, a); after != before {
				t.Fatalf("the check changed the cluster:\n%s\n%s", before, after)
			}
		})
	}
}

// TestDeployCheckLevelGate: a write some member's release cannot apply
// (the command gate) is refused by the check, as the leader would refuse
// it, naming the service.
func TestDeployCheckLevelGate(t *testing.T) {
	a := deployCheckAgent(t)
	a.cl.Raft.SetCommandGate(func(cmd command.Command) error {
		return command.CheckLevel(cmd.Type(), command.SinceLevel(cmd),
			[]command.PeerLevel{{ID: "oldnode", Level: command.EndpointLevel - 1, Version: "v0.9", Known: true}})
	})
	req := api.DeployCheck{Create: []api.ServiceSpec{{Name: "app_a", Image: "bb:1", Replicas: 1},
		{Name: "app_b", Image: "bb:1", Replicas: 1, EndpointMode: api.EndpointDNSRR}}}
	before := clusterJSON(t, a)
	code, body := do(t, a.routes(), "POST", "/v1/services/check", jsonOf(t, req))
	if msg := errorBody(t, body); code != 409 || strings.Count(msg, "app_b") != 1 || !strings.Contains(msg, "protocol level") {
		t.Fatalf("status %d: %s", code, body)
	}
	if clusterJSON(t, a) != before {
		t.Fatal("the check changed the cluster")
	}
}

// TestDeployCheckOnWorker: the check is refused where a write would be.
func TestDeployCheckOnWorker(t *testing.T) {
	a := deployCheckAgent(t)
	n, _ := a.cl.Store.Node(a.id.NodeID)
	n.Role = api.RoleWorker
	if _, err := a.cl.Raft.Apply(context.Background(), &command.UpsertNode{Node: *n}); err != nil {
		t.Fatal(err)
	}
	code, body := do(t, a.routes(), "POST", "/v1/services/check", jsonOf(t, api.DeployCheck{Create: []api.ServiceSpec{{Name: "x", Image: "bb:1"}}}))
	if code != 403 {
		t.Fatalf("status %d: %s", code, body)
	}
}

// TestDeployCheckBodies: the check takes every spec of a deploy at once,
// so its body may pass the 4 MiB of one write; each spec alone may not,
// since its own write would be refused then.
func TestDeployCheckBodies(t *testing.T) {
	a := deployCheckAgent(t)
	h := a.routes()
	spec := func(name string, size int) api.ServiceSpec {
		return api.ServiceSpec{Name: name, Image: "bb:1", Replicas: 1, Labels: map[string]string{"pad": strings.Repeat("x", size)}}
	}
	mib := 1 << 20
	big := api.DeployCheck{Create: []api.ServiceSpec{spec("app_a", 3*mib), spec("app_b", 3*mib)}}
	if code, body := do(t, h, "POST", "/v1/services/check", jsonOf(t, big)); code == 413 {
		t.Fatalf("a 6 MiB deploy of 3 MiB specs: %d %.200s", code, body)
	}
	huge := api.DeployCheck{Create: []api.ServiceSpec{spec("app_a", 1), spec("app_b", 5*mib)}}
	code, body := do(t, h, "POST", "/v1/services/check", jsonOf(t, huge))
	if msg := errorBody(t, body); code != 400 || !strings.Contains(msg, "service app_b: the spec is larger than the 4 MiB a write takes") {
		t.Fatalf("a 5 MiB spec: %d %s", code, msg)
	}
}

// TestDeployCheckStopsWhenCancelled: a check whose caller has gone (the
// CLI's timeout, a closed connection) stops between writes instead of
// checking the rest: each write costs a scan of the services, so a large
// check ran on for minutes after nobody waited for its answer.
func TestDeployCheckStopsWhenCancelled(t *testing.T) {
	a := deployCheckAgent(t)
	var req api.DeployCheck
	for i := range 3 {
		req.Create = append(req.Create, api.ServiceSpec{Name: fmt.Sprintf("app_%d", i), Image: "bb:1", Replicas: 1})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := handlers.New(replicaAgent{a}).CheckWrites(ctx, req); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled check returned %v, want %v", err, context.Canceled)
	}
}

// TestDeployCheckWritesBounded: a check of more writes than
// httpapi.MaxDeployCheckWrites is refused at once with 413, which the CLI
// answers by deploying unchecked with a warning; the 32 MiB body bound
// alone let one request carry ~100,000 minimal specs, each checked against
// all before it (4,000 took 160 s of the agent's CPU).
func TestDeployCheckWritesBounded(t *testing.T) {
	a := deployCheckAgent(t)
	var req api.DeployCheck
	for i := range httpapi.MaxDeployCheckWrites - 1 {
		req.Create = append(req.Create, api.ServiceSpec{Name: fmt.Sprintf("app_%d", i), Image: "bb:1", Replicas: 1})
	}
	req.Secrets = []api.ObjectCheck{{Name: "app_pw", Size: 3}}
	if code, body := do(t, a.routes(), "POST", "/v1/services/check", jsonOf(t, req)); code != 200 {
		t.Fatalf("a check of %d writes: %d %.200s", httpapi.MaxDeployCheckWrites, code, body)
	}
	req.Configs = []api.ObjectCheck{{Name: "app_conf", Size: 3}}
	code, body := do(t, a.routes(), "POST", "/v1/services/check", jsonOf(t, req))
	if msg := errorBody(t, body); code != 413 || !strings.Contains(msg, "writes") {
		t.Fatalf("a check of %d writes: %d %s", httpapi.MaxDeployCheckWrites+1, code, msg)
	}
}
