package node

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/pki"
)

// authzCase is one command in two forms: about the caller's own objects
// and about another node's (the same command when it names no node).
type authzCase struct {
	own, other consensus.Command
	// want: leader, node for its own objects, node for others', admin from
	// a manager, admin from a worker.
	leader, nodeOwn, nodeOther, admin, adminWorker bool
}

func TestAuthorizeTable(t *testing.T) {
	const me, them = "node-me", "node-them"
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	self := &api.Node{ID: me, Hostname: "me", Addr: "10.0.0.1", ClusterPort: 2377, GossipPort: 7946,
		Status: api.NodeReady, Availability: api.AvailabilityActive, Labels: map[string]string{"a": "b"},
		Subnet: "10.42.1.0/24", Voter: true, CertSerial: "s1", CreatedAt: now, UpdatedAt: now, Version: 7}
	moved := *self
	moved.Addr, moved.Resources, moved.UpdatedAt, moved.Version = "10.0.0.9", api.Resources{NanoCPUs: 4e9}, now.Add(time.Hour), 0
	otherNode := moved
	otherNode.ID = them
	svc := api.Service{ID: "s1", Name: "web", Spec: api.ServiceSpec{Name: "web", Image: "busybox"}}
	status := func(id string) consensus.Command {
		return consensus.TaskStatus{NodeID: id, Statuses: []api.TaskStatus{{TaskID: "t1", State: api.TaskRunning, IP: "10.42.9.9"}}}
	}
	same := func(c consensus.Command) (consensus.Command, consensus.Command) { return c, c }
	internal := func(c consensus.Command) authzCase {
		o, x := same(c)
		return authzCase{own: o, other: x, leader: true}
	}
	adminCase := func(c consensus.Command) authzCase {
		o, x := same(c)
		return authzCase{own: o, other: x, leader: true, admin: true}
	}
	cases := map[consensus.CommandType]authzCase{
		consensus.TypeBootstrapCluster: internal(consensus.BootstrapCluster{Node: *self}),
		consensus.TypeUpsertNode: {own: consensus.UpsertNode{Node: moved}, other: consensus.UpsertNode{Node: otherNode},
			leader: true, nodeOwn: true},
		consensus.TypeUpdateNode:    adminCase(consensus.UpdateNode{ID: them, Update: api.NodeUpdate{Role: api.RoleWorker}}),
		consensus.TypeSetNodeStatus: internal(consensus.SetNodeStatus{Statuses: []consensus.NodeStatus{{ID: me, Status: api.NodeReady}}}),
		consensus.TypeSetNodeVoter:  internal(consensus.SetNodeVoter{ID: me, Voter: true}),
		consensus.TypeRemoveNode:    internal(consensus.RemoveNode{ID: them}),
		consensus.TypeRotateToken:   adminCase(consensus.RotateToken{SecretHash: "h"}),
		consensus.TypeSetGossipKeys: internal(consensus.SetGossipKeys{Keys: [][]byte{make([]byte, 32)}}),
		consensus.TypeCreateService: adminCase(consensus.CreateService{Service: svc}),
		consensus.TypeUpdateService: adminCase(consensus.UpdateService{Service: svc}),
		consensus.TypeDeleteService: adminCase(consensus.DeleteService{ID: "s1"}),
		consensus.TypeUpsertTasks:   internal(consensus.UpsertTasks{Tasks: []api.Task{{ID: "t1", NodeID: me}}}),
		consensus.TypeTaskStatus:    {own: status(me), other: status(them), leader: true, nodeOwn: true},
		consensus.TypeDeleteTasks:   internal(consensus.DeleteTasks{IDs: []string{"t1"}}),
		consensus.TypeUpsertImage: {own: consensus.UpsertImage{Image: api.Image{ID: "sha256:1", Nodes: []string{me}}},
			other: consensus.UpsertImage{Image: api.Image{ID: "sha256:1", Nodes: []string{me, them}}}, leader: true, nodeOwn: true},
		consensus.TypeSetImageNode: {own: consensus.SetImageNode{ImageID: "sha256:1", NodeID: me, Present: true},
			other: consensus.SetImageNode{ImageID: "sha256:1", NodeID: them}, leader: true, nodeOwn: true},
		consensus.TypeDeleteImage: internal(consensus.DeleteImage{ID: "sha256:1"}),
		consensus.TypeBatch: {own: consensus.Batch{Commands: []consensus.Command{status(me), consensus.SetImageNode{ImageID: "x", NodeID: me}}},
			other: consensus.Batch{Commands: []consensus.Command{status(me), consensus.UpsertTasks{}}}, leader: true, nodeOwn: true},
		consensus.TypeTrimTasks:        internal(consensus.TrimTasks{}),
		consensus.TypeRevokeCert:       internal(consensus.RevokeCert{Serial: "s2"}),
		consensus.TypeSetVoterTarget:   internal(consensus.SetVoterTarget{Target: 5}),
		consensus.TypeSetClusterEpoch:  internal(consensus.SetClusterEpoch{Epoch: 2}),
		consensus.TypeSealClusterKeys:  internal(consensus.SealClusterKeys{KEKID: "k"}),
		consensus.TypeRotateCA:         internal(consensus.RotateCA{ExpectFingerprint: "f"}),
		consensus.TypeFinishCARotation: internal(consensus.FinishCARotation{CAFingerprint: "f"}),
		consensus.TypeSetNodeCert:      internal(consensus.SetNodeCert{ID: me, Serial: "s9"}),
		// Secrets and configs.
		consensus.TypeCreateSecret:  adminCase(consensus.CreateSecret{Secret: consensus.Secret{ID: "x", Name: "pw"}, Plaintext: []byte("pw")}),
		consensus.TypeDeleteSecret:  adminCase(consensus.DeleteSecret{ID: "x"}),
		consensus.TypeCreateConfig:  adminCase(consensus.CreateConfig{Config: consensus.ConfigObject{ID: "x", Name: "c"}}),
		consensus.TypeDeleteConfig:  adminCase(consensus.DeleteConfig{ID: "x"}),
		consensus.TypeCreateNetwork: adminCase(consensus.CreateNetwork{Network: api.Network{ID: "n1", Name: "front"}}),
		consensus.TypeDeleteNetwork: adminCase(consensus.DeleteNetwork{ID: "n1"}),
	}
	// Every command type the log knows is in the table.
	for ty := 1; ty < 256; ty++ {
		if _, err := consensus.DecodeCommand([]byte{byte(ty), consensus.CommandVersion, '{', '}'}); err != nil {
			continue
		}
		if _, ok := cases[consensus.CommandType(ty)]; !ok {
			t.Errorf("command type %d has no row in the authorization table", ty)
		}
	}
	for ty, tc := range cases {
		if tc.own.Type() != ty || tc.other.Type() != ty {
			t.Fatalf("row %d holds commands of types %d and %d", ty, tc.own.Type(), tc.other.Type())
		}
		for _, k := range []struct {
			name  string
			c     caller
			cmd   consensus.Command
			allow bool
		}{
			{"leader", caller{Kind: callerLeader, NodeID: me}, tc.other, tc.leader},
			{"node, own objects", caller{Kind: callerNode, NodeID: me}, tc.own, tc.nodeOwn},
			{"node, others' objects", caller{Kind: callerNode, NodeID: me}, tc.other, tc.nodeOther},
			{"admin forward from a manager", caller{Kind: callerAdmin, NodeID: me}, tc.other, tc.admin},
			{"admin forward from a worker", caller{Kind: callerAdmin, NodeID: me, Worker: true}, tc.other, tc.adminWorker},
		} {
			t.Run(fmt.Sprintf("%s/%s", typeName(tc.own), k.name), func(t *testing.T) {
				for _, cmd := range []consensus.Command{k.cmd, roundTrip(t, k.cmd)} {
					err := authorize(k.c, cmd, self)
					if k.allow && err != nil {
						t.Fatalf("refused: %v", err)
					}
					if !k.allow {
						if err == nil {
							t.Fatal("allowed")
						}
						if !errors.Is(err, ErrForbidden) && !errors.Is(err, ErrWorker) {
							t.Fatalf("refusal %v wraps neither ErrForbidden nor ErrWorker", err)
						}
					}
				}
			})
		}
	}
}

