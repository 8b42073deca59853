package node

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/consensus/raftnode"
	"github.com/shoal-org/shoal/node/keyring"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/wire"
)

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
	n := &raftNode{id: id, dir: t.TempDir(), store: consensus.NewStore()}
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

	a := newTestAgent(t)
	a.id.NodeID = "n1"
	cl := &cluster{id: "c1", store: leader.store, raft: leader.raft}
	ca, err := pki.NewCA("c1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	kek := pki.NewKEK()
	if err := a.saveKEK(kek); err != nil {
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
	rotated, err := a.keeper(cl).RotateSecret(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The leader (a voter with the KEK) opens what it stored.
	c := leader.store.Cluster()
	if got, err := a.joinSecret(c); err != nil || got != rotated {
		t.Fatalf("voter opens secret %q, %v; want %q", got, err, rotated)
	}
	if got, err := a.clusterCA(c); err != nil || !bytes.Equal(got.KeyPEM(), ca.KeyPEM()) {
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
	if _, err := (&Agent{cfg: Config{DataDir: follower.dir}}).joinSecret(fc); !errors.Is(err, keyring.ErrNoKEK) {
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
	a := newTestAgent(t)
	a.id.NodeID = "n1"
	cl := &cluster{id: "c1", store: n.store, raft: n.raft}
	a.keeper(cl).LeaderKeys(ctx, n.store.Cluster())
	c := n.store.Cluster()
	if len(c.CAKeyPEM) != 0 || c.TokenSecret != "" || c.KEKID == "" || len(c.CAKeySealed) == 0 {
		t.Fatalf("not migrated: %+v", c)
	}
	if got, err := a.joinSecret(c); err != nil || got != secret {
		t.Fatalf("secret after migration %q, %v", got, err)
	}
	if got, err := a.clusterCA(c); err != nil || !bytes.Equal(got.KeyPEM(), ca.KeyPEM()) {
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

// TestJoinReplyForeignCARefused: a node reached through a pinned TLS
// handshake answers the join with another CA; the joiner refuses and writes
// nothing.
func TestJoinReplyForeignCARefused(t *testing.T) {
	pinned := newTestPKI(t, "cluster-a")
	foreign := newTestPKI(t, "cluster-b")
	cert, _ := pinned.node("leader")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	answer := func(c *tls.Conn) {
		defer c.Close()
		line, err := bufio.NewReader(c).ReadBytes('\n')
		if err != nil {
			return
		}
		var req wire.Request
		_ = json.Unmarshal(line, &req)
		var jr wire.JoinRequest
		_ = json.Unmarshal(req.Body, &jr)
		// A certificate for the joiner's own key and ID, from the foreign CA.
		certPEM, _, err := foreign.ca.SignCSR(jr.CSR, jr.NodeID, nil, time.Now(), time.Hour)
		if err != nil {
			t.Errorf("sign: %v", err)
			return
		}
		body, _ := json.Marshal(wire.JoinResponse{ClusterID: "cluster-b", CertPEM: certPEM, CAPEM: foreign.ca.CertPEM(),
			GossipKeys: [][]byte{make([]byte, 32)}})
		b, _ := json.Marshal(wire.Response{Body: body})
		_, _ = c.Write(append(b, '\n'))
	}
	m := newMux(ln, pki.ServerTLS(cert, pinned.ca.Pool(), nil), slog.New(slog.NewTextHandler(io.Discard, nil)), answer, nil)
	mctx, mcancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(mctx) }()
	defer func() { mcancel(); <-done }()

	a := newTestAgent(t)
	tok := pki.FormatToken(pinned.ca.Fingerprint(), pki.NewSecret())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = a.joinCluster(ctx, api.JoinRequest{Token: tok, Addr: ln.Addr().String()})
	if !errors.Is(err, pki.ErrCAMismatch) {
		t.Fatalf("join err = %v, want ErrCAMismatch", err)
	}
	if _, statErr := os.Stat(clusterDir(a.cfg.DataDir)); !errors.Is(statErr, os.ErrNotExist) {
		t.Fatalf("join refused but %s exists (%v)", clusterDir(a.cfg.DataDir), statErr)
	}
	if _, err := a.clusterOrErr(); err == nil {
		t.Fatal("a cluster was started")
	}
}
