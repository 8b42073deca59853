package node

import (
	"crypto/x509"
	"errors"
	"net"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/wire"
)

func TestRemovalVerdict(t *testing.T) {
	tests := []struct {
		name           string
		revoked, known bool
		want           bool
	}{
		{"removed: serial revoked, record gone", true, false, true},
		{"member: serial valid, record present", false, true, false},
		{"joining, record not replicated yet: serial valid", false, false, false},
		{"re-joined or re-issued: serial revoked but a record exists", true, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := removalVerdict(tt.revoked, tt.known); got != tt.want {
				t.Fatalf("removalVerdict(revoked=%v, known=%v) = %v, want %v", tt.revoked, tt.known, got, tt.want)
			}
		})
	}
}

func TestIsRemovalStatement(t *testing.T) {
	const self = "self"
	good := witness{ID: "peer", Serial: "a1", Record: &api.Node{ID: "peer", CertSerial: "a1"}}
	removed := &wire.RemovalResponse{Removed: true}
	with := func(f func(*witness)) witness {
		w := good
		f(&w)
		return w
	}
	tests := []struct {
		name    string
		w       witness
		answer  *wire.RemovalResponse
		callErr error
		want    bool
	}{
		{"positive answer from a known member", good, removed, nil, true},
		{"record without serial (older state)", with(func(w *witness) { w.Record = &api.Node{ID: "peer"} }), removed, nil, true},
		// A partitioned node hears nothing, or hears "not removed": never a reset.
		{"no answer (partition)", good, nil, errors.New("connect: no route to host"), false},
		{"refusal", good, nil, &wire.Error{Code: wire.CodeRefused, Msg: "this node is not part of a cluster"}, false},
		{"not removed", good, &wire.RemovalResponse{Removed: false}, nil, false},
		{"answer and an error", good, removed, errors.New("read: EOF"), false},
		{"nil answer", good, nil, nil, false},
		// Whoever says so must be a member by the asker's own replica.
		{"from itself", with(func(w *witness) { w.ID = self; w.Record = &api.Node{ID: self, CertSerial: "a1"} }), removed, nil, false},
		{"from a node unknown to the replica and to raft", with(func(w *witness) { w.Record = nil }), removed, nil, false},
		// A restarted removed node's replica is empty: its raft configuration vouches.
		{"empty replica, witness in the raft configuration", with(func(w *witness) { w.Record = nil; w.InRaft = true }), removed, nil, true},
		{"empty replica, raft member, revoked", with(func(w *witness) { w.Record = nil; w.InRaft = true; w.Revoked = true }), removed, nil, false},
		{"replica record wins over raft", with(func(w *witness) { w.Serial = "ff"; w.InRaft = true }), removed, nil, false},
		{"from a revoked certificate", with(func(w *witness) { w.Revoked = true }), removed, nil, false},
		{"from another certificate than the replica's", with(func(w *witness) { w.Serial = "ff" }), removed, nil, false},
		{"from a certificate without a name", with(func(w *witness) { w.ID = "" }), removed, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := isRemovalStatement(self, tt.w, tt.answer, tt.callErr); got != tt.want {
				t.Fatalf("isRemovalStatement = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRemovalSuspects(t *testing.T) {
	alive := map[string]memberMeta{"self": {}, "a": {}, "gone": {}, "new": {}}
	known := map[string]bool{"self": true, "a": true}
	got := removalSuspects("self", alive, func(id string) bool { return known[id] })
	if want := []string{"gone", "new"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("suspects %v, want %v", got, want)
	}
	if got := removalSuspects("self", map[string]memberMeta{"self": {}}, func(string) bool { return false }); len(got) != 0 {
		t.Fatalf("a node never suspects itself: %v", got)
	}
}

func TestShouldAskRemoval(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	var never time.Time
	tests := []struct {
		name                          string
		now, lastAsk, leaderlessSince time.Time
		hinted                        bool
		want                          bool
	}{
		{"hint, never asked", at(0), never, never, true, true},
		{"hint right after a question", at(500 * time.Millisecond), at(0), never, true, false},
		{"hint a gap after a question", at(removalCheckGap), at(0), never, true, true},
		{"leader known, no hint", at(time.Hour), never, never, false, false},
		{"leaderless briefly (election)", at(removalLeaderless - time.Second), never, at(0), false, false},
		{"leaderless long", at(removalLeaderless), never, at(0), false, true},
		{"leaderless long, asked recently", at(removalLeaderless + 2*time.Second), at(removalLeaderless), at(0), false, false},
		{"leaderless long, asked long ago", at(2 * removalLeaderless), at(removalLeaderless), at(0), false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := shouldAskRemoval(tt.now, tt.lastAsk, tt.leaderlessSince, tt.hinted); got != tt.want {
				t.Fatalf("shouldAskRemoval = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRemovalHintFraming(t *testing.T) {
	h := removalHint{From: "n1", Addr: "10.0.0.1:2377"}
	got, ok := parseRemovalHint(encodeRemovalHint(h))
	if !ok || got != h {
		t.Fatalf("round trip: %+v, %v", got, ok)
	}
	for name, msg := range map[string][]byte{
		"empty":          nil,
		"other type":     append([]byte{'X'}, encodeRemovalHint(h)[1:]...),
		"not json":       []byte("R{"),
		"no port":        encodeRemovalHint(removalHint{From: "n1", Addr: "10.0.0.1"}),
		"type byte only": {removalHintType},
	} {
		if _, ok := parseRemovalHint(msg); ok {
			t.Errorf("%s: parsed %q", name, msg)
		}
	}
}

func TestRemovalAskList(t *testing.T) {
	got := removalAskList([]string{"h:1", "self:1"}, []string{"a:1", "h:1", "b:1", "c:1", "d:1", "e:1"}, "self:1", 4)
	if want := []string{"h:1", "a:1", "b:1", "c:1"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ask list %v, want %v", got, want)
	}
}

// replica is a state store built through the FSM, as Raft would build it.
type replica struct {
	t     *testing.T
	fsm   *consensus.FSM
	store *consensus.Store
	idx   uint64
}

func newReplica(t *testing.T) *replica {
	s := consensus.NewStore()
	r := &replica{t: t, fsm: consensus.NewFSM(s), store: s}
	r.apply(consensus.BootstrapCluster{
		Cluster: consensus.ClusterState{ClusterID: "c1", GossipKeys: [][]byte{make([]byte, 32)},
			ClusterCIDR: "10.42.0.0/16", VIPCIDR: "10.43.0.0/16", TokenSecretHash: "x"},
		Node: api.Node{ID: "boot", Hostname: "boot", Addr: "127.0.0.1", Status: api.NodeReady, CertSerial: "b0"},
	})
	return r
}

func (r *replica) apply(cmd consensus.Command) {
	r.t.Helper()
	r.idx++
	if res := r.fsm.ApplyCommand(r.idx, cmd); res.Err != nil {
		r.t.Fatalf("apply %T: %v", cmd, res.Err)
	}
}

func (r *replica) node(id, serial string) {
	r.t.Helper()
	r.apply(consensus.UpsertNode{Node: api.Node{ID: id, Hostname: id, Addr: "127.0.0.1", ClusterPort: 1,
		Status: api.NodeReady, CertSerial: serial}})
}

// TestRemovalRPC: a caller without a certificate may ask the removal
// question and nothing else; the answer is positive only for a removed
// node's own serial.
func TestRemovalRPC(t *testing.T) {
	s := startRPCServer(t)
	r := newReplica(t)
	r.node("gone", "g1")
	r.node("member", "m1")
	r.apply(consensus.RemoveNode{ID: "gone", Now: time.Now()})
	anon := pki.AnonymousClientTLS(s.pki.ca.Pool(), nil)

	ask := func(id, serial string) (bool, error) {
		var resp wire.RemovalResponse
		err := callRPC(rpcCtx(t), s.addr, anon, wire.MethodRemoval, wire.RemovalRequest{NodeID: id, Serial: serial}, &resp, nil)
		return resp.Removed, err
	}
	if _, err := ask("gone", "g1"); err == nil || !strings.Contains(err.Error(), "not part of a cluster") {
		t.Fatalf("a node in no cluster answered: %v", err)
	}
	s.a.cl = &cluster{store: r.store}
	for _, tt := range []struct {
		id, serial string
		want       bool
	}{
		{"gone", "g1", true},
		{"gone", "other", false},
		{"member", "m1", false},
		{"never-seen", "n1", false},
	} {
		got, err := ask(tt.id, tt.serial)
		if err != nil || got != tt.want {
			t.Errorf("removed(%s, %s) = %v, %v; want %v", tt.id, tt.serial, got, err, tt.want)
		}
	}
	if _, err := ask("", ""); err == nil || !strings.Contains(err.Error(), "needs a node ID") {
		t.Errorf("empty question: %v", err)
	}
	// The anonymous path opens nothing else.
	for _, method := range []string{wire.MethodApply, wire.MethodAdmin, wire.MethodBlob, wire.MethodLogs} {
		err := callRPC(rpcCtx(t), s.addr, anon, method, map[string]string{}, nil, nil)
		if err == nil || !strings.Contains(err.Error(), "certificate is required") {
			t.Errorf("%s without a certificate: %v", method, err)
		}
	}
}

// TestAskRemoved: the asking side trusts a positive answer only from a
// witness its own replica knows by that certificate.
func TestAskRemoved(t *testing.T) {
	s := startRPCServer(t)
	srvReplica := newReplica(t)
	asker := newTestAgent(t)
	// The asker's own certificate, on disk as startCluster would find it.
	certPEM, keyPEM, serial, err := s.pki.ca.IssueNodeCert(asker.id.NodeID, []net.IP{net.ParseIP("127.0.0.1")}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(clusterDir(asker.cfg.DataDir), "pki")
	if err := pki.WriteKeyPair(dir, certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteCACert(dir, s.pki.ca.CertPEM()); err != nil {
		t.Fatal(err)
	}
	srvReplica.node(asker.id.NodeID, serial)
	s.a.cl = &cluster{store: srvReplica.store}

	askerReplica := newReplica(t)
	askerReplica.node(asker.id.NodeID, serial)
	asker.cl = &cluster{store: askerReplica.store}

	ask := func() bool {
		ctx := rpcCtx(t)
		_, removed := asker.askRemoved(ctx, asker.cl, []string{s.addr})
		return removed
	}
	if ask() {
		t.Fatal("removed while the server knows the node")
	}
	srvReplica.apply(consensus.RemoveNode{ID: asker.id.NodeID, Now: time.Now()})
	if ask() {
		t.Fatal("a positive answer from a server the asker's replica does not know counted")
	}
	// The server's certificate is the one startRPCServer presents.
	askerReplica.node(s.a.id.NodeID, serialOf(t, s))
	if !ask() {
		t.Fatal("a positive answer from a known member did not count")
	}
	askerReplica.node(s.a.id.NodeID, "not-its-serial")
	if ask() {
		t.Fatal("a positive answer from another certificate than the replica's counted")
	}
}

// serialOf returns the serial of the certificate the server presents.
func serialOf(t *testing.T, s *rpcServer) string {
	t.Helper()
	var serial string
	cfg := pki.AnonymousClientTLS(s.pki.ca.Pool(), func(leaf *x509.Certificate) error {
		serial = pki.Serial(leaf)
		return nil
	})
	if err := callRPC(rpcCtx(t), s.addr, cfg, wire.MethodPing, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	return serial
}

// An idle node with a leader and nobody to hint wakes for the removal loop
// every removalIdleTick, not every second (issue 10); a leaderless stretch
// or pending hints keep the one-second period the hint and ask timings need.
func TestRemovalTick(t *testing.T) {
	for _, c := range []struct {
		leaderKnown bool
		pending     int
		want        time.Duration
	}{
		{true, 0, removalIdleTick},
		{false, 0, time.Second},
		{true, 1, time.Second},
		{false, 2, time.Second},
	} {
		if got := removalTick(c.leaderKnown, c.pending); got != c.want {
			t.Errorf("removalTick(%v, %d) = %s, want %s", c.leaderKnown, c.pending, got, c.want)
		}
	}
	if removalIdleTick >= removalLeaderless {
		t.Errorf("removalIdleTick %s must stay well under removalLeaderless %s", removalIdleTick, removalLeaderless)
	}
}
