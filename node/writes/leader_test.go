package writes

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/consensus/raftnode"
	"github.com/shoal-org/shoal/consensus/snapshotfile"
	"github.com/shoal-org/shoal/node/authz"
	"github.com/shoal-org/shoal/node/wire"
)

// testLeader is a Writer on a one-node in-memory Raft that leads a
// bootstrapped cluster: the leader "leader", a manager "m" and a worker
// "w" (role set by an admin, as `node update --role worker` does).
type testLeader struct {
	*Writer
	store *consensus.Store
	raft  *raftnode.Raft
	// rotations counts the join-secret rotations the leader made.
	rotations int
}

func newTestLeader(t *testing.T) *testLeader {
	t.Helper()
	cfg := raftnode.DefaultConfig()
	cfg.NodeID = "leader"
	cfg.HeartbeatTimeout = 50 * time.Millisecond
	cfg.ElectionTimeout = 50 * time.Millisecond
	cfg.LeaderLeaseTimeout = 50 * time.Millisecond
	cfg.HeartbeatInterval = 20 * time.Millisecond
	cfg.CommitTimeout = 5 * time.Millisecond
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
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
	l := &testLeader{store: store, raft: r}
	// A cluster ID of its own: the leader's per-node state is keyed by it.
	clusterID := t.Name()
	l.Writer = New(Config{NodeID: "leader", ClusterID: clusterID, Store: store, Raft: r,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), WriteTimeout: 5 * time.Second,
		RotateToken: func(context.Context) error { l.rotations++; return nil }})
	now := time.Now().UTC()
	l.must(t, command.BootstrapCluster{
		Cluster: consensus.ClusterState{ClusterID: clusterID, CACertPEM: []byte("ca"), CAFingerprint: "fp",
			TokenSecretHash: "h", GossipKeys: [][]byte{bytes.Repeat([]byte{1}, 32)},
			ClusterCIDR: "10.42.0.0/16", VIPCIDR: "10.43.0.0/16", CreatedAt: now},
		Node: api.Node{ID: "leader", Hostname: "leader", Addr: "10.0.0.1", Status: api.NodeReady,
			Availability: api.AvailabilityActive, CertSerial: "L0"},
	})
	for _, id := range []string{"m", "w"} {
		l.must(t, command.UpsertNode{Node: api.Node{ID: id, Hostname: id, Addr: "10.0.0.2", Status: api.NodeReady,
			Availability: api.AvailabilityActive, CertSerial: id + "0", CreatedAt: now}})
	}
	l.must(t, command.UpdateNode{ID: "m", Update: api.NodeUpdate{Role: api.RoleManager}, Now: now})
	l.must(t, command.UpdateNode{ID: "w", Update: api.NodeUpdate{Role: api.RoleWorker}, Now: now})
	return l
}

func (l *testLeader) must(t *testing.T, cmd command.Command) {
	t.Helper()
	if _, err := l.raft.Apply(context.Background(), cmd); err != nil {
		t.Fatalf("apply %T: %v", cmd, err)
	}
}

