package revocation

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/membership"
)

func key(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func keysEqual(x, y [][]byte) bool {
	return slices.EqualFunc(x, y, func(a, b []byte) bool { return bytes.Equal(a, b) })
}

func TestNextKeyStep(t *testing.T) {
	old, nw, fresh, other := key('o'), key('n'), key('f'), key('x')
	tests := []struct {
		name string
		in   KeyRotation
		want KeyStep
	}{
		{name: "no encryption", in: KeyRotation{Acked: true, Fresh: fresh}},
		{name: "steady", in: KeyRotation{Keys: [][]byte{old}, Acked: true, Fresh: fresh}},
		{name: "installed, waiting for every node", in: KeyRotation{Keys: [][]byte{old, nw}, Target: nw},
			want: KeyStep{Target: nw}},
		{name: "installed everywhere: use it", in: KeyRotation{Keys: [][]byte{old, nw}, Target: nw, Acked: true},
			want: KeyStep{Propose: [][]byte{nw, old}, Target: nw}},
		{name: "primary, waiting", in: KeyRotation{Keys: [][]byte{nw, old}, Target: nw},
			want: KeyStep{Target: nw}},
		{name: "primary everywhere: remove the old", in: KeyRotation{Keys: [][]byte{nw, old}, Target: nw, Acked: true},
			want: KeyStep{Propose: [][]byte{nw}, Target: nw}},
		{name: "done", in: KeyRotation{Keys: [][]byte{nw}, Target: nw, Acked: true}},
		{name: "done, not yet applied everywhere", in: KeyRotation{Keys: [][]byte{nw}, Target: nw},
			want: KeyStep{Target: nw}},
		// A new leader cannot tell [old,new] from [new,old]: start over.
		{name: "rotation of another leader", in: KeyRotation{Keys: [][]byte{nw, old}, Acked: true, Fresh: fresh},
			want: KeyStep{Propose: [][]byte{nw, old, fresh}, Target: fresh}},
		{name: "rotation of another leader, no fresh key", in: KeyRotation{Keys: [][]byte{nw, old}, Acked: true}},
		{name: "rotation of another leader, waiting", in: KeyRotation{Keys: [][]byte{nw, old}, Fresh: fresh}},
		{name: "target gone from the store", in: KeyRotation{Keys: [][]byte{other}, Target: nw, Acked: true, Fresh: fresh}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := NextKeyStep(tt.in)
			if !keysEqual(got.Propose, tt.want.Propose) || !bytes.Equal(got.Target, tt.want.Target) {
				t.Fatalf("NextKeyStep = propose %q target %q; want propose %q target %q",
					got.Propose, got.Target, tt.want.Propose, tt.want.Target)
			}
		})
	}
}

// TestKeyRotationWalk runs a whole rotation through NextKeyStep and
// keyringPlan with two nodes that apply each committed keyring one after
// the other, and checks that at every moment each node can read what the
// other sends (the sender's primary is installed at the receiver), and that
// the old key is gone at the end.
func TestKeyRotationWalk(t *testing.T) {
	old, nw := key('o'), key('n')
	store := [][]byte{old, nw} // committed with the removal (applyRemoval)
	target := nw
	nodes := [][][]byte{{old}, {old}}
	apply := func(i int) {
		add, primary, remove := membership.KeyringPlan(nodes[i], store)
		ring := append(slices.Clone(nodes[i]), add...)
		// use primary: move it to the front
		ring = slices.DeleteFunc(ring, func(k []byte) bool { return bytes.Equal(k, primary) })
		ring = append([][]byte{primary}, ring...)
		ring = slices.DeleteFunc(ring, func(k []byte) bool { return ContainsKey(remove, k) })
		nodes[i] = ring
		for j := range nodes {
			for k := range nodes {
				if !ContainsKey(nodes[k], nodes[j][0]) {
					t.Fatalf("node %d cannot read node %d (primary %q, keys %q)", k, j, nodes[j][0], nodes[k])
				}
			}
		}
	}
	for steps := 0; ; steps++ {
		if steps > 10 {
			t.Fatal("rotation does not end")
		}
		apply(0)
		apply(1)
		acked := membership.Fingerprint(nodes[0]) == membership.Fingerprint(store) && membership.Fingerprint(nodes[1]) == membership.Fingerprint(store)
		step := NextKeyStep(KeyRotation{Keys: store, Target: target, Acked: acked})
		if step.Propose == nil {
			break
		}
		store, target = step.Propose, step.Target
	}
	for i, ring := range nodes {
		if !keysEqual(ring, [][]byte{nw}) {
			t.Fatalf("node %d ends with keyring %q, want only the new key", i, ring)
		}
	}
}

