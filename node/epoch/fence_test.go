package epoch

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/clusterport"
)

func isFenced(f *Fence) bool {
	select {
	case <-f.Fenced():
		return true
	default:
		return false
	}
}

func TestFenceCheck(t *testing.T) {
	type seen struct {
		peer   string
		remote uint64
		want   consensus.EpochVerdict
	}
	for _, tt := range []struct {
		name       string
		local      uint64
		seen       []seen
		fenced     bool
		newest     uint64
		newestFrom string
	}{
		{name: "same epoch", local: 1, seen: []seen{{"a", 1, consensus.EpochSame}}},
		{name: "old voters are refused, not a fence", local: 1,
			seen: []seen{{"a", 0, consensus.EpochPeerStale}, {"b", 0, consensus.EpochPeerStale}}},
		{name: "a newer epoch fences", local: 0, seen: []seen{{"a", 0, consensus.EpochSame}, {"r", 1, consensus.EpochSelfStale}},
			fenced: true, newest: 1, newestFrom: "r"},
		{name: "the newest epoch seen wins", local: 1,
			seen:   []seen{{"r", 3, consensus.EpochSelfStale}, {"s", 2, consensus.EpochSelfStale}, {"t", 4, consensus.EpochSelfStale}},
			fenced: true, newest: 4, newestFrom: "t"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := NewFence(tt.local)
			for _, s := range tt.seen {
				if got := f.Check(s.peer, s.remote); got != s.want {
					t.Errorf("check(%s, %d) at epoch %d = %s, want %s", s.peer, s.remote, tt.local, got, s.want)
				}
			}
			if got := isFenced(f); got != tt.fenced {
				t.Fatalf("fenced = %v, want %v", got, tt.fenced)
			}
			if e, from := f.Newest(); e != tt.newest || from != tt.newestFrom {
				t.Fatalf("newest = %d from %q, want %d from %q", e, from, tt.newest, tt.newestFrom)
			}
		})
	}

	// Only a peer this node trusts (a voter of its configuration) fences it.
	f := NewFence(0)
	f.Trust(func(id string) bool { return id == "voter" })
	if v := f.Check("worker", 7); v != consensus.EpochSelfStale || isFenced(f) {
		t.Fatalf("a non-voter's newer epoch: verdict %s, fenced %v", v, isFenced(f))
	}
	if e, _ := f.Newest(); e != 0 {
		t.Fatalf("an untrusted epoch recorded: %d", e)
	}
	if f.Check("voter", 1); !isFenced(f) {
		t.Fatal("a voter's newer epoch did not fence")
	}
	if e, from := f.Newest(); e != 1 || from != "voter" {
		t.Fatalf("newest %d from %q", e, from)
	}

	// A nil fence (a mux built alone) is epoch 0 and never fenced.
	var nf *Fence
	if nf.Local() != 0 || nf.Check("x", 0) != consensus.EpochSame || nf.Check("x", 5) != consensus.EpochSelfStale || nf.Fenced() != nil {
		t.Fatal("nil fence is not epoch 0")
	}
	nf.Hint("10.0.0.1:2377") // no-op
}

func TestFenceHintKeepsLatest(t *testing.T) {
	f := NewFence(0)
	f.Hint("a:2377")
	f.Hint("b:2377")
	f.Hint("c:2377")
	select {
	case got := <-f.hints:
		if got != "c:2377" {
			t.Fatalf("hint %q, want the latest", got)
		}
	default:
		t.Fatal("no hint pending")
	}
	select {
	case got := <-f.hints:
		t.Fatalf("a second hint %q pending", got)
	default:
	}
}

