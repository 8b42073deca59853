package node

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/consensus/raftnode"
	"github.com/shoal-org/shoal/consensus/raftnode/raftdirtest"
	"github.com/shoal-org/shoal/node/authz"
	"github.com/shoal-org/shoal/node/clusterport"
	"github.com/shoal-org/shoal/node/instance"
	"github.com/shoal-org/shoal/node/keyring"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/wire"
)

// testLeader is an agent leading a one-voter raft cluster that runs on the
// real mux on loopback, with its store bootstrapped and two more nodes in
// it: "node-b" (a member of the raft configuration) and "node-w" (a
// worker). Peers are played by certificates from the same CA.
type testLeader struct {
	*rpcServer
	cl *instance.Instance
}

func startTestLeader(t *testing.T) *testLeader {
	t.Helper()
	s := startRPCServer(t)
	rc := raftnode.DefaultConfig()
	rc.NodeID = s.a.id.NodeID
	rc.Addr = s.addr
	rc.DataDir = raftdirtest.Dir(t)
	self := s.a.id.NodeID
	rc.StreamLayer = instance.NewRaftLayer(s.m, func() *tls.Config { return s.pki.client(self) }, nil)
	store := consensus.NewStore()
	r, err := raftnode.New(rc, store)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Shutdown() })
	s.m.SetRaftGate(instance.RaftGate(r, func() bool { return false }))
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
	cl := &instance.Instance{Host: s.a.host(), ID: "c1", Store: store, Raft: r, Client: s.pki.client(self)}
	// A voter holds the key-encryption key that seals the join secret.
	if err := keyring.SaveKEK(instance.Dir(s.a.cfg.DataDir), pki.NewKEK()); err != nil {
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
	must := func(cmd command.Command) {
		t.Helper()
		if _, err := r.Apply(ctx, cmd); err != nil {
			t.Fatalf("%T: %v", cmd, err)
		}
	}
	must(command.BootstrapCluster{Cluster: consensus.ClusterState{ClusterID: "c1", ClusterCIDR: "10.42.0.0/16",
		VIPCIDR: "10.43.0.0/16", VoterTarget: 1, CreatedAt: now}, Node: node(self, "leader")})
	must(command.UpsertNode{Node: node("node-b", "b")})
	must(command.UpsertNode{Node: node("node-w", "w")})
	must(command.UpdateNode{ID: "node-w", Update: api.NodeUpdate{Role: api.RoleWorker}, Now: now})
	must(command.CreateService{Service: api.Service{ID: "svc1", Name: "web", Spec: api.ServiceSpec{Name: "web", Image: "busybox", Mode: api.ModeReplicated, Replicas: 1}}})
	must(command.UpsertTasks{Tasks: []api.Task{{ID: "task-b", ServiceID: "svc1", Service: "web", Slot: 1, NodeID: "node-b",
		DesiredState: api.TaskRunning, State: api.TaskAssigned, CreatedAt: now}}})
	if err := r.AddNonvoter(ctx, "node-b", "127.0.0.1:1"); err != nil {
		t.Fatal(err)
	}
	return &testLeader{rpcServer: s, cl: cl}
}