// roundTrip returns cmd as the leader decodes it from the wire.
func roundTrip(t *testing.T, cmd consensus.Command) consensus.Command {
	t.Helper()
	enc, err := consensus.EncodeCommand(cmd)
	if err != nil {
		t.Fatal(err)
	}
	out, err := consensus.DecodeCommand(enc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestAuthorizeOwnNodeRecord(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	cur := api.Node{ID: "me", Hostname: "me", Addr: "10.0.0.1", ClusterPort: 2377, GossipPort: 7946,
		Status: api.NodeReady, Availability: api.AvailabilityActive, Labels: map[string]string{"zone": "a"},
		Subnet: "10.42.1.0/24", Voter: true, CertSerial: "s1", CreatedAt: now, UpdatedAt: now, Version: 7, Role: api.RoleWorker}
	tests := []struct {
		name   string
		change func(n *api.Node)
		refuse string // field named in the refusal, "" = allowed
	}{
		{"unchanged", func(n *api.Node) {}, ""},
		{"addresses, ports, resources", func(n *api.Node) {
			n.Addr, n.ClusterPort, n.GossipPort, n.Hostname = "10.0.0.2", 2400, 7950, "me2"
			n.Resources = api.Resources{NanoCPUs: 2e9, MemoryBytes: 1 << 30}
			n.UpdatedAt = now.Add(time.Minute)
		}, ""},
		{"version and manager status are derived", func(n *api.Node) { n.Version, n.ManagerStatus = 99, api.ManagerLeader }, ""},
		{"role", func(n *api.Node) { n.Role = api.RoleManager }, "role"},
		{"labels", func(n *api.Node) { n.Labels = map[string]string{"zone": "b"} }, "labels"},
		{"availability", func(n *api.Node) { n.Availability = api.AvailabilityDrain }, "availability"},
		{"status", func(n *api.Node) { n.Status = api.NodeDown }, "status"},
		{"subnet", func(n *api.Node) { n.Subnet = "10.42.2.0/24" }, "subnet"},
		{"voter", func(n *api.Node) { n.Voter = false }, "voter"},
		{"certificate serial", func(n *api.Node) { n.CertSerial = "s9" }, "cert_serial"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := cur
			next.Labels = map[string]string{"zone": "a"}
			tt.change(&next)
			err := authorize(caller{Kind: callerNode, NodeID: "me"}, &consensus.UpsertNode{Node: next}, &cur)
			if tt.refuse == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), tt.refuse) {
				t.Fatalf("err = %v, want a refusal naming %s", err, tt.refuse)
			}
		})
	}
	if err := authorize(caller{Kind: callerNode, NodeID: "me"}, consensus.UpsertNode{Node: cur}, nil); !errors.Is(err, ErrForbidden) {
		t.Fatalf("upsert without a stored record: %v", err)
	}
	if err := authorize(caller{Kind: callerNode}, consensus.TaskStatus{}, nil); !errors.Is(err, ErrForbidden) {
		t.Fatalf("node caller without an ID: %v", err)
	}
	if err := authorize(caller{Kind: callerNode, NodeID: "me"}, nil, nil); !errors.Is(err, ErrForbidden) {
		t.Fatalf("nil command: %v", err)
	}
}

