package instance

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/consensus/raftnode"
	"github.com/shoal-org/shoal/consensus/raftnode/raftdirtest"
	"github.com/shoal-org/shoal/node/agentconfig"
	"github.com/shoal-org/shoal/node/keyring"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/wire"
)

// testHost is an agent for an instance built by hand: a data dir of its
// own, short timeouts, no runtime, and none of the agent's funcs.
func testHost(t *testing.T, nodeID string) Host {
	t.Helper()
	cfg := agentconfig.Default()
	cfg.DataDir = raftdirtest.Dir(t)
	cfg.AdvertiseAddr = "127.0.0.1"
	cfg.Hostname = "test-host"
	cfg.WriteTimeout = 2 * time.Second
	return Host{NodeID: nodeID, Config: cfg, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// raftNode is one on-disk raft over an in-memory transport.
type raftNode struct {
	id    string
	dir   string
	store *consensus.Store
	raft  *raftnode.Raft
	trans *raft.InmemTransport
}

// bootstrapLeader makes n a one-voter cluster and waits until it leads.
func bootstrapLeader(ctx context.Context, t *testing.T, n *raftNode) {
	t.Helper()
	if err := n.raft.BootstrapSelf(); err != nil {
		t.Fatal(err)
	}
	for !n.raft.IsLeader() {
		select {
		case <-ctx.Done():
			t.Fatal("no leader")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func startRaftNode(t *testing.T, id string) *raftNode {
	t.Helper()
	n := &raftNode{id: id, dir: raftdirtest.Dir(t), store: consensus.NewStore()}
	_, n.trans = raft.NewInmemTransport("")
	cfg := raftnode.DefaultConfig()
	cfg.NodeID = id
	cfg.HeartbeatTimeout = 50 * time.Millisecond
	cfg.ElectionTimeout = 50 * time.Millisecond
	cfg.LeaderLeaseTimeout = 50 * time.Millisecond
	cfg.HeartbeatInterval = 20 * time.Millisecond
	cfg.CommitTimeout = 5 * time.Millisecond
	cfg.DataDir = n.dir
	cfg.Transport = n.trans
	r, err := raftnode.New(cfg, n.store)
	if err != nil {
		t.Fatal(err)
	}
	n.raft = r
	t.Cleanup(func() { _ = r.Shutdown() })
	return n
}

// filesContaining lists the files under dir that contain any of needles.
func filesContaining(t *testing.T, dir string, needles map[string][]byte) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for name, n := range needles {
			if len(n) > 0 && bytes.Contains(b, n) {
				hits = append(hits, name+" in "+strings.TrimPrefix(p, dir))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

// secretNeedles are the encodings in which a CA key or a join secret could
// sit in a Raft log or snapshot (JSON carries []byte as base64).
func secretNeedles(caKeyPEM []byte, secrets ...string) map[string][]byte {
	block, _ := pem.Decode(caKeyPEM)
	n := map[string][]byte{
		"CA key PEM":           caKeyPEM,
		"CA key PEM in base64": []byte(base64.StdEncoding.EncodeToString(caKeyPEM)),
		"CA key DER":           block.Bytes,
		"CA key DER in base64": []byte(base64.StdEncoding.EncodeToString(block.Bytes)),
	}
	for _, s := range secrets {
		n["join secret "+s] = []byte(s)
		n["join secret in base64 "+s] = []byte(base64.StdEncoding.EncodeToString([]byte(s)))
	}
	return n
}

// TestNonVoterRaftHoldsNoSecrets: the records init proposes and the token
// rotation a leader proposes reach a non-voter's Raft log and snapshot with
// no CA private key and no join secret in them, only ciphertext; a voter
// holding the KEK opens them. A record made before sealing is migrated, and
// the snapshot taken after migration holds no plaintext.
func TestNonVoterRaftHoldsNoSecrets(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leader, follower := startRaftNode(t, "n1"), startRaftNode(t, "n2")
	leader.trans.Connect(follower.trans.LocalAddr(), follower.trans)
	follower.trans.Connect(leader.trans.LocalAddr(), leader.trans)
	bootstrapLeader(ctx, t, leader)

	cl := &Instance{Host: testHost(t, "n1"), ID: "c1", Store: leader.store, Raft: leader.raft}
	ca, err := pki.NewCA("c1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	kek := pki.NewKEK()
	if err := keyring.SaveKEK(cl.dir(), kek); err != nil {
		t.Fatal(err)
	}
	firstSecret := pki.NewSecret()
	record, err := keyring.SealedRecord("c1", ca, firstSecret, kek)
	if err != nil {
		t.Fatal(err)
	}
	record.ClusterCIDR, record.VIPCIDR = "10.42.0.0/16", "10.43.0.0/16"
	if _, err := leader.raft.Apply(ctx, &command.BootstrapCluster{Cluster: record, Node: api.Node{ID: "n1", Hostname: "h1", Addr: "127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	rotated, err := cl.Keeper().RotateSecret(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The leader (a voter with the KEK) opens what it stored.
	c := leader.store.Cluster()
	if got, err := keyring.JoinSecret(cl.dir(), c); err != nil || got != rotated {
		t.Fatalf("voter opens secret %q, %v; want %q", got, err, rotated)
	}
	if got, err := cl.clusterCA(c); err != nil || !bytes.Equal(got.KeyPEM(), ca.KeyPEM()) {
		t.Fatalf("voter opens the CA key: %v", err)
	}

	if err := leader.raft.AddNonvoter(ctx, "n2", string(follower.trans.LocalAddr())); err != nil {
		t.Fatal(err)
	}
	// One more entry after the configuration change, so that the non-voter
	// learns the configuration entry is committed and applies it.
	if _, err := leader.raft.Apply(ctx, &command.SetVoterTarget{Target: 3}); err != nil {
		t.Fatal(err)
	}
	for {
		if fc := follower.store.Cluster(); fc != nil && fc.TokenSecretHash == pki.HashSecret(rotated) && fc.VoterTarget == 3 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the non-voter never received the rotated token")
		case <-time.After(10 * time.Millisecond):
		}
	}
	// The snapshot waits until the non-voter applied its configuration entry.
	for err := follower.raft.Snapshot(); err != nil; err = follower.raft.Snapshot() {
		select {
		case <-ctx.Done():
			t.Fatalf("snapshot on the non-voter: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	// Control: the grep does see the replicated record (its ciphertext).
	fc := follower.store.Cluster()
	if hits := filesContaining(t, follower.dir, map[string][]byte{
		"sealed CA key": []byte(base64.StdEncoding.EncodeToString(fc.CAKeySealed)),
	}); len(hits) == 0 {
		t.Fatal("control failed: the sealed CA key is nowhere in the non-voter's raft files")
	}
	if hits := filesContaining(t, follower.dir, secretNeedles(ca.KeyPEM(), firstSecret, rotated)); len(hits) > 0 {
		t.Fatalf("the non-voter's raft files hold secrets: %v", hits)
	}
	if _, err := keyring.JoinSecret(Dir(follower.dir), fc); !errors.Is(err, keyring.ErrNoKEK) {
		t.Fatalf("a node without the KEK opened the secret: %v", err)
	}
}

// TestMigrationSealsPlaintextRecord: a leader migrates a record made before
// sealing; a snapshot taken afterwards holds neither the key nor the secret
// (the log entries before it still do until compaction, as documented).
func TestMigrationSealsPlaintextRecord(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := startRaftNode(t, "n1")
	bootstrapLeader(ctx, t, n)
	ca, _ := pki.NewCA("c1", time.Now())
	secret := pki.NewSecret()
	legacy := consensus.ClusterState{ClusterID: "c1", CACertPEM: ca.CertPEM(), CAKeyPEM: ca.KeyPEM(),
		TokenSecret: secret, TokenSecretHash: pki.HashSecret(secret), ClusterCIDR: "10.42.0.0/16", VIPCIDR: "10.43.0.0/16"}
	if _, err := n.raft.Apply(ctx, &command.BootstrapCluster{Cluster: legacy, Node: api.Node{ID: "n1", Hostname: "h1", Addr: "127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	cl := &Instance{Host: testHost(t, "n1"), ID: "c1", Store: n.store, Raft: n.raft}
	cl.Keeper().LeaderKeys(ctx, n.store.Cluster())
	c := n.store.Cluster()
	if len(c.CAKeyPEM) != 0 || c.TokenSecret != "" || c.KEKID == "" || len(c.CAKeySealed) == 0 {
		t.Fatalf("not migrated: %+v", c)
	}
	if got, err := keyring.JoinSecret(cl.dir(), c); err != nil || got != secret {
		t.Fatalf("secret after migration %q, %v", got, err)
	}
	if got, err := cl.clusterCA(c); err != nil || !bytes.Equal(got.KeyPEM(), ca.KeyPEM()) {
		t.Fatalf("CA after migration: %v", err)
	}
	if err := n.raft.Snapshot(); err != nil {
		t.Fatal(err)
	}
	snaps := filepath.Join(n.dir, "raft", "snapshots")
	if hits := filesContaining(t, snaps, secretNeedles(ca.KeyPEM(), secret)); len(hits) > 0 {
		t.Fatalf("the snapshot after migration holds secrets: %v", hits)
	}
	if hits := filesContaining(t, filepath.Join(n.dir, "raft"), secretNeedles(ca.KeyPEM(), secret)); len(hits) == 0 {
		t.Log("note: the log no longer holds the pre-migration entries")
	}
}

// TestRejoinRevokesOldSerials: a node ID that re-joins (proving it holds
// the old key) gets a new certificate, and every serial the cluster knew
// for that ID — the one it presented and the one in its record — is
// revoked in the same entry; the old certificate cannot re-join again.
// joinFixture is a one-node cluster (n1 leads) and its agent, to ask
// keyring.Keeper.AdmitID about joiners.
func joinFixture(t *testing.T) (context.Context, *Instance, *pki.CA) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	leader := startRaftNode(t, "n1")
	bootstrapLeader(ctx, t, leader)
	cl := &Instance{Host: testHost(t, "n1"), ID: "c1", Store: leader.store, Raft: leader.raft}
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
	return ctx, cl, ca
}

func TestRejoinRevokesOldSerials(t *testing.T) {
	ctx, cl, ca := joinFixture(t)
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
	if _, err := cl.Raft.Apply(ctx, &command.UpsertNode{Node: api.Node{ID: "n2", Hostname: "h2", Addr: "127.0.0.2",
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
	revoke, err := cl.Keeper().AdmitID(cl.Store.Cluster(), req)
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
	if _, err := cl.Raft.Apply(ctx, keyring.JoinRecord(api.Node{ID: "n2", Hostname: "h2", Addr: "127.0.0.2", Status: api.NodeDown, CertSerial: sNew}, revoke)); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{s0, s1} {
		if !cl.Store.IsRevoked(s) {
			t.Errorf("old serial %s not revoked after the re-join", s)
		}
	}
	if cl.Store.IsRevoked(sNew) {
		t.Error("the new serial is revoked")
	}
	if _, err := cl.Keeper().AdmitID(cl.Store.Cluster(), req); err == nil {
		t.Fatal("the revoked old certificate re-joined again")
	}
}

// TestRetriedJoinSameKey: a join applied on the leader whose reply was lost
// is retried without a certificate; the retry gets in when its CSR is
// signed by the key the cluster certified (the certificate it never got is
// revoked), and a CSR for the same ID with another key does not.
func TestRetriedJoinSameKey(t *testing.T) {
	ctx, cl, ca := joinFixture(t)
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
	if _, err := cl.Raft.Apply(ctx, &command.UpsertNode{Node: api.Node{ID: "n3", Hostname: "h3", Addr: "127.0.0.3",
		Status: api.NodeDown, CertSerial: lost, CertKey: fp}}); err != nil {
		t.Fatal(err)
	}
	revoke, err := cl.Keeper().AdmitID(cl.Store.Cluster(), wire.JoinRequest{NodeID: "n3", CSR: csr})
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
	if _, err := cl.Keeper().AdmitID(cl.Store.Cluster(), wire.JoinRequest{NodeID: "n3", CSR: stolen}); err == nil {
		t.Fatal("a join claiming n3 with another key was admitted")
	}
}