func TestOpenEpoch(t *testing.T) {
	for _, tt := range []struct {
		name       string
		file       uint64 // 0: no file
		forceNew   bool
		state      *consensus.ClusterState
		wantBefore uint64 // epoch while raft recovers
		wantAfter  uint64 // epoch once settled
	}{
		{name: "new cluster", wantBefore: 0, wantAfter: 0},
		{name: "restart keeps the epoch", file: 2, wantBefore: 2, wantAfter: 2},
		{name: "restart ignores the record", file: 1, state: &consensus.ClusterState{Epoch: 5}, wantBefore: 1, wantAfter: 1},
		{name: "first force", forceNew: true, state: &consensus.ClusterState{}, wantBefore: 1, wantAfter: 1},
		{name: "force again", file: 1, forceNew: true, state: &consensus.ClusterState{Epoch: 1}, wantBefore: 2, wantAfter: 2},
		{name: "force with a lost file", forceNew: true, state: &consensus.ClusterState{Epoch: 3}, wantBefore: 1, wantAfter: 4},
		{name: "force before the record was written", file: 4, forceNew: true, state: &consensus.ClusterState{Epoch: 2}, wantBefore: 5, wantAfter: 5},
		{name: "force on a state without cluster record", file: 1, forceNew: true, wantBefore: 2, wantAfter: 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.file > 0 {
				if err := Write(dir, tt.file); err != nil {
					t.Fatal(err)
				}
			}
			f, recorded, err := Open(dir, tt.forceNew)
			if err != nil {
				t.Fatal(err)
			}
			if recorded != tt.file || f.Local() != tt.wantBefore {
				t.Fatalf("Open = %d (recorded %d), want %d (recorded %d)", f.Local(), recorded, tt.wantBefore, tt.file)
			}
			if got, _ := Read(dir); got != tt.wantBefore {
				t.Fatalf("file holds %d before raft started, want %d", got, tt.wantBefore)
			}
			if tt.forceNew {
				if err := SettleForced(dir, f, recorded, tt.state); err != nil {
					t.Fatal(err)
				}
			}
			if f.Local() != tt.wantAfter {
				t.Fatalf("epoch %d, want %d", f.Local(), tt.wantAfter)
			}
			if got, _ := Read(dir); got != tt.wantAfter {
				t.Fatalf("file holds %d, want %d", got, tt.wantAfter)
			}
		})
	}
}

func TestReadEpochCorrupt(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, File), []byte("{nope"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(dir); err == nil {
		t.Fatal("a corrupt epoch file read as an epoch")
	}
	if _, _, err := Open(dir, true); err == nil {
		t.Fatal("force-new-cluster over a corrupt epoch file went ahead")
	}
}

func TestMoveRaftAside(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "raft", "wal"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "raft", "wal", "x"), []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	if err := MoveRaftAside(dir, 0, now); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "raft")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("raft dir still there: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "raft.fenced-epoch0-20260102T030405.000000006", "wal", "x"))
	if err != nil || string(b) != "old" {
		t.Fatalf("old raft state not kept aside: %q %v", b, err)
	}
	// Moved already (a retried re-join): nothing to do.
	if err := MoveRaftAside(dir, 0, now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
}

// TestWatch: a hint is probed, a probe that fences ends the watch with
// true, and an ended context ends it with false.
func TestWatch(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	f := NewFence(0)
	f.Trust(func(id string) bool { return id == "voter" })
	probed := make(chan string, 4)
	probe := func(addr string) error {
		probed <- addr
		if addr == "voter:2377" {
			f.Check("voter", 1) // what the handshake does on a newer epoch
			return clusterport.ErrEpochMismatch
		}
		return errors.New("unreachable")
	}
	done := make(chan bool, 1)
	go func() { done <- f.Watch(context.Background(), probe, log) }()
	f.Hint("worker:2377")
	if got := <-probed; got != "worker:2377" {
		t.Fatalf("probed %q", got)
	}
	f.Hint("voter:2377") // probed a ProbeInterval after the first
	if got := <-probed; got != "voter:2377" {
		t.Fatalf("probed %q", got)
	}
	select {
	case fenced := <-done:
		if !fenced {
			t.Fatal("Watch ended without a fence")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Watch did not end once fenced")
	}

	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- NewFence(0).Watch(ctx, probe, log) }()
	cancel()
	if <-done {
		t.Fatal("Watch reported a fence when its context ended")
	}
}