func TestAdminOpCheck(t *testing.T) {
	if err := adminOpCheck("remove", caller{Kind: callerAdmin, NodeID: "w", Worker: true}); !errors.Is(err, ErrWorker) {
		t.Fatalf("remove from a worker: %v", err)
	}
	if err := adminOpCheck("leave", caller{Kind: callerAdmin, NodeID: "w", Worker: true}); err != nil {
		t.Fatalf("leave from a worker: %v", err)
	}
	if err := adminOpCheck("remove", caller{Kind: callerAdmin, NodeID: "m"}); err != nil {
		t.Fatalf("remove from a manager: %v", err)
	}
}

func TestRaftPeerAllowed(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	servers := []consensus.Server{{ID: "a", Voter: true}, {ID: "b", Voter: true}, {ID: "c"}}
	tests := []struct {
		name        string
		servers     []consensus.Server
		peer        string
		leader      bool
		lastContact time.Time
		allow       bool
	}{
		{"voter", servers, "a", false, now, true},
		{"non-voter member", servers, "c", true, now, true},
		{"non-member to a follower with a live leader", servers, "x", false, now.Add(-time.Second), false},
		{"non-member to the leader", servers, "x", true, time.Time{}, false},
		{"joining node: empty configuration", nil, "x", false, time.Time{}, true},
		{"follower without a leader for long: configuration may be stale", servers, "x", false, now.Add(-time.Minute), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := raftPeerAllowed(tt.servers, tt.peer, tt.leader, tt.lastContact, now)
			if (err == nil) != tt.allow {
				t.Fatalf("err = %v, want allowed %v", err, tt.allow)
			}
		})
	}
}