// encode is cmd as a node sends it (wire.ApplyRequest, wire.AdminWriteRequest).
func encode(t *testing.T, cmd command.Command) []byte {
	t.Helper()
	enc, err := command.Encode(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return enc
}

// TestRemovedNodeIsNobodysAdmin: a certified peer whose node record is
// gone (removed while a second certificate of its was still unrevoked, or
// dropped by a restore) has no role, and the leader refuses it everything
// a member's role would allow: admin actions, node removal, a restore, and
// reports about itself. Before, no record read as "not a worker", and a
// removed worker became an admin.
func TestRemovedNodeIsNobodysAdmin(t *testing.T) {
	l := newTestLeader(t)
	ctx := context.Background()
	l.must(t, command.RemoveNode{ID: "w", Now: time.Now().UTC()})

	c, self := CallerOf(l.store, authz.Admin, "w")
	if c.Member || self != nil {
		t.Fatalf("CallerOf(removed) = %+v, %v; want no member, no record", c, self)
	}
	svc := api.Service{ID: "evil", Name: "evil", Spec: api.ServiceSpec{Name: "evil", Image: "busybox", Replicas: 1}}
	for _, cmd := range []command.Command{
		command.CreateService{Service: svc},
		command.DeleteService{ID: "x"},
		command.UpdateNode{ID: "leader", Update: api.NodeUpdate{Availability: api.AvailabilityDrain}},
		command.DeleteNetwork{ID: "n"},
	} {
		if err := authz.Authorize(c, cmd, nil); !errors.Is(err, authz.ErrForbidden) {
			t.Errorf("Authorize(removed, %s) = %v, want ErrForbidden", authz.TypeName(cmd), err)
		}
		_, err := l.ApplyAdmin(ctx, "w", adminRequest(t, cmd))
		if !errors.Is(err, authz.ErrForbidden) {
			t.Errorf("ApplyAdmin(removed, %s) = %v, want ErrForbidden", authz.TypeName(cmd), err)
		}
	}
	if _, err := l.ApplyAdmin(ctx, "w", adminRequest(t, command.RotateToken{})); !errors.Is(err, authz.ErrForbidden) || l.rotations != 0 {
		t.Errorf("ApplyAdmin(removed, rotate token) = %v (%d rotations), want ErrForbidden", err, l.rotations)
	}
	if _, err := l.store.Service("evil"); err == nil {
		t.Error("the removed node's service was created")
	}
	if n, _ := l.store.Node("leader"); n.Availability != api.AvailabilityActive {
		t.Errorf("the leader was drained by the removed node: %q", n.Availability)
	}
	if err := authz.AdminOpCheck("remove", c); !errors.Is(err, authz.ErrForbidden) {
		t.Errorf("AdminOpCheck(remove) for the removed node = %v, want ErrForbidden", err)
	}
	if err := RestoreAllowed(l.store, "w"); !errors.Is(err, authz.ErrForbidden) {
		t.Errorf("RestoreAllowed(removed) = %v, want ErrForbidden", err)
	}
	report := command.TaskStatus{NodeID: "w", Statuses: []api.TaskStatus{{TaskID: "t1", State: api.TaskRunning}}}
	if _, err := l.ApplyNodeCommand(ctx, "w", encode(t, report)); !errors.Is(err, authz.ErrForbidden) {
		t.Errorf("ApplyNodeCommand(removed) = %v, want ErrForbidden", err)
	}

	// The members keep what their roles allow.
	if err := RestoreAllowed(l.store, "m"); err != nil {
		t.Errorf("RestoreAllowed(manager) = %v", err)
	}
	if err := RestoreAllowed(l.store, "leader"); err != nil {
		t.Errorf("RestoreAllowed(leader's own socket) = %v", err)
	}
	if _, err := l.ApplyAdmin(ctx, "m", adminRequest(t, command.CreateService{Service: svc})); err != nil {
		t.Errorf("ApplyAdmin(manager, create service) = %v", err)
	}
	l.must(t, command.UpsertNode{Node: api.Node{ID: "w2", Hostname: "w2", Addr: "10.0.0.3", Status: api.NodeReady,
		Availability: api.AvailabilityActive}})
	l.must(t, command.UpdateNode{ID: "w2", Update: api.NodeUpdate{Role: api.RoleWorker}, Now: time.Now().UTC()})
	if err := RestoreAllowed(l.store, "w2"); !errors.Is(err, authz.ErrWorker) {
		t.Errorf("RestoreAllowed(worker) = %v, want ErrWorker", err)
	}
	if _, err := l.ApplyNodeCommand(ctx, "w2", encode(t, command.TaskStatus{NodeID: "w2"})); err != nil {
		t.Errorf("ApplyNodeCommand(worker, own report) = %v", err)
	}
}

func adminRequest(t *testing.T, cmd command.Command) wire.AdminWriteRequest {
	t.Helper()
	return wire.AdminWriteRequest{Action: authz.AdminAction(cmd), Command: encode(t, cmd)}
}

// TestNodeStatusTextBounded: a node's report with a message and an error
// of 700 KB each (it fits the 1 MiB request line) reaches the state at
// MaxStatusText, through a node's forwarded write and the leader's own.
func TestNodeStatusTextBounded(t *testing.T) {
	l := newTestLeader(t)
	ctx := context.Background()
	now := time.Now().UTC()
	l.must(t, command.CreateService{Service: api.Service{ID: "s1", Name: "web", Spec: api.ServiceSpec{Name: "web", Image: "busybox", Replicas: 2}}})
	l.must(t, command.UpsertTasks{Tasks: []api.Task{
		{ID: "t1", ServiceID: "s1", Slot: 1, NodeID: "w", DesiredState: api.TaskRunning, State: api.TaskAssigned, CreatedAt: now},
		{ID: "t2", ServiceID: "s1", Slot: 2, NodeID: "leader", DesiredState: api.TaskRunning, State: api.TaskAssigned, CreatedAt: now},
	}})
	big := strings.Repeat("x", 700<<10)
	report := func(node, task string) command.Command {
		return &command.TaskStatus{NodeID: node, Statuses: []api.TaskStatus{{TaskID: task, State: api.TaskFailed,
			Message: big, Error: big, Timestamp: now}}}
	}
	if _, err := l.ApplyNodeCommand(ctx, "w", encode(t, report("w", "t1"))); err != nil {
		t.Fatal(err)
	}
	if _, err := l.ApplyLocal(ctx, encode(t, report("leader", "t2"))); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"t1", "t2"} {
		tk, err := l.store.Task(id)
		if err != nil {
			t.Fatal(err)
		}
		if tk.State != api.TaskFailed {
			t.Fatalf("task %s: state %s, want the report applied", id, tk.State)
		}
		if len(tk.Message) > MaxStatusText || len(tk.Error) > MaxStatusText {
			t.Errorf("task %s: message %d bytes, error %d bytes stored, want at most %d", id, len(tk.Message), len(tk.Error), MaxStatusText)
		}
	}
}

