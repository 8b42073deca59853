package raftnode

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/consensus/logstore"
	bolt "go.etcd.io/bbolt"
)

// The stable store keys raft v1.8 uses (logstore/migrate.go has the same).
var (
	keyCurrentTerm  = []byte("CurrentTerm")
	keyLastVoteTerm = []byte("LastVoteTerm")
	keyLastVoteCand = []byte("LastVoteCand")
)

func testLogs(from, to, term uint64, tag string) []*raft.Log {
	var out []*raft.Log
	for i := from; i <= to; i++ {
		out = append(out, &raft.Log{Index: i, Term: term, Type: raft.LogCommand,
			Data: []byte(tag + "-" + string(rune('a'+i%26))), AppendedAt: time.Unix(1700000000, int64(i))})
	}
	return out
}

// writeWAL fills a raft-wal store in walDir the way the old New did.
func writeWAL(t *testing.T, walDir string, fill func(w *raftwal.WAL)) {
	t.Helper()
	if err := os.MkdirAll(walDir, 0o700); err != nil {
		t.Fatal(err)
	}
	meta := &metadb.BoltMetaDB{}
	w, err := raftwal.Open(walDir, raftwal.WithMetaStore(meta))
	if err != nil {
		t.Fatal(err)
	}
	fill(w)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := meta.Close(); err != nil {
		t.Fatal(err)
	}
}

func openTestStorage(t *testing.T, dir string) storage {
	t.Helper()
	cfg := testRaftConfig("n1")
	cfg.DataDir = dir
	st, err := openDiskStorage(cfg, hclog.NewNullLogger())
	if err != nil {
		t.Fatalf("open storage: %v", err)
	}
	t.Cleanup(func() {
		for _, c := range st.closers {
			_ = c.Close()
		}
	})
	return st
}