func TestCheckReservedPorts(t *testing.T) {
	nodes := []*api.Node{{Hostname: "h1", ClusterPort: 2377, GossipPort: 7946}, {Hostname: "h2", ClusterPort: 12377, GossipPort: 17946}}
	spec := func(ports ...int) api.ServiceSpec {
		s := api.ServiceSpec{Name: "web", Image: "busybox"}
		for _, p := range ports {
			s.Ports = append(s.Ports, api.PortConfig{Published: p, Target: 80, Protocol: "tcp"})
		}
		return s
	}
	for _, tt := range []struct {
		ports []int
		keep  []int
		bad   string
	}{
		{ports: []int{8080}},
		{ports: []int{2377}, bad: "2377"},
		{ports: []int{8080, 7946}, bad: "7946"},
		{ports: []int{4789}, bad: "4789"},
		{ports: []int{51820}, bad: "51820"},
		{ports: []int{12377}, bad: "cluster port of node h2"},
		{ports: []int{17946}, bad: "gossip port of node h2"},
		{ports: []int{2377, 8080}, keep: []int{2377}}, // stored before the rule: may still be scaled
	} {
		var keep []api.PortConfig
		for _, p := range tt.keep {
			keep = append(keep, api.PortConfig{Published: p})
		}
		err := checkReservedPorts(spec(tt.ports...), reservedPorts(nodes), keep)
		if tt.bad == "" {
			if err != nil {
				t.Errorf("ports %v: %v", tt.ports, err)
			}
			continue
		}
		if !errors.Is(err, ErrReservedPort) || !strings.Contains(err.Error(), tt.bad) {
			t.Errorf("ports %v: err = %v, want a reserved-port refusal naming %s", tt.ports, err, tt.bad)
		}
	}
	// On the leader the refusal is an invalid spec, which crosses RPC.
	if err := checkSpecOnLeader(spec(2377), nil, nodes); !errors.Is(err, consensus.ErrInvalid) || !errors.Is(err, ErrReservedPort) {
		t.Fatalf("checkSpecOnLeader: %v", err)
	}
	if err := checkSpecOnLeader(api.ServiceSpec{Name: "-bad-", Image: "x"}, nil, nodes); !errors.Is(err, consensus.ErrInvalid) {
		t.Fatalf("checkSpecOnLeader does not validate the spec: %v", err)
	}
}

// testLeader is an agent leading a one-voter raft cluster that runs on the
// real mux on loopback, with its store bootstrapped and two more nodes in
// it: "node-b" (a member of the raft configuration) and "node-w" (a
// worker). Peers are played by certificates from the same CA.
type testLeader struct {
	*rpcServer
	cl *cluster
}