// TestNodeWritesThrottled: the leader refuses a node's writes beyond its
// rate with an error the writer retries (it crosses the cluster port with
// its code), applies nothing of them, and holds up no other node. Before,
// nothing bounded how fast a node wrote.
func TestNodeWritesThrottled(t *testing.T) {
	l := newTestLeader(t)
	ctx := context.Background()
	// Reports as large as a request line carries (the text is cut before
	// it is proposed; what the node sent is what it pays for).
	big := command.TaskStatus{NodeID: "w", Statuses: []api.TaskStatus{{TaskID: "none", State: api.TaskRunning,
		Message: strings.Repeat("x", 700<<10)}}}
	enc := encode(t, big)
	most := int(NodeWriteBurst/WriteCost(len(enc))) + 1 // the refill while it runs is far below one write
	var refused error
	for i := 0; i <= most && refused == nil; i++ {
		_, refused = l.ApplyNodeCommand(ctx, "w", enc)
	}
	if refused == nil {
		t.Fatalf("%d writes of %d bytes from one node all applied", most+1, len(enc))
	}
	if !Throttled(refused) {
		t.Fatalf("refusal %v is not the rate's", refused)
	}
	// As the peer that forwarded the write reads it.
	forwarded := &wire.Error{Code: wire.ErrorCode(refused), Msg: refused.Error()}
	if !Retryable(forwarded) || !Throttled(forwarded) {
		t.Errorf("forwarded refusal %+v: the writer would not retry it", forwarded)
	}
	if !strings.Contains(refused.Error(), "retry in") {
		t.Errorf("refusal %q does not say when to retry", refused)
	}
	if _, err := l.ApplyNodeCommand(ctx, "m", encode(t, command.TaskStatus{NodeID: "m"})); err != nil {
		t.Errorf("another node held up: %v", err)
	}
}

// TestNodeReportsThroughTheLeader: a node's report about itself goes
// through the leader as UpdateOwnNode (only the fields it owns, onto the
// record as it is then), and a report that publishes another node's
// WireGuard key is refused.
func TestNodeReportsThroughTheLeader(t *testing.T) {
	l := newTestLeader(t)
	ctx := context.Background()
	m, err := l.store.Node("m")
	if err != nil {
		t.Fatal(err)
	}
	rep := *m
	rep.WireGuardKey = "bUtleQ=="
	if _, err := l.ApplyNodeCommand(ctx, "m", encode(t, command.UpsertNode{Node: rep})); err != nil {
		t.Fatalf("own report: %v", err)
	}
	if got, _ := l.store.Node("m"); got.WireGuardKey != "bUtleQ==" || got.Role != api.RoleManager {
		t.Fatalf("after the report: %+v", got)
	}
	w, _ := l.store.Node("w")
	steal := *w
	steal.WireGuardKey = "bUtleQ=="
	if _, err := l.ApplyNodeCommand(ctx, "w", encode(t, command.UpsertNode{Node: steal})); !errors.Is(err, authz.ErrForbidden) {
		t.Fatalf("report with m's key: %v, want ErrForbidden", err)
	}
	steal.WireGuardKey, steal.WireGuardNextKey = "d0tleQ==", "bUtleQ=="
	if _, err := l.ApplyNodeCommand(ctx, "w", encode(t, command.UpdateOwnNode{Node: steal})); !errors.Is(err, authz.ErrForbidden) {
		t.Fatalf("report with m's key as next: %v, want ErrForbidden", err)
	}
	if got, _ := l.store.Node("w"); got.WireGuardKey != "" {
		t.Fatalf("w's record took a key: %+v", got)
	}
}