func TestMigrateWALKeepsLogAndStableState(t *testing.T) {
	dir := t.TempDir()
	walDir := filepath.Join(dir, "raft", "wal")
	writeWAL(t, walDir, func(w *raftwal.WAL) {
		if err := w.StoreLogs(testLogs(1, 1500, 2, "old")); err != nil {
			t.Fatal(err)
		}
		if err := w.DeleteRange(1, 100); err != nil { // a compacted head
			t.Fatal(err)
		}
		_ = w.SetUint64(keyCurrentTerm, 9)
		_ = w.SetUint64(keyLastVoteTerm, 8)
		_ = w.Set(keyLastVoteCand, []byte("n2"))
	})
	// A crash during an earlier attempt left a half-written copy and a
	// raft.db: both are redone from the WAL, which is still in place.
	if err := os.WriteFile(filepath.Join(dir, "raft", "raft.db.migrating"), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	st := openTestStorage(t, dir)
	first, _ := st.logs.FirstIndex()
	last, _ := st.logs.LastIndex()
	if first != 101 || last != 1500 {
		t.Fatalf("migrated range %d..%d, want 101..1500", first, last)
	}
	var l raft.Log
	if err := st.logs.GetLog(777, &l); err != nil || l.Term != 2 || !bytes.Equal(l.Data, testLogs(777, 777, 2, "old")[0].Data) {
		t.Fatalf("entry 777: %+v %v", l, err)
	}
	if v, _ := st.stable.GetUint64(keyCurrentTerm); v != 9 {
		t.Fatalf("CurrentTerm %d", v)
	}
	if v, _ := st.stable.GetUint64(keyLastVoteTerm); v != 8 {
		t.Fatalf("LastVoteTerm %d", v)
	}
	if v, _ := st.stable.Get(keyLastVoteCand); string(v) != "n2" {
		t.Fatalf("LastVoteCand %q", v)
	}
	if _, err := os.Stat(walDir); !os.IsNotExist(err) {
		t.Fatalf("wal dir still in place: %v", err)
	}
	aside, _ := filepath.Glob(filepath.Join(dir, "raft", "wal.migrated-*"))
	if len(aside) != 1 {
		t.Fatalf("old wal not kept aside: %v", aside)
	}
	if _, err := os.Stat(filepath.Join(dir, "raft", "raft.db.migrating")); !os.IsNotExist(err) {
		t.Fatalf("temporary copy left behind: %v", err)
	}
	if st.gate.Closed.Load() {
		t.Fatal("a clean migration withholds the vote")
	}
}

// brokenWAL reproduces hashicorp/raft-wal#31: a tail truncation seals the
// tail segment without an index block, so after a reopen the entries before
// the truncation point cannot be read.
func brokenWAL(t *testing.T, walDir string) {
	writeWAL(t, walDir, func(w *raftwal.WAL) {
		if err := w.StoreLogs(testLogs(1, 10, 1, "a")); err != nil {
			t.Fatal(err)
		}
		if err := w.DeleteRange(6, 10); err != nil {
			t.Fatal(err)
		}
		if err := w.StoreLogs(testLogs(6, 12, 2, "b")); err != nil {
			t.Fatal(err)
		}
		_ = w.SetUint64(keyCurrentTerm, 2)
	})
	// Prove the reproduction: raft-wal itself cannot read entry 3 back.
	meta := &metadb.BoltMetaDB{}
	w, err := raftwal.Open(walDir, raftwal.WithMetaStore(meta))
	if err != nil {
		t.Fatal(err)
	}
	var l raft.Log
	if err := w.GetLog(3, &l); err == nil || !strings.Contains(err.Error(), "no index block") {
		t.Fatalf("raft-wal#31 not reproduced: GetLog(3) = %v", err)
	}
	_ = w.Close()
	_ = meta.Close()
}

func TestUnreadableWALIsQuarantinedNotMigrated(t *testing.T) {
	dir := t.TempDir()
	brokenWAL(t, filepath.Join(dir, "raft", "wal"))
	st := openTestStorage(t, dir)
	if last, _ := st.logs.LastIndex(); last != 0 {
		t.Fatalf("a partly readable wal was migrated up to %d", last)
	}
	if !st.gate.Closed.Load() {
		t.Fatal("vote not withheld after losing the log")
	}
	broken, _ := filepath.Glob(filepath.Join(dir, "raft.broken-*", "wal", "*"))
	if len(broken) == 0 {
		t.Fatal("broken wal not kept under raft.broken-*")
	}
	b, err := os.ReadFile(filepath.Join(dir, logstore.RejoinMarkerFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "no index block") || !strings.Contains(string(b), "raft.broken-") {
		t.Fatalf("marker does not say what happened: %s", b)
	}
}

// writeThenCorrupt stores five entries at path, then changes the bolt file
// under the store (logstore's bucket "logs", keys big-endian indexes).
func writeThenCorrupt(t *testing.T, path string, corrupt func(tx *bolt.Tx) error) {
	t.Helper()
	s, err := logstore.OpenLogStore(path)
	if err != nil {
		t.Fatal(err)
	}
	_ = s.StoreLogs(testLogs(1, 5, 1, "ok"))
	_ = s.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = db.Update(corrupt)
	_ = db.Close()
}

func indexKey(i uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], i)
	return k[:]
}

func TestCorruptLogStoreIsQuarantined(t *testing.T) {
	for name, corrupt := range map[string]func(t *testing.T, path string){
		"not a bolt file": func(t *testing.T, path string) {
			if err := os.WriteFile(path, bytes.Repeat([]byte("garbage!"), 4096), 0o600); err != nil {
				t.Fatal(err)
			}
		},
		"undecodable entry": func(t *testing.T, path string) {
			writeThenCorrupt(t, path, func(tx *bolt.Tx) error { return tx.Bucket([]byte("logs")).Put(indexKey(3), []byte{9, 9}) })
		},
		"hole in the log": func(t *testing.T, path string) {
			writeThenCorrupt(t, path, func(tx *bolt.Tx) error { return tx.Bucket([]byte("logs")).Delete(indexKey(3)) })
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.MkdirAll(filepath.Join(dir, "raft"), 0o700); err != nil {
				t.Fatal(err)
			}
			corrupt(t, filepath.Join(dir, "raft", "raft.db"))
			st := openTestStorage(t, dir)
			if last, _ := st.logs.LastIndex(); last != 0 || !st.gate.Closed.Load() {
				t.Fatalf("last %d, gate closed %v", last, st.gate.Closed.Load())
			}
			if pending, _ := logstore.RejoinPending(dir); !pending {
				t.Fatal("no rejoin marker")
			}
		})
	}
}