func startTestLeader(t *testing.T) *testLeader {
	t.Helper()
	s := startRPCServer(t)
	rc := consensus.DefaultConfig()
	rc.NodeID = s.a.id.NodeID
	rc.Addr = s.addr
	rc.DataDir = t.TempDir()
	self := s.a.id.NodeID
	rc.StreamLayer = &raftLayer{m: s.m, client: func() *tls.Config { return s.pki.client(self) }}
	store := consensus.NewStore()
	r, err := consensus.New(rc, store)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Shutdown() })
	s.m.setRaftGate(raftGate(r))
	if err := r.BootstrapSelf(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !r.IsLeader() {
		if time.Now().After(deadline) {
			t.Fatal("no leader")
		}
		time.Sleep(10 * time.Millisecond) // raft offers no election notification before the leader loop exists
	}
	cl := &cluster{id: "c1", store: store, raft: r, mux: s.m, client: s.pki.client(self)}
	// A voter holds the key-encryption key that seals the join secret.
	if err := s.a.saveKEK(pki.NewKEK()); err != nil {
		t.Fatal(err)
	}
	s.a.mu.Lock()
	s.a.cl = cl
	s.a.mu.Unlock()
	ctx := rpcCtx(t)
	now := time.Now().UTC()
	node := func(id, host string) api.Node {
		return api.Node{ID: id, Hostname: host, Addr: "127.0.0.1", ClusterPort: 2377, GossipPort: 7946,
			Status: api.NodeReady, Availability: api.AvailabilityActive, CreatedAt: now}
	}
	must := func(cmd consensus.Command) {
		t.Helper()
		if _, err := r.Apply(ctx, cmd); err != nil {
			t.Fatalf("%T: %v", cmd, err)
		}
	}
	must(consensus.BootstrapCluster{Cluster: consensus.ClusterState{ClusterID: "c1", ClusterCIDR: "10.42.0.0/16",
		VIPCIDR: "10.43.0.0/16", VoterTarget: 1, CreatedAt: now}, Node: node(self, "leader")})
	must(consensus.UpsertNode{Node: node("node-b", "b")})
	must(consensus.UpsertNode{Node: node("node-w", "w")})
	must(consensus.UpdateNode{ID: "node-w", Update: api.NodeUpdate{Role: api.RoleWorker}, Now: now})
	must(consensus.CreateService{Service: api.Service{ID: "svc1", Name: "web", Spec: api.ServiceSpec{Name: "web", Image: "busybox", Mode: api.ModeReplicated, Replicas: 1}}})
	must(consensus.UpsertTasks{Tasks: []api.Task{{ID: "task-b", ServiceID: "svc1", Service: "web", Slot: 1, NodeID: "node-b",
		DesiredState: api.TaskRunning, State: api.TaskAssigned, CreatedAt: now}}})
	if err := r.AddNonvoter(ctx, "node-b", "127.0.0.1:1"); err != nil {
		t.Fatal(err)
	}
	return &testLeader{rpcServer: s, cl: cl}
}