// TestRestoreRefusesSpecsTheLeaderRefuses: a snapshot file whose service
// specs the leader would not create (here 10^9 replicas, a published
// cluster port, a rollback spec without an image) is refused naming each
// service, and nothing changes. Before, a restore installed them as
// they were: the scheduler made a task record per replica.
func TestRestoreRefusesSpecsTheLeaderRefuses(t *testing.T) {
	l := newTestLeader(t)
	ctx := context.Background()
	spec := func(name string) api.ServiceSpec { return api.ServiceSpec{Name: name, Image: "busybox", Replicas: 1} }
	huge := spec("huge")
	huge.Replicas = 1_000_000_000
	port := spec("port")
	port.Ports = []api.PortConfig{{Published: 7946, Target: 80, Protocol: "udp"}}
	back := api.Service{ID: "s3", Name: "back", Spec: spec("back"), PreviousSpec: &api.ServiceSpec{Name: "back"}}
	for _, s := range []api.Service{{ID: "s1", Name: "huge", Spec: huge}, {ID: "s2", Name: "port", Spec: port}, back} {
		l.must(t, command.CreateService{Service: s})
	}
	var file bytes.Buffer
	if _, err := snapshotfile.Write(l.store.Snapshot(), &file, time.Now()); err != nil {
		t.Fatal(err)
	}
	f, err := snapshotfile.Read(bytes.NewReader(file.Bytes()), int64(file.Len()))
	if err != nil {
		t.Fatal(err)
	}
	l.must(t, command.DeleteService{ID: "s1"})
	before := l.store.Index()
	_, err = l.RestoreAsLeader(ctx, f, false, "leader")
	if !errors.Is(err, consensus.ErrInvalid) {
		t.Fatalf("restore: %v, want ErrInvalid", err)
	}
	for _, want := range []string{`service "huge" (ID "s1"): spec:`, "replicas 1000000000", `service "port" (ID "s2")`, "7946",
		`service "back" (ID "s3"): previous spec:`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if l.store.Index() != before {
		t.Errorf("a refused restore moved the store from %d to %d", before, l.store.Index())
	}
	if _, err := l.store.Service("s1"); err == nil {
		t.Error("the deleted service is back")
	}
}

// TestRestoreRefusesSpecsAnOlderMemberCannotApply: a snapshot file whose
// services use fields of a protocol level some member lacks (here a dnsrr
// service, an alias and log options, level 4, with a member at level 3)
// is refused as the write of such a spec is (command.ErrUnsupported,
// naming the service), and nothing changes. Before, a restore installed
// them without a command, so the leader's gate never saw them: the older
// replica loaded the specs without those fields, and its DNS and, should
// it lead, its scheduling and VIPs differed from the others'.
func TestRestoreRefusesSpecsAnOlderMemberCannotApply(t *testing.T) {
	l := newTestLeader(t)
	ctx := context.Background()
	rr := api.ServiceSpec{Name: "rr", Image: "busybox", Replicas: 1, EndpointMode: api.EndpointDNSRR}
	logs := api.ServiceSpec{Name: "logs", Image: "busybox", Replicas: 1, LogDriver: api.LogDriverNone}
	plain := api.ServiceSpec{Name: "plain", Image: "busybox", Replicas: 1}
	for _, s := range []api.Service{{ID: "s1", Name: "rr", Spec: rr}, {ID: "s2", Name: "logs", Spec: logs}, {ID: "s3", Name: "plain", Spec: plain}} {
		l.must(t, command.CreateService{Service: s})
	}
	var file bytes.Buffer
	if _, err := snapshotfile.Write(l.store.Snapshot(), &file, time.Now()); err != nil {
		t.Fatal(err)
	}
	f, err := snapshotfile.Read(bytes.NewReader(file.Bytes()), int64(file.Len()))
	if err != nil {
		t.Fatal(err)
	}
	l.must(t, command.DeleteService{ID: "s3"})
	// A member at level 3 joins (the gate node installs over gossip's levels).
	l.raft.SetCommandGate(func(cmd command.Command) error {
		return command.CheckLevel(cmd.Type(), command.SinceLevel(cmd), []command.PeerLevel{{ID: "m", Level: 3, Version: "v3", Known: true}})
	})
	before := l.store.Index()
	_, err = l.RestoreAsLeader(ctx, f, false, "leader")
	if !errors.Is(err, command.ErrUnsupported) {
		t.Fatalf("restore: %v, want ErrUnsupported", err)
	}
	for _, want := range []string{`service "rr"`, `service "logs"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if strings.Contains(err.Error(), `"plain"`) {
		t.Errorf("error %q names a service every member can apply", err)
	}
	if l.store.Index() != before {
		t.Errorf("a refused restore moved the store from %d to %d", before, l.store.Index())
	}
	// Once every member is upgraded, the same file restores.
	l.raft.SetCommandGate(nil)
	if _, err := l.RestoreAsLeader(ctx, f, false, "leader"); err != nil {
		t.Fatalf("restore with every member upgraded: %v", err)
	}
	if _, err := l.store.Service("s3"); err != nil {
		t.Errorf("the restored file's service s3: %v", err)
	}
}