func TestKeysAcked(t *testing.T) {
	nodes := []*api.Node{{ID: "self"}, {ID: "b"}, {ID: "c"}}
	tests := []struct {
		name   string
		alive  map[string]membership.Meta
		selfFP string
		want   bool
	}{
		{name: "all applied", alive: map[string]membership.Meta{"b": {GK: "k"}, "c": {GK: "k"}}, selfFP: "k", want: true},
		{name: "one behind", alive: map[string]membership.Meta{"b": {GK: "k"}, "c": {GK: "j"}}, selfFP: "k"},
		{name: "self behind", alive: map[string]membership.Meta{"b": {GK: "k"}, "c": {GK: "k"}}, selfFP: "j"},
		{name: "down node does not hold it up", alive: map[string]membership.Meta{"b": {GK: "k"}}, selfFP: "k", want: true},
		{name: "removed member does not count", alive: map[string]membership.Meta{"b": {GK: "k"}, "c": {GK: "k"}, "gone": {GK: "j"}},
			selfFP: "k", want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := KeysAcked("k", nodes, tt.alive, "self", tt.selfFP); got != tt.want {
				t.Fatalf("KeysAcked = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCutOff(t *testing.T) {
	revoked := func(s string) bool { return s == "old" }
	tests := []struct {
		name, serial string
		member, want bool
	}{
		{name: "removed node", serial: "old", want: true},
		{name: "renewed node keeps its connections", serial: "old", member: true},
		{name: "valid serial", serial: "cur", member: true},
		{name: "valid serial, no record yet (joining)", serial: "cur"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CutOff(tt.serial, "n", revoked, func(string) bool { return tt.member }); got != tt.want {
				t.Fatalf("CutOff = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestRevocationMark: Loop sees every revocation, also one that came with
// a trim of as many serials (the list as long as before).
func TestRevocationMark(t *testing.T) {
	rec := func(revoked ...string) *consensus.ClusterState { return &consensus.ClusterState{Revoked: revoked} }
	for _, tc := range []struct {
		name      string
		from, to  *consensus.ClusterState
		wantClose bool
	}{
		{"unchanged", rec("a", "b"), rec("a", "b"), false},
		{"first revocation", rec(), rec("a"), true},
		{"a revocation", rec("a"), rec("a", "b"), true},
		{"a trim", rec("a", "b"), rec("b"), true},
		{"a trim and a revocation", rec("a", "b"), rec("b", "c"), true},
		{"everything trimmed", rec("a"), rec(), true},
	} {
		if got := markOf(tc.from) != markOf(tc.to); got != tc.wantClose {
			t.Errorf("%s: changed %v, want %v", tc.name, got, tc.wantClose)
		}
	}
}

func TestReplicaKeyring(t *testing.T) {
	k := [][]byte{key('k')}
	tests := []struct {
		name         string
		index, floor uint64
		keys         [][]byte
		want         [][]byte
	}{
		{name: "no floor (init, older joins)", index: 1, keys: k, want: k},
		{name: "replica behind the floor", index: 9, floor: 10, keys: k},
		{name: "replica at the floor", index: 10, floor: 10, keys: k, want: k},
		{name: "replica past the floor", index: 11, floor: 10, keys: k, want: k},
		{name: "no keyring (gossip not encrypted)", index: 11, floor: 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ReplicaKeyring(tt.index, tt.floor, tt.keys); !keysEqual(got, tt.want) {
				t.Fatalf("ReplicaKeyring(%d, %d) = %q, want %q", tt.index, tt.floor, got, tt.want)
			}
		})
	}
}

// revokeLoop re-checks every second only while it can matter: just after
// the revocation list changed and while a key rotation is in flight.
func TestRevokePeriod(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name     string
		changed  time.Time
		rotating bool
		want     time.Duration
	}{
		{"idle, never changed", time.Time{}, false, IdleResync},
		{"idle, changed long ago", now.Add(-time.Minute), false, IdleResync},
		{"just revoked", now.Add(-time.Second), false, Resync},
		{"rotating", now.Add(-time.Hour), true, Resync},
	} {
		if got := Period(now, c.changed, c.rotating); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}

// fsmApplier applies commands to an FSM as a leader's Raft does (through
// the log's encoding).
type fsmApplier struct {
	t   *testing.T
	fsm *fsm.FSM
	idx uint64
	log []command.Command
}

func (f *fsmApplier) Apply(_ context.Context, cmd command.Command) (any, error) {
	data, err := command.Encode(cmd)
	if err != nil {
		f.t.Fatal(err)
	}
	dec, err := command.Decode(data)
	if err != nil {
		f.t.Fatal(err)
	}
	f.idx++
	f.log = append(f.log, dec)
	res := f.fsm.ApplyCommand(f.idx, dec)
	return res.Value, res.Err
}

// fakeGossip reports every node's keyring fingerprint.
type fakeGossip struct{ fps map[string]string }

func (g fakeGossip) AliveSet() map[string]membership.Meta {
	out := map[string]membership.Meta{}
	for id, fp := range g.fps {
		out[id] = membership.Meta{NodeID: id, GK: fp}
	}
	return out
}

func (g fakeGossip) KeyringFP() string { return g.fps["n1"] }

// TestRotatorRemoval: the leader commits a removal with the first key
// step in one entry, then takes each next step only once every live node
// gossips the fingerprint of the keyring in the store, and ends with the
// new key alone.
func TestRotatorRemoval(t *testing.T) {
	old := key('o')
	store := consensus.NewStore()
	ap := &fsmApplier{t: t, fsm: fsm.New(store)}
	if _, err := ap.Apply(context.Background(), &command.BootstrapCluster{
		Cluster: consensus.ClusterState{ClusterID: "c1", GossipKeys: [][]byte{old}, ClusterCIDR: "10.42.0.0/16", VIPCIDR: "10.43.0.0/16", TokenSecretHash: "x"},
		Node:    api.Node{ID: "n1", Hostname: "n1", Addr: "127.0.0.1", Status: api.NodeReady},
	}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"n2", "gone"} {
		if _, err := ap.Apply(context.Background(), &command.UpsertNode{Node: api.Node{ID: id, Hostname: id, Addr: "127.0.0.1", Status: api.NodeReady, CertSerial: id + "-s"}}); err != nil {
			t.Fatal(err)
		}
	}
	g := fakeGossip{fps: map[string]string{}}
	var target atomic.Pointer[[]byte]
	r := &Rotator{Self: "n1", Store: store, Raft: ap, Gossip: g, Target: &target, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx := context.Background()

	if err := r.Remove(ctx, &command.RemoveNode{ID: "gone", Now: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if len(ap.log) != 4 {
		t.Fatalf("the removal took %d entries, want 1", len(ap.log)-3)
	}
	if _, err := store.Node("gone"); err == nil || !store.IsRevoked("gone-s") {
		t.Fatal("the node was not removed and revoked")
	}
	keys := store.Cluster().GossipKeys
	if len(keys) != 2 || !bytes.Equal(keys[0], old) || target.Load() == nil || !bytes.Equal(keys[1], *target.Load()) {
		t.Fatalf("after the removal: keys %q, target %v; want [old, new] with new the target", keys, target.Load())
	}
	fresh := *target.Load()

	ack := func() {
		fp := membership.Fingerprint(store.Cluster().GossipKeys)
		g.fps["n1"], g.fps["n2"] = fp, fp
	}
	steps := []struct {
		name string
		want [][]byte
	}{{"use the new key", [][]byte{fresh, old}}, {"drop the old key", [][]byte{fresh}}}
	for _, st := range steps {
		n := len(ap.log)
		r.Step(ctx) // n2 has not applied the keyring in the store yet
		if len(ap.log) != n {
			t.Fatalf("%s: a step was taken before every live node applied the last one", st.name)
		}
		ack()
		r.Step(ctx)
		if got := store.Cluster().GossipKeys; !keysEqual(got, st.want) {
			t.Fatalf("%s: keys %q, want %q", st.name, got, st.want)
		}
	}
	ack()
	n := len(ap.log)
	r.Step(ctx)
	if len(ap.log) != n {
		t.Fatal("a step was taken after the rotation ended")
	}

	// A refused removal is an error.
	if err := r.Remove(ctx, &command.RemoveNode{ID: "never", Now: time.Now()}); err == nil {
		t.Fatal("removing an unknown node succeeded")
	}
}