// apply sends cmd over rpcApply as peer.
func (l *testLeader) apply(t *testing.T, peer string, cmd consensus.Command) error {
	t.Helper()
	enc, err := consensus.EncodeCommand(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return callRPC(rpcCtx(t), l.addr, l.pki.client(peer), rpcApply, applyRPCRequest{Command: enc}, nil, nil)
}

// admin sends cmd as the admin action of a user on peer's socket.
func (l *testLeader) admin(t *testing.T, peer string, cmd consensus.Command) error {
	t.Helper()
	enc, err := consensus.EncodeCommand(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return callRPC(rpcCtx(t), l.addr, l.pki.client(peer), rpcAdminWrite, adminWriteRequest{Action: adminAction(cmd), Command: enc}, nil, nil)
}

func TestLeaderRefusesForgedCommands(t *testing.T) {
	l := startTestLeader(t)
	task := func() *api.Task {
		tk, err := l.cl.store.Task("task-b")
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}
	forged := consensus.TaskStatus{NodeID: "node-b", Statuses: []api.TaskStatus{{TaskID: "task-b", State: api.TaskRunning, IP: "10.42.66.66"}}}

	// Node w claims to be node b and reports b's task running at its own IP.
	err := l.apply(t, "node-w", forged)
	if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), "own tasks") {
		t.Fatalf("forged TaskStatus: %v, want a forbidden refusal", err)
	}
	if got := task(); got.State != api.TaskAssigned || got.IP != "" {
		t.Fatalf("forged TaskStatus changed the task: state %s ip %s", got.State, got.IP)
	}
	// Node b itself may.
	if err := l.apply(t, "node-b", forged); err != nil {
		t.Fatalf("own TaskStatus: %v", err)
	}
	if got := task(); got.State != api.TaskRunning || got.IP != "10.42.66.66" {
		t.Fatalf("own TaskStatus not applied: state %s ip %s", got.State, got.IP)
	}

	// A raw UpsertNode for another node, and cluster-internal commands.
	b, _ := l.cl.store.Node("node-b")
	hijack := *b
	hijack.Addr = "10.9.9.9"
	for name, cmd := range map[string]consensus.Command{
		"upsert another node":   consensus.UpsertNode{Node: hijack},
		"rotate token raw":      consensus.RotateToken{SecretHash: "h", Secret: "s"},
		"gossip keys":           consensus.SetGossipKeys{Keys: [][]byte{make([]byte, 32)}},
		"task assignments":      consensus.UpsertTasks{Tasks: []api.Task{{ID: "task-b", NodeID: "node-w"}}},
		"voter":                 consensus.SetNodeVoter{ID: "node-w", Voter: true},
		"create service as raw": consensus.CreateService{Service: api.Service{ID: "x", Name: "x", Spec: api.ServiceSpec{Name: "x", Image: "busybox"}}},
	} {
		if err := l.apply(t, "node-w", cmd); !errors.Is(err, ErrForbidden) {
			t.Errorf("%s over rpcApply: %v, want forbidden", name, err)
		}
	}
	if n, _ := l.cl.store.Node("node-b"); n.Addr != "127.0.0.1" {
		t.Fatalf("node b's address became %s", n.Addr)
	}
	// Its own address a node may update.
	w, _ := l.cl.store.Node("node-w")
	mine := *w
	mine.Addr = "127.0.0.2"
	if err := l.apply(t, "node-w", consensus.UpsertNode{Node: mine}); err != nil {
		t.Fatalf("own node record: %v", err)
	}

	// Admin actions: allowed from a manager, refused from a worker, and a
	// spec is validated on the leader, who records who asked.
	spec := api.ServiceSpec{Name: "api", Image: "busybox", Mode: api.ModeReplicated, Replicas: 1}
	create := consensus.CreateService{Service: api.Service{ID: "svc2", Name: "api", Spec: spec}}
	if err := l.admin(t, "node-w", create); !errors.Is(err, ErrWorker) || !strings.Contains(err.Error(), "worker") {
		t.Fatalf("create from a worker: %v", err)
	}
	bad := create
	bad.Service.Spec.Ports = []api.PortConfig{{Published: 2377, Target: 80, Protocol: "tcp"}}
	if err := l.admin(t, "node-b", bad); !errors.Is(err, consensus.ErrInvalid) || !strings.Contains(err.Error(), "2377") {
		t.Fatalf("publishing 2377: %v", err)
	}
	invalid := create
	invalid.Service.Spec.Image = " " // the FSM does not check images: only the leader's validation does
	if err := l.admin(t, "node-b", invalid); !errors.Is(err, consensus.ErrInvalid) {
		t.Fatalf("invalid spec forwarded: %v", err)
	}
	if err := l.admin(t, "node-b", create); err != nil {
		t.Fatalf("create from a manager: %v", err)
	}
	s, err := l.cl.store.Service("svc2")
	if err != nil || s.UpdatedBy != "node-b" {
		t.Fatalf("service %+v %v: want updated_by node-b", s, err)
	}
	// An admin action must carry the command it names.
	enc, _ := consensus.EncodeCommand(consensus.SetNodeVoter{ID: "node-w", Voter: true})
	err = callRPC(rpcCtx(t), l.addr, l.pki.client("node-b"), rpcAdminWrite, adminWriteRequest{Action: actionUpdateNode, Command: enc}, nil, nil)
	if !errors.Is(err, ErrForbidden) {
		t.Fatalf("admin action with a mismatched command: %v", err)
	}
	// Token rotation is a narrow request: the leader makes the secret.
	before := l.cl.store.Cluster().TokenSecretHash
	err = callRPC(rpcCtx(t), l.addr, l.pki.client("node-b"), rpcAdminWrite, adminWriteRequest{Action: actionRotateToken}, nil, nil)
	if err != nil || l.cl.store.Cluster().TokenSecretHash == before {
		t.Fatalf("rotate token: %v", err)
	}
	// Removing a node is refused from a worker.
	err = callRPC(rpcCtx(t), l.addr, l.pki.client("node-w"), rpcAdmin, adminRPCRequest{Op: "remove", NodeID: "node-b", Force: true}, nil, nil)
	if !errors.Is(err, ErrWorker) {
		t.Fatalf("node rm from a worker: %v", err)
	}
}

