package node

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/membership"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/wire"
)

func key(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func keysEqual(x, y [][]byte) bool {
	return slices.EqualFunc(x, y, func(a, b []byte) bool { return bytes.Equal(a, b) })
}

func TestNextKeyStep(t *testing.T) {
	old, nw, fresh, other := key('o'), key('n'), key('f'), key('x')
	tests := []struct {
		name string
		in   keyRotation
		want keyStep
	}{
		{name: "no encryption", in: keyRotation{Acked: true, Fresh: fresh}},
		{name: "steady", in: keyRotation{Keys: [][]byte{old}, Acked: true, Fresh: fresh}},
		{name: "installed, waiting for every node", in: keyRotation{Keys: [][]byte{old, nw}, Target: nw},
			want: keyStep{Target: nw}},
		{name: "installed everywhere: use it", in: keyRotation{Keys: [][]byte{old, nw}, Target: nw, Acked: true},
			want: keyStep{Propose: [][]byte{nw, old}, Target: nw}},
		{name: "primary, waiting", in: keyRotation{Keys: [][]byte{nw, old}, Target: nw},
			want: keyStep{Target: nw}},
		{name: "primary everywhere: remove the old", in: keyRotation{Keys: [][]byte{nw, old}, Target: nw, Acked: true},
			want: keyStep{Propose: [][]byte{nw}, Target: nw}},
		{name: "done", in: keyRotation{Keys: [][]byte{nw}, Target: nw, Acked: true}},
		{name: "done, not yet applied everywhere", in: keyRotation{Keys: [][]byte{nw}, Target: nw},
			want: keyStep{Target: nw}},
		// A new leader cannot tell [old,new] from [new,old]: start over.
		{name: "rotation of another leader", in: keyRotation{Keys: [][]byte{nw, old}, Acked: true, Fresh: fresh},
			want: keyStep{Propose: [][]byte{nw, old, fresh}, Target: fresh}},
		{name: "rotation of another leader, no fresh key", in: keyRotation{Keys: [][]byte{nw, old}, Acked: true}},
		{name: "rotation of another leader, waiting", in: keyRotation{Keys: [][]byte{nw, old}, Fresh: fresh}},
		{name: "target gone from the store", in: keyRotation{Keys: [][]byte{other}, Target: nw, Acked: true, Fresh: fresh}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := nextKeyStep(tt.in)
			if !keysEqual(got.Propose, tt.want.Propose) || !bytes.Equal(got.Target, tt.want.Target) {
				t.Fatalf("nextKeyStep = propose %q target %q; want propose %q target %q",
					got.Propose, got.Target, tt.want.Propose, tt.want.Target)
			}
		})
	}
}