// TestVoteWithheldUntilRejoinDone: a node that lost its log grants no vote
// (not even with an empty configuration, where raft would) until RejoinDone;
// the marker makes a restart withhold it again.
func TestVoteWithheldUntilRejoinDone(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "raft"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "raft", "raft.db"), []byte("not bolt"), 0o600); err != nil {
		t.Fatal(err)
	}
	start := func() (*Raft, *raft.InmemTransport) {
		_, trans := raft.NewInmemTransport("")
		cfg := testRaftConfig("n1")
		cfg.DataDir = dir
		cfg.Transport = trans
		r, err := New(cfg, consensus.NewStore())
		if err != nil {
			t.Fatalf("New on an unreadable log: %v", err)
		}
		return r, trans
	}
	vote := func(r *Raft, trans *raft.InmemTransport, term uint64) bool {
		_, cand := raft.NewInmemTransport("")
		cand.Connect(trans.LocalAddr(), trans)
		req := &raft.RequestVoteRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("n9"), Addr: []byte(cand.LocalAddr())},
			Term: term, LastLogIndex: 100, LastLogTerm: term - 1}
		var resp raft.RequestVoteResponse
		if err := cand.RequestVote("n1", trans.LocalAddr(), req, &resp); err != nil {
			t.Fatal(err)
		}
		return resp.Granted
	}
	r, trans := start()
	if !r.RejoinPending() {
		t.Fatal("rejoin not pending")
	}
	if vote(r, trans, 5) {
		t.Fatal("vote granted while the rejoin is pending")
	}
	_ = r.Shutdown()

	r, trans = start() // the marker survives a restart
	if !r.RejoinPending() || vote(r, trans, 6) {
		t.Fatal("restart before RejoinDone gave the vote back")
	}
	if err := r.RejoinDone(); err != nil {
		t.Fatal(err)
	}
	if r.RejoinPending() || !vote(r, trans, 7) {
		t.Fatal("vote still withheld after RejoinDone")
	}
	_ = r.Shutdown()
	r, _ = start()
	defer r.Shutdown()
	if r.RejoinPending() {
		t.Fatal("rejoin pending again after RejoinDone and a restart")
	}
}

// TestRaftRestartAfterTailOverwritten is issue 14 item 1 at the raft level:
// a leader cut off appends entries it cannot commit, the majority elects a
// new leader and writes on, the old leader truncates its tail on heal, and
// must start again afterwards with the majority's state (raft-wal v0.4
// panicked in NewRaft on every start from then on).
func TestRaftRestartAfterTailOverwritten(t *testing.T) {
	c := newRaftCluster(t, 3)
	old := c.form()
	c.isolate(old)
	for i := 0; i < 5; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		_, _ = old.r.Apply(ctx, command.CreateService{Service: api.Service{ID: "phantom" + string(rune('0'+i)), Name: "phantom" + string(rune('0'+i))}})
		cancel()
	}
	var majority []*clusterNode
	for _, n := range c.nodes {
		if n != old {
			majority = append(majority, n)
		}
	}
	nl := c.leader(majority...)
	for i := 0; i < 10; i++ {
		if _, err := nl.r.Apply(context.Background(), command.CreateService{Service: api.Service{ID: "real" + string(rune('0'+i)), Name: "real" + string(rune('0'+i))}}); err != nil {
			t.Fatal(err)
		}
	}
	c.connectAll()
	c.waitReplicated(nl.store.Index(), c.nodes...)
	want := nl.store.Index()
	c.stop(old)
	c.start(old, false)
	c.connectAll()
	if old.r.RejoinPending() {
		t.Fatal("a truncated tail was treated as a broken log")
	}
	c.waitReplicated(want, old)
	for i := 0; i < 10; i++ {
		if _, err := old.store.ServiceByName("real" + string(rune('0'+i))); err != nil {
			t.Fatalf("after restart: %v", err)
		}
	}
	for i := 0; i < 5; i++ {
		if _, err := old.store.ServiceByName("phantom" + string(rune('0'+i))); err == nil {
			t.Fatalf("uncommitted phantom%d came back", i)
		}
	}
}