// dialStream is a raft.StreamLayer that only dials, as a given node.
type dialStream struct {
	cfg    *tls.Config
	closed chan struct{}
}

func (d *dialStream) Accept() (net.Conn, error) { <-d.closed; return nil, net.ErrClosed }
func (d *dialStream) Close() error              { return nil }
func (d *dialStream) Addr() net.Addr            { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
func (d *dialStream) Dial(a raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := dialProto(string(a), timeout, d.cfg, protoRaft)
	if err != nil {
		return nil, err
	}
	// The leader runs at epoch 0, as a nil fence does.
	if err := dialEpoch(c, nil, string(a), timeout); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

func TestRaftFromNonMemberRefused(t *testing.T) {
	l := startTestLeader(t)
	termOf := func() string { return l.cl.raft.Stats()["term"] }
	appendEntries := func(peer string) error {
		stream := &dialStream{cfg: l.pki.client(peer), closed: make(chan struct{})}
		defer close(stream.closed)
		trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream: stream, MaxPool: 1, Timeout: 2 * time.Second,
			Logger: hclog.NewNullLogger(),
		})
		defer trans.Close()
		req := &raft.AppendEntriesRequest{
			RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(peer), Addr: []byte("127.0.0.1:1")},
			Term:      1000,
		}
		var resp raft.AppendEntriesResponse
		return trans.AppendEntries(raft.ServerID(l.a.id.NodeID), raft.ServerAddress(l.addr), req, &resp)
	}
	term := termOf()
	// A certified node outside the raft configuration: the connection is
	// closed before raft reads it; the leader keeps its term and its lead.
	if err := appendEntries("node-x"); err == nil {
		t.Fatal("AppendEntries from a non-member was answered")
	}
	if termOf() != term || !l.cl.raft.IsLeader() {
		t.Fatalf("a non-member moved the leader: term %s → %s, leader %v", term, termOf(), l.cl.raft.IsLeader())
	}
	// A member of the configuration reaches raft (which, as raft does,
	// adopts the higher term): the gate is what stopped node-x.
	if err := appendEntries("node-b"); err != nil {
		t.Fatalf("AppendEntries from a member: %v", err)
	}
	if termOf() == term {
		t.Fatal("the member's AppendEntries never reached raft")
	}
}

