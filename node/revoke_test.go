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
	"github.com/shoal-org/shoal/consensus/fsm"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/keyring"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/revocation"
	"github.com/shoal-org/shoal/node/wire"
)

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
		n := s.m.conns.Identified()
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
	if peers := s.m.conns.CloseRevoked(isRevoked); !slices.Equal(peers, []string{"node-b"}) {
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
	if peers := dialedConns.CloseRevoked(func(serial, _ string) bool { return serial == serverSerial }); len(peers) == 0 {
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
// keyring.Keeper.AdmitID about joiners.
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
	record, err := keyring.SealedRecord("c1", ca, pki.NewSecret(), pki.NewKEK())
	if err != nil {
		t.Fatal(err)
	}
	record.ClusterCIDR, record.VIPCIDR = "10.42.0.0/16", "10.43.0.0/16"
	if _, err := leader.raft.Apply(ctx, &command.BootstrapCluster{Cluster: record, Node: api.Node{ID: "n1", Hostname: "h1", Addr: "127.0.0.1"}}); err != nil {
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
	if _, err := cl.raft.Apply(ctx, &command.UpsertNode{Node: api.Node{ID: "n2", Hostname: "h2", Addr: "127.0.0.2",
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
	revoke, err := a.keeper(cl).AdmitID(cl.store.Cluster(), req)
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
	if _, err := cl.raft.Apply(ctx, keyring.JoinRecord(api.Node{ID: "n2", Hostname: "h2", Addr: "127.0.0.2", Status: api.NodeDown, CertSerial: sNew}, revoke)); err != nil {
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
	if _, err := a.keeper(cl).AdmitID(cl.store.Cluster(), req); err == nil {
		t.Fatal("the revoked old certificate re-joined again")
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
	var log []command.Command
	apply := func(cmd command.Command) {
		leader.apply(cmd)
		log = append(log, cmd)
	}
	log = append(log, command.BootstrapCluster{ // what newReplica applied
		Cluster: consensus.ClusterState{ClusterID: "c1", GossipKeys: [][]byte{old},
			ClusterCIDR: "10.42.0.0/16", VIPCIDR: "10.43.0.0/16", TokenSecretHash: "x"},
		Node: api.Node{ID: "boot", Hostname: "boot", Addr: "127.0.0.1", Status: api.NodeReady, CertSerial: "b0"},
	})
	n4 := func(serial string) command.Command {
		return command.UpsertNode{Node: api.Node{ID: "n4", Hostname: "n4", Addr: "127.0.0.1", ClusterPort: 1,
			Status: api.NodeReady, CertSerial: serial}}
	}
	apply(n4("s1"))
	oldRec, err := leader.store.Node("n4")
	if err != nil {
		t.Fatal(err)
	}
	apply(command.Batch{Commands: []command.Command{command.RemoveNode{ID: "n4", Now: time.Now()},
		command.SetGossipKeys{Keys: [][]byte{old, nw}}}})
	apply(command.SetGossipKeys{Keys: [][]byte{nw, old}})
	apply(command.SetGossipKeys{Keys: [][]byte{nw}})
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
	machine := fsm.New(joiner)
	installed := replyKeys // keyring.json as join wrote it
	overlaySubnet := ""
	for i, cmd := range log {
		if res := machine.ApplyCommand(uint64(i+1), cmd); res.Err != nil {
			t.Fatalf("replay %T: %v", cmd, res.Err)
		}
		if keys := revocation.ReplicaKeyring(joiner.Index(), floor, joiner.Cluster().GossipKeys); keys != nil {
			installed = keys
		}
		if !revocation.ContainsKey(installed, nw) {
			t.Fatalf("after replaying entry %d the joiner applied keyring %q: it lost the current key", i+1, installed)
		}
		if overlaySubnet == "" && revocation.ReplicaCurrent(joiner.Index(), floor) {
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
	if _, err := cl.raft.Apply(ctx, &command.UpsertNode{Node: api.Node{ID: "n3", Hostname: "h3", Addr: "127.0.0.3",
		Status: api.NodeDown, CertSerial: lost, CertKey: fp}}); err != nil {
		t.Fatal(err)
	}
	revoke, err := a.keeper(cl).AdmitID(cl.store.Cluster(), wire.JoinRequest{NodeID: "n3", CSR: csr})
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
	if _, err := a.keeper(cl).AdmitID(cl.store.Cluster(), wire.JoinRequest{NodeID: "n3", CSR: stolen}); err == nil {
		t.Fatal("a join claiming n3 with another key was admitted")
	}
}

func key(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func keysEqual(x, y [][]byte) bool {
	return slices.EqualFunc(x, y, func(a, b []byte) bool { return bytes.Equal(a, b) })
}