// apply sends cmd over wire.MethodApply as peer.
func (l *testLeader) apply(t *testing.T, peer string, cmd command.Command) error {
	t.Helper()
	enc, err := command.Encode(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return instance.Call(rpcCtx(t), l.addr, l.pki.client(peer), wire.MethodApply, wire.ApplyRequest{Command: enc}, nil, nil)
}

// admin sends cmd as the admin action of a user on peer's socket.
func (l *testLeader) admin(t *testing.T, peer string, cmd command.Command) error {
	t.Helper()
	enc, err := command.Encode(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return instance.Call(rpcCtx(t), l.addr, l.pki.client(peer), wire.MethodAdminWrite, wire.AdminWriteRequest{Action: authz.AdminAction(cmd), Command: enc}, nil, nil)
}

func TestLeaderRefusesForgedCommands(t *testing.T) {
	l := startTestLeader(t)
	task := func() *api.Task {
		tk, err := l.cl.Store.Task("task-b")
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}
	// An address in node b's own /24 (ownTaskAddrs drops others).
	bnode, err := l.cl.Store.Node("node-b")
	if err != nil {
		t.Fatal(err)
	}
	bIP := netip.MustParsePrefix(bnode.Subnet).Addr().Next().Next().String()
	forged := command.TaskStatus{NodeID: "node-b", Statuses: []api.TaskStatus{{TaskID: "task-b", State: api.TaskRunning, IP: bIP}}}

	// Node w claims to be node b and reports b's task running at its own IP.
	err = l.apply(t, "node-w", forged)
	if !errors.Is(err, authz.ErrForbidden) || !strings.Contains(err.Error(), "own tasks") {
		t.Fatalf("forged TaskStatus: %v, want a forbidden refusal", err)
	}
	if got := task(); got.State != api.TaskAssigned || got.IP != "" {
		t.Fatalf("forged TaskStatus changed the task: state %s ip %s", got.State, got.IP)
	}
	// Node b itself may.
	if err := l.apply(t, "node-b", forged); err != nil {
		t.Fatalf("own TaskStatus: %v", err)
	}
	if got := task(); got.State != api.TaskRunning || got.IP != bIP {
		t.Fatalf("own TaskStatus not applied: state %s ip %s", got.State, got.IP)
	}

	// A raw UpsertNode for another node, and cluster-internal commands.
	b, _ := l.cl.Store.Node("node-b")
	hijack := *b
	hijack.Addr = "10.9.9.9"
	for name, cmd := range map[string]command.Command{
		"upsert another node":   command.UpsertNode{Node: hijack},
		"rotate token raw":      command.RotateToken{SecretHash: "h", Secret: "s"},
		"gossip keys":           command.SetGossipKeys{Keys: [][]byte{make([]byte, 32)}},
		"task assignments":      command.UpsertTasks{Tasks: []api.Task{{ID: "task-b", NodeID: "node-w"}}},
		"voter":                 command.SetNodeVoter{ID: "node-w", Voter: true},
		"create service as raw": command.CreateService{Service: api.Service{ID: "x", Name: "x", Spec: api.ServiceSpec{Name: "x", Image: "busybox"}}},
	} {
		if err := l.apply(t, "node-w", cmd); !errors.Is(err, authz.ErrForbidden) {
			t.Errorf("%s over wire.MethodApply: %v, want forbidden", name, err)
		}
	}
	if n, _ := l.cl.Store.Node("node-b"); n.Addr != "127.0.0.1" {
		t.Fatalf("node b's address became %s", n.Addr)
	}
	// Its own resources a node may update; its address is fixed at its
	// admission (others dial it there).
	w, _ := l.cl.Store.Node("node-w")
	mine := *w
	mine.Resources = api.Resources{NanoCPUs: 2e9}
	if err := l.apply(t, "node-w", command.UpsertNode{Node: mine}); err != nil {
		t.Fatalf("own node record: %v", err)
	}
	if n, _ := l.cl.Store.Node("node-w"); n.Resources.NanoCPUs != 2e9 {
		t.Fatalf("own resources not applied: %+v", n.Resources)
	}
	mine.Addr = "127.0.0.2"
	if err := l.apply(t, "node-w", command.UpsertNode{Node: mine}); !errors.Is(err, authz.ErrForbidden) {
		t.Fatalf("own address change: %v, want ErrForbidden", err)
	}

	// Admin actions: allowed from a manager, refused from a worker, and a
	// spec is validated on the leader, who records who asked.
	spec := api.ServiceSpec{Name: "api", Image: "busybox", Mode: api.ModeReplicated, Replicas: 1}
	create := command.CreateService{Service: api.Service{ID: "svc2", Name: "api", Spec: spec}}
	if err := l.admin(t, "node-w", create); !errors.Is(err, authz.ErrWorker) || !strings.Contains(err.Error(), "worker") {
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
	s, err := l.cl.Store.Service("svc2")
	if err != nil || s.UpdatedBy != "node-b" {
		t.Fatalf("service %+v %v: want updated_by node-b", s, err)
	}
	// An admin action must carry the command it names.
	enc, _ := command.Encode(command.SetNodeVoter{ID: "node-w", Voter: true})
	err = instance.Call(rpcCtx(t), l.addr, l.pki.client("node-b"), wire.MethodAdminWrite, wire.AdminWriteRequest{Action: authz.ActionUpdateNode, Command: enc}, nil, nil)
	if !errors.Is(err, authz.ErrForbidden) {
		t.Fatalf("admin action with a mismatched command: %v", err)
	}
	// Token rotation is a narrow request: the leader makes the secret.
	before := l.cl.Store.Cluster().TokenSecretHash
	err = instance.Call(rpcCtx(t), l.addr, l.pki.client("node-b"), wire.MethodAdminWrite, wire.AdminWriteRequest{Action: authz.ActionRotateToken}, nil, nil)
	if err != nil || l.cl.Store.Cluster().TokenSecretHash == before {
		t.Fatalf("rotate token: %v", err)
	}
	// Removing a node is refused from a worker.
	err = instance.Call(rpcCtx(t), l.addr, l.pki.client("node-w"), wire.MethodAdmin, wire.AdminRequest{Op: "remove", NodeID: "node-b", Force: true}, nil, nil)
	if !errors.Is(err, authz.ErrWorker) {
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
	c, err := instance.Dial(string(a), timeout, d.cfg, clusterport.ProtoRaft)
	if err != nil {
		return nil, err
	}
	// The leader runs at epoch 0, as a nil fence does.
	if err := clusterport.DialEpoch(c, nil, string(a), timeout); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

func TestRaftFromNonMemberRefused(t *testing.T) {
	l := startTestLeader(t)
	termOf := func() string { return l.cl.Raft.Stats()["term"] }
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
	if termOf() != term || !l.cl.Raft.IsLeader() {
		t.Fatalf("a non-member moved the leader: term %s → %s, leader %v", term, termOf(), l.cl.Raft.IsLeader())
	}
	// Nor a member that does not vote (TestNonVoterCannotForgeRaftLog);
	// voters are let through (authz's TestRaftPeerAllowed).
	if err := appendEntries("node-b"); err == nil {
		t.Fatal("AppendEntries from a non-voter was answered")
	}
	if termOf() != term || !l.cl.Raft.IsLeader() {
		t.Fatalf("a non-voter moved the leader: term %s → %s, leader %v", term, termOf(), l.cl.Raft.IsLeader())
	}
}

// TestNonVoterCannotForgeRaftLog: a node of the raft configuration that
// does not vote (every worker is one) only ever answers raft: the leader
// dials it, and it never dials anyone (raft does not let a non-voter stand
// for election). Let through at accept time as "a member", its certificate
// could speak raft as a leader: an AppendEntries with a higher term, the
// replica's last entry as its predecessor and any command after it made
// the node it reached adopt the term (the leader stepped down) and apply
// the command, which no authorization ever saw — here a worker making
// itself a manager. Only voters may dial raft now.
func TestNonVoterCannotForgeRaftLog(t *testing.T) {
	l := startTestLeader(t)
	stats := l.cl.Raft.Stats()
	term, _ := strconv.ParseUint(stats["term"], 10, 64)
	lastIdx, _ := strconv.ParseUint(stats["last_log_index"], 10, 64)
	lastTerm, _ := strconv.ParseUint(stats["last_log_term"], 10, 64)
	forged, err := command.Encode(command.UpdateNode{ID: "node-w", Update: api.NodeUpdate{Role: api.RoleManager}, Now: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	// node-b is a non-voter of the configuration (startTestLeader).
	stream := &dialStream{cfg: l.pki.client("node-b"), closed: make(chan struct{})}
	defer close(stream.closed)
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: stream, MaxPool: 1, Timeout: 2 * time.Second, Logger: hclog.NewNullLogger(),
	})
	defer trans.Close()
	req := &raft.AppendEntriesRequest{
		RPCHeader:    raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("node-b"), Addr: []byte("127.0.0.1:1")},
		Term:         term + 1,
		PrevLogEntry: lastIdx, PrevLogTerm: lastTerm,
		Entries:           []*raft.Log{{Index: lastIdx + 1, Term: term + 1, Type: raft.LogCommand, Data: forged}},
		LeaderCommitIndex: lastIdx + 1,
	}
	var resp raft.AppendEntriesResponse
	err = trans.AppendEntries(raft.ServerID(l.a.id.NodeID), raft.ServerAddress(l.addr), req, &resp)
	if err == nil {
		// Raft took it: wait for the forged entry to be applied, to show
		// what it did.
		deadline := time.Now().Add(5 * time.Second)
		for l.cl.Store.Index() < lastIdx+1 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if w, _ := l.cl.Store.Node("node-w"); w.Role != api.RoleWorker {
		t.Errorf("a non-voter's forged AppendEntries made node-w a %q", w.Role)
	}
	if err == nil {
		t.Errorf("AppendEntries from a non-voter was answered (success %v, term %d)", resp.Success, resp.Term)
	}
	if got := l.cl.Raft.Stats()["term"]; got != stats["term"] || !l.cl.Raft.IsLeader() {
		t.Errorf("a non-voter moved the leader: term %s → %s, leader %v", stats["term"], got, l.cl.Raft.IsLeader())
	}
}

func TestWorkerAPIRefusesWrites(t *testing.T) {
	l := startTestLeader(t)
	ctx := rpcCtx(t)
	self := l.a.id.NodeID
	if _, err := l.cl.Raft.Apply(ctx, command.UpdateNode{ID: self, Update: api.NodeUpdate{Role: api.RoleWorker}, Now: time.Now()}); err != nil {
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
	if n, _ := l.cl.Store.Node("node-b"); n.Availability != api.AvailabilityActive {
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
	if _, err := l.cl.Raft.Apply(ctx, command.UpdateNode{ID: self, Update: api.NodeUpdate{Role: api.RoleManager}, Now: time.Now()}); err != nil {
		t.Fatal(err)
	}
	code, body = do(t, h, "POST", "/v1/nodes/node-b/update", `{"availability":"drain"}`)
	if code != http.StatusOK {
		t.Fatalf("node update on a manager: %d %s", code, body)
	}
}

// TestWorkerCannotRotateCA: a CA rotation re-issues every node's
// certificate; like a token rotation it is an admin change a worker's
// certificate (and a worker's API) may not ask for.
func TestWorkerCannotRotateCA(t *testing.T) {
	l := startTestLeader(t)
	before := l.cl.Store.Cluster().CACertPEM
	var resp wire.CARotateResponse
	err := instance.Call(rpcCtx(t), l.addr, l.pki.client("node-w"), wire.MethodCARotate, nil, &resp, nil)
	if !errors.Is(err, authz.ErrWorker) {
		t.Fatalf("CA rotation asked by a worker: %v, want ErrWorker", err)
	}
	if c := l.cl.Store.Cluster(); !bytes.Equal(c.CACertPEM, before) || c.PrevCACertPEM != nil {
		t.Fatal("a worker's request rotated the CA")
	}
	// A worker's own API refuses it too.
	self := l.a.id.NodeID
	if _, err := l.cl.Raft.Apply(rpcCtx(t), command.UpdateNode{ID: self, Update: api.NodeUpdate{Role: api.RoleWorker}, Now: time.Now()}); err != nil {
		t.Fatal(err)
	}
	code, body := do(t, l.a.routes(), "POST", "/v1/ca/rotate?wait=1s", "")
	if code != http.StatusForbidden || !strings.Contains(string(body), "worker") {
		t.Fatalf("ca rotate on a worker: %d %s", code, body)
	}
}

// TestLeaderDropsTaskAddressesOutsideTheNode: a node reports its own
// tasks, but their addresses must be its own too: one outside its share
// of the task's network (another container's, a host's) would have every
// node send the service's traffic there. The rest of the report stands.
func TestLeaderDropsTaskAddressesOutsideTheNode(t *testing.T) {
	l := startTestLeader(t)
	b, err := l.cl.Store.Node("node-b")
	if err != nil {
		t.Fatal(err)
	}
	sub := netip.MustParsePrefix(b.Subnet)
	own := sub.Addr().Next().Next().String()
	foreign := "10.42.250.7"
	if sub.Contains(netip.MustParseAddr(foreign)) {
		t.Fatalf("node b's subnet %s holds %s", sub, foreign)
	}
	report := command.TaskStatus{NodeID: "node-b", Statuses: []api.TaskStatus{{TaskID: "task-b", State: api.TaskStarting,
		IP: foreign, IPs: map[string]string{api.DefaultNetwork: "192.168.1.10", "other": own}}}}
	if err := l.apply(t, "node-b", report); err != nil {
		t.Fatalf("report: %v", err)
	}
	tk, err := l.cl.Store.Task("task-b")
	if err != nil {
		t.Fatal(err)
	}
	if tk.State != api.TaskStarting || tk.IP != "" || len(tk.IPs) != 0 {
		t.Fatalf("task after a report with foreign addresses: state %s ip %q ips %v; want starting without addresses", tk.State, tk.IP, tk.IPs)
	}
	// Its own addresses are kept, in a batch too.
	report.Statuses[0] = api.TaskStatus{TaskID: "task-b", State: api.TaskRunning, IP: own, IPs: map[string]string{api.DefaultNetwork: own}}
	if err := l.apply(t, "node-b", command.Batch{Commands: []command.Command{report}}); err != nil {
		t.Fatalf("own report: %v", err)
	}
	if tk, _ = l.cl.Store.Task("task-b"); tk.State != api.TaskRunning || tk.IP != own || tk.IPs[api.DefaultNetwork] != own {
		t.Fatalf("task after its own addresses: state %s ip %q ips %v", tk.State, tk.IP, tk.IPs)
	}
}

// TestWorkerCannotMoveImageTags: image tags name images cluster-wide (a
// service's image resolves through them), so a worker — whose root may not
// change the cluster — records its own images with no tag at all
// (node/writes/imagetags.go), and cannot rewrite the record of an image
// others announced; a manager's node still moves a tag. (node-w runs
// tasks of web:latest and of evil:1, which it pulled: it may hold both.)
func TestWorkerCannotMoveImageTags(t *testing.T) {
	l := startTestLeader(t)
	id := func(c string) string { return "sha256:" + strings.Repeat(c, 64) }
	web := api.Image{ID: id("a"), Tags: []string{"web:latest"}, Layers: []string{"sha256:l1"}, Source: "import", Nodes: []string{"node-b"}}
	if err := l.apply(t, "node-b", command.UpsertImage{Image: web}); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	if _, err := l.cl.Raft.Apply(rpcCtx(t), command.UpsertTasks{Tasks: []api.Task{
		{ID: "task-w1", ServiceID: "svc1", Service: "web", Slot: 2, NodeID: "node-w", DesiredState: api.TaskRunning,
			State: api.TaskAssigned, Spec: api.ServiceSpec{Name: "web", Image: "web:latest"}, CreatedAt: now},
		{ID: "task-w2", ServiceID: "svc1", Service: "web", Slot: 3, NodeID: "node-w", DesiredState: api.TaskRunning,
			State: api.TaskAssigned, Spec: api.ServiceSpec{Name: "web", Image: "evil:1"}, CreatedAt: now},
	}}); err != nil {
		t.Fatal(err)
	}
	evil := api.Image{ID: id("e"), Tags: []string{"web:latest", "evil:1"}, Source: "pull evil:1", Nodes: []string{"node-w"}}
	if err := l.apply(t, "node-w", command.Batch{Commands: []command.Command{command.UpsertImage{Image: evil}}}); err != nil {
		t.Fatalf("worker's own image: %v", err)
	}
	if img, err := l.cl.Store.ResolveImage("web:latest"); err != nil || img.ID != web.ID {
		t.Fatalf("web:latest resolves to %v (%v), want %s", img, err, web.ID)
	}
	if img, err := l.cl.Store.Image(evil.ID); err != nil || len(img.Tags) != 0 {
		t.Fatalf("the worker's image: %+v (%v), want it recorded without tags", img, err)
	}
	rewrite := api.Image{ID: web.ID, Layers: []string{"sha256:other"}, Source: "pull evil", Nodes: []string{"node-w"}}
	if err := l.apply(t, "node-w", command.UpsertImage{Image: rewrite}); err != nil {
		t.Fatalf("worker holding web: %v", err)
	}
	img, err := l.cl.Store.Image(web.ID)
	if err != nil || !slices.Equal(img.Layers, web.Layers) || img.Source != web.Source || !slices.Equal(img.Nodes, []string{"node-b", "node-w"}) {
		t.Fatalf("web after a worker's rewrite: %+v (%v); want its layers and source kept and node-w added as a holder", img, err)
	}
	web2 := api.Image{ID: id("b"), Tags: []string{"web:latest"}, Nodes: []string{"node-b"}}
	if err := l.apply(t, "node-b", command.UpsertImage{Image: web2}); err != nil {
		t.Fatal(err)
	}
	if img, err := l.cl.Store.ResolveImage("web:latest"); err != nil || img.ID != web2.ID {
		t.Fatalf("a manager's tag move: web:latest resolves to %v (%v), want %s", img, err, web2.ID)
	}
}

// TestNodeUpdateLabelRmMissing: `node update --label-rm K` of a key the
// node does not have is refused (400, docker: "key K doesn't exist in
// node's labels") and nothing of the update is applied; before, the typo
// removed nothing and the rest of the update went through silently.
func TestNodeUpdateLabelRmMissing(t *testing.T) {
	l := startTestLeader(t)
	h := l.a.routes()
	if code, body := do(t, h, "POST", "/v1/nodes/node-b/update", `{"label_add":{"zone":"a"}}`); code != http.StatusOK {
		t.Fatalf("label-add: %d %s", code, body)
	}
	code, body := do(t, h, "POST", "/v1/nodes/node-b/update", `{"label_rm":["zome"],"availability":"drain"}`)
	if code != http.StatusBadRequest || !strings.Contains(string(body), `key \"zome\" does not exist`) {
		t.Fatalf("label-rm of a missing key: %d %s; want 400 naming the key", code, body)
	}
	if n, _ := l.cl.Store.Node("node-b"); n.Availability != api.AvailabilityActive || n.Labels["zone"] != "a" {
		t.Fatalf("the refused update changed node b: %s %v", n.Availability, n.Labels)
	}
	// A key added in the same update, and a present one, are removed.
	for _, req := range []string{`{"label_add":{"k":"v"},"label_rm":["k"]}`, `{"label_rm":["zone"]}`} {
		if code, body := do(t, h, "POST", "/v1/nodes/node-b/update", req); code != http.StatusOK {
			t.Fatalf("%s: %d %s", req, code, body)
		}
	}
	if n, _ := l.cl.Store.Node("node-b"); len(n.Labels) != 0 {
		t.Fatalf("labels left: %v", n.Labels)
	}
}