// TestKeyRotationWalk runs a whole rotation through nextKeyStep and
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
		ring = slices.DeleteFunc(ring, func(k []byte) bool { return containsKey(remove, k) })
		nodes[i] = ring
		for j := range nodes {
			for k := range nodes {
				if !containsKey(nodes[k], nodes[j][0]) {
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
		step := nextKeyStep(keyRotation{Keys: store, Target: target, Acked: acked})
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
		alive  map[string]memberMeta
		selfFP string
		want   bool
	}{
		{name: "all applied", alive: map[string]memberMeta{"b": {GK: "k"}, "c": {GK: "k"}}, selfFP: "k", want: true},
		{name: "one behind", alive: map[string]memberMeta{"b": {GK: "k"}, "c": {GK: "j"}}, selfFP: "k"},
		{name: "self behind", alive: map[string]memberMeta{"b": {GK: "k"}, "c": {GK: "k"}}, selfFP: "j"},
		{name: "down node does not hold it up", alive: map[string]memberMeta{"b": {GK: "k"}}, selfFP: "k", want: true},
		{name: "removed member does not count", alive: map[string]memberMeta{"b": {GK: "k"}, "c": {GK: "k"}, "gone": {GK: "j"}},
			selfFP: "k", want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := keysAcked("k", nodes, tt.alive, "self", tt.selfFP); got != tt.want {
				t.Fatalf("keysAcked = %v, want %v", got, tt.want)
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
			if got := cutOff(tt.serial, "n", revoked, func(string) bool { return tt.member }); got != tt.want {
				t.Fatalf("cutOff = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestRevokedConnsClosed opens RPC connections through the real mux, as a
// node that sent the protocol byte and holds the connection, then revokes
// one client's serial: its connection ends at once on both ends, the other
// one stays. Then the dialling side revokes the server: its own tracked
// connection ends.
func TestRevokedConnsClosed(t *testing.T) {
	s := startRPCServer(t)
	certB, serialB := s.pki.node("node-b")
	certC, _ := s.pki.node("node-c")
	connB, err := dialProto(s.addr, 5*time.Second, pki.ClientTLS(certB, s.pki.ca.Pool()), protoRPC)
	if err != nil {
		t.Fatal(err)
	}
	defer connB.Close()
	connC, err := dialProto(s.addr, 5*time.Second, pki.ClientTLS(certC, s.pki.ca.Pool()), protoRPC)
	if err != nil {
		t.Fatal(err)
	}
	defer connC.Close()
	serverSerial := pki.Serial(connC.ConnectionState().PeerCertificates[0])

	// The mux identifies a connection once it read the protocol byte.
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.m.conns.mu.Lock()
		n := 0
		for c := range s.m.conns.conns {
			if c.serial != "" {
				n++
			}
		}
		s.m.conns.mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mux identified %d connections, want 2", n)
		}
		time.Sleep(10 * time.Millisecond)
	}

	s.revoked.Store(serialB, true)
	isRevoked := func(serial, _ string) bool { _, ok := s.revoked.Load(serial); return ok }
	if peers := s.m.conns.closeRevoked(isRevoked); !slices.Equal(peers, []string{"node-b"}) {
		t.Fatalf("closed connections of %v, want [node-b]", peers)
	}
	_ = connB.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	if _, err := connB.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read on the revoked client's connection: %v, want it closed by the server", err)
	}
	t.Logf("revoked client's connection ended after %v", time.Since(start))
	_ = connC.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := connC.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read on the other client's connection: %v, want it still open (deadline)", err)
	}

	// The dialling side: the server's serial is revoked.
	if peers := dialedConns.closeRevoked(func(serial, _ string) bool { return serial == serverSerial }); len(peers) == 0 {
		t.Fatal("no dialled connection to the revoked server was closed")
	}
	_ = connC.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := connC.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read on a connection to a revoked server: %v, want net.ErrClosed", err)
	}
}

// TestRejoinRevokesOldSerials: a node ID that re-joins (proving it holds
// the old key) gets a new certificate, and every serial the cluster knew
// for that ID — the one it presented and the one in its record — is
// revoked in the same entry; the old certificate cannot re-join again.
// joinFixture is a one-node cluster (n1 leads) and its agent, to ask
// admitJoinID about joiners.
func joinFixture(t *testing.T) (context.Context, *Agent, *cluster, *pki.CA) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	leader := startRaftNode(t, "n1")
	bootstrapLeader(ctx, t, leader)
	a := newTestAgent(t)
	a.id.NodeID = "n1"
	cl := &cluster{id: "c1", store: leader.store, raft: leader.raft}
	ca, err := pki.NewCA("c1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	record, err := sealedClusterRecord("c1", ca, pki.NewSecret(), pki.NewKEK())
	if err != nil {
		t.Fatal(err)
	}
	record.ClusterCIDR, record.VIPCIDR = "10.42.0.0/16", "10.43.0.0/16"
	if _, err := leader.raft.Apply(ctx, &consensus.BootstrapCluster{Cluster: record, Node: api.Node{ID: "n1", Hostname: "h1", Addr: "127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	return ctx, a, cl, ca
}

func TestRejoinRevokesOldSerials(t *testing.T) {
	ctx, a, cl, ca := joinFixture(t)
	ips := []net.IP{net.ParseIP("127.0.0.1")}
	// The joiner still has S1; its record names S0 (a renewal it lost).
	certPEM, keyPEM, s1, err := ca.IssueNodeCert("n2", ips, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, _, s0, err := ca.IssueNodeCert("n2", ips, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.raft.Apply(ctx, &consensus.UpsertNode{Node: api.Node{ID: "n2", Hostname: "h2", Addr: "127.0.0.2",
		Status: api.NodeDown, CertSerial: s0}}); err != nil {
		t.Fatal(err)
	}
	key, err := pki.ParseKeyPEM(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.NewCSR(key, "n2")
	if err != nil {
		t.Fatal(err)
	}
	req := wire.JoinRequest{NodeID: "n2", CSR: csr, OldCertPEM: certPEM}
	revoke, err := a.admitJoinID(cl, cl.store.Cluster(), req)
	if err != nil {
		t.Fatalf("re-join with the old key refused: %v", err)
	}
	slices.Sort(revoke)
	want := []string{s0, s1}
	slices.Sort(want)
	if !slices.Equal(revoke, want) {
		t.Fatalf("re-join revokes %v, want %v", revoke, want)
	}
	_, _, sNew, err := ca.IssueNodeCert("n2", ips, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.raft.Apply(ctx, joinRecord(api.Node{ID: "n2", Hostname: "h2", Addr: "127.0.0.2", Status: api.NodeDown, CertSerial: sNew}, revoke)); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{s0, s1} {
		if !cl.store.IsRevoked(s) {
			t.Errorf("old serial %s not revoked after the re-join", s)
		}
	}
	if cl.store.IsRevoked(sNew) {
		t.Error("the new serial is revoked")
	}
	if _, err := a.admitJoinID(cl, cl.store.Cluster(), req); err == nil {
		t.Fatal("the revoked old certificate re-joined again")
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
			if got := replicaKeyring(tt.index, tt.floor, tt.keys); !keysEqual(got, tt.want) {
				t.Fatalf("replicaKeyring(%d, %d) = %q, want %q", tt.index, tt.floor, got, tt.want)
			}
		})
	}
}

// TestRejoinReplayKeepsCurrentState replays, entry by entry as a joining
// node's replica does, the log of a cluster that removed node "n4" (with a
// gossip key rotation) and admitted it again under its ID. Nothing the
// node takes from its replica while it catches up may be of the past: it
// never applies a keyring without the key the join reply gave it (the
// retired key would cut it off from gossip and let the removed node's
// messages in), and the first subnet the overlay may use is the new one.
func TestRejoinReplayKeepsCurrentState(t *testing.T) {
	old, nw := make([]byte, 32), key('n') // newReplica's bootstrap key is zeros
	leader := newReplica(t)
	var log []consensus.Command
	apply := func(cmd consensus.Command) {
		leader.apply(cmd)
		log = append(log, cmd)
	}
	log = append(log, consensus.BootstrapCluster{ // what newReplica applied
		Cluster: consensus.ClusterState{ClusterID: "c1", GossipKeys: [][]byte{old},
			ClusterCIDR: "10.42.0.0/16", VIPCIDR: "10.43.0.0/16", TokenSecretHash: "x"},
		Node: api.Node{ID: "boot", Hostname: "boot", Addr: "127.0.0.1", Status: api.NodeReady, CertSerial: "b0"},
	})
	n4 := func(serial string) consensus.Command {
		return consensus.UpsertNode{Node: api.Node{ID: "n4", Hostname: "n4", Addr: "127.0.0.1", ClusterPort: 1,
			Status: api.NodeReady, CertSerial: serial}}
	}
	apply(n4("s1"))
	oldRec, err := leader.store.Node("n4")
	if err != nil {
		t.Fatal(err)
	}
	apply(consensus.Batch{Commands: []consensus.Command{consensus.RemoveNode{ID: "n4", Now: time.Now()},
		consensus.SetGossipKeys{Keys: [][]byte{old, nw}}}})
	apply(consensus.SetGossipKeys{Keys: [][]byte{nw, old}})
	apply(consensus.SetGossipKeys{Keys: [][]byte{nw}})
	apply(n4("s2"))
	// The join reply (handleJoinRPC): keyring and index of one view.
	snap := leader.store.Snapshot()
	replyKeys, floor := snap.Cluster().GossipKeys, snap.Index()
	newRec, err := snap.Node("n4")
	if err != nil {
		t.Fatal(err)
	}
	if newRec.Subnet == oldRec.Subnet {
		t.Fatalf("the re-joined node kept subnet %s; the test needs a new one", newRec.Subnet)
	}

	joiner := consensus.NewStore()
	fsm := consensus.NewFSM(joiner)
	installed := replyKeys // keyring.json as join wrote it
	overlaySubnet := ""
	for i, cmd := range log {
		if res := fsm.ApplyCommand(uint64(i+1), cmd); res.Err != nil {
			t.Fatalf("replay %T: %v", cmd, res.Err)
		}
		if keys := replicaKeyring(joiner.Index(), floor, joiner.Cluster().GossipKeys); keys != nil {
			installed = keys
		}
		if !containsKey(installed, nw) {
			t.Fatalf("after replaying entry %d the joiner applied keyring %q: it lost the current key", i+1, installed)
		}
		if overlaySubnet == "" && replicaCurrent(joiner.Index(), floor) {
			if n, err := joiner.Node("n4"); err == nil {
				overlaySubnet = n.Subnet
			}
		}
	}
	if overlaySubnet != newRec.Subnet {
		t.Fatalf("the overlay would come up on subnet %q, want the new %s (the old one was %s)", overlaySubnet, newRec.Subnet, oldRec.Subnet)
	}
	if !keysEqual(installed, [][]byte{nw}) {
		t.Fatalf("the joiner ends with keyring %q, want only the new key", installed)
	}
}

// TestRetriedJoinSameKey: a join applied on the leader whose reply was lost
// is retried without a certificate; the retry gets in when its CSR is
// signed by the key the cluster certified (the certificate it never got is
// revoked), and a CSR for the same ID with another key does not.
func TestRetriedJoinSameKey(t *testing.T) {
	ctx, a, cl, ca := joinFixture(t)
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.NewCSR(key, "n3")
	if err != nil {
		t.Fatal(err)
	}
	fp, err := pki.CSRKeyFingerprint(csr)
	if err != nil {
		t.Fatal(err)
	}
	_, lost, err := ca.SignCSR(csr, "n3", []net.IP{net.ParseIP("127.0.0.3")}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.raft.Apply(ctx, &consensus.UpsertNode{Node: api.Node{ID: "n3", Hostname: "h3", Addr: "127.0.0.3",
		Status: api.NodeDown, CertSerial: lost, CertKey: fp}}); err != nil {
		t.Fatal(err)
	}
	revoke, err := a.admitJoinID(cl, cl.store.Cluster(), wire.JoinRequest{NodeID: "n3", CSR: csr})
	if err != nil {
		t.Fatalf("retried join with the certified key refused: %v", err)
	}
	if !slices.Equal(revoke, []string{lost}) {
		t.Fatalf("retried join revokes %v, want the lost certificate's %s", revoke, lost)
	}
	other, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	stolen, err := pki.NewCSR(other, "n3")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.admitJoinID(cl, cl.store.Cluster(), wire.JoinRequest{NodeID: "n3", CSR: stolen}); err == nil {
		t.Fatal("a join claiming n3 with another key was admitted")
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
		{"idle, never changed", time.Time{}, false, revokeIdleResync},
		{"idle, changed long ago", now.Add(-time.Minute), false, revokeIdleResync},
		{"just revoked", now.Add(-time.Second), false, revokeResync},
		{"rotating", now.Add(-time.Hour), true, revokeResync},
	} {
		if got := revokePeriod(now, c.changed, c.rotating); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}