func TestWorkerAPIRefusesWrites(t *testing.T) {
	l := startTestLeader(t)
	ctx := rpcCtx(t)
	self := l.a.id.NodeID
	if _, err := l.cl.raft.Apply(ctx, consensus.UpdateNode{ID: self, Update: api.NodeUpdate{Role: api.RoleWorker}, Now: time.Now()}); err != nil {
		t.Fatal(err)
	}
	h := l.a.routes()
	code, body := do(t, h, "POST", "/v1/nodes/node-b/update", `{"availability":"drain"}`)
	if code != http.StatusForbidden || !strings.Contains(string(body), "worker") {
		t.Fatalf("node update on a worker: %d %s", code, body)
	}
	code, body = do(t, h, "POST", "/v1/token/rotate", "")
	if code != http.StatusForbidden || !strings.Contains(string(body), "worker") {
		t.Fatalf("token rotate on a worker: %d %s", code, body)
	}
	if n, _ := l.cl.store.Node("node-b"); n.Availability != api.AvailabilityActive {
		t.Fatalf("a worker's API changed node b: %s", n.Availability)
	}
	// Reads still answer, and show the role.
	code, body = do(t, h, "GET", "/v1/nodes", "")
	if code != http.StatusOK {
		t.Fatalf("node ls on a worker: %d %s", code, body)
	}
	var nodes []api.Node
	if err := json.Unmarshal(body, &nodes); err != nil {
		t.Fatal(err)
	}
	roles := map[string]string{}
	for _, n := range nodes {
		roles[n.ID] = n.Role
	}
	if roles[self] != api.RoleWorker || roles["node-b"] != api.RoleManager {
		t.Fatalf("roles %v", roles)
	}
	// Back to manager (on the leader's own loops' path here), writes work.
	if _, err := l.cl.raft.Apply(ctx, consensus.UpdateNode{ID: self, Update: api.NodeUpdate{Role: api.RoleManager}, Now: time.Now()}); err != nil {
		t.Fatal(err)
	}
	code, body = do(t, h, "POST", "/v1/nodes/node-b/update", `{"availability":"drain"}`)
	if code != http.StatusOK {
		t.Fatalf("node update on a manager: %d %s", code, body)
	}
}

func TestMuxLimitsUnauthenticatedConnections(t *testing.T) {
	s := startRPCServer(t)
	s.m.setLimits(muxLimits{MaxConns: 100, MaxAnon: 50, MaxAnonPerIP: 4})
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// Idle TCP connections that never start TLS: at most 4 are held.
	for i := 0; i < 10; i++ {
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	waitFor(t, "4 unauthenticated connections held", func() bool { _, anon := s.m.counts(); return anon == 4 })
	closedByServer := 0
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err == io.EOF {
			closedByServer++
		}
	}
	if closedByServer != 6 {
		t.Fatalf("%d connections closed at once by the server, want 6", closedByServer)
	}
	// A certified peer is still served while an address is at its cap:
	// caps are per source address, and loopback is the same one here, so
	// free the slots first.
	for _, c := range conns {
		c.Close()
	}
	waitFor(t, "slots released", func() bool { open, anon := s.m.counts(); return open == 0 && anon == 0 })
	var out map[string]string
	if err := callRPC(rpcCtx(t), s.addr, s.pki.client("node-b"), rpcPing, nil, &out, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ping's slot released", func() bool { open, anon := s.m.counts(); return open == 0 && anon == 0 })
}

func TestRPCAnonymousRequestLineIsSmall(t *testing.T) {
	s := startRPCServer(t)
	c, err := dialProto(s.addr, time.Second, pki.JoinTLS(s.pki.ca.Fingerprint()), protoRPC)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Longer than a joiner ever needs, far below the certified limit.
	line := `{"method":"join","body":"` + strings.Repeat("x", maxAnonRequestLine) + `"}` + "\n"
	go func() { _, _ = c.Write([]byte(line)) }()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if len(b) != 0 {
		t.Fatalf("answered an oversized anonymous request: %q (%v)", b, err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling a counter; nothing to subscribe to
	}
}
