package reconciler

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/runtime/ocispec"
)

// followerRaft is a follower that knows a leader and holds every command
// of its own log (Raft's Synced).
type followerRaft struct{}

func (followerRaft) Synced() bool           { return true }
func (followerRaft) IsLeader() bool         { return false }
func (followerRaft) LastContact() time.Time { return time.Now() }

// TestNoRemovalFromAnEmptyReplica: a node that lost its Raft log (an
// unreadable raft.db is quarantined at start) has an empty log, so Raft
// counts it caught up as soon as a leader's first heartbeat arrives,
// before the leader sends it the snapshot. A pass then must not take the
// empty replica's word that the node's running task containers belong to
// no task. Before, it removed them all, forced (SIGKILL). Once the replica
// holds the node's record, a container of a task it does not know goes.
func TestNoRemovalFromAnEmptyReplica(t *testing.T) {
	for _, tc := range []struct {
		name        string
		store       func(t *testing.T) *consensus.Store
		wantRemoved bool
	}{
		{"empty replica (lost log, before the snapshot)", func(*testing.T) *consensus.Store { return consensus.NewStore() }, false},
		{"replica with this node's record", func(t *testing.T) *consensus.Store { return newReplica(t).store }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := newFakeRuntime()
			rt.containers["c-t9"] = api.Container{ID: "c-t9", State: api.ContainerRunning, TaskID: "t9"}
			r := New(Config{
				NodeID: "n1", Store: tc.store(t), Raft: followerRaft{}, Members: noMembers{}, Runtime: rt, Network: upNetwork{},
				EnsureImage:  func(context.Context, *api.Task) error { return nil },
				PrepareFiles: func(context.Context, *api.Task) ([]ocispec.FileMount, error) { return nil, nil },
				GCTaskFiles:  func(map[string]bool) {},
				Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
			var wg sync.WaitGroup
			r.pass(context.Background(), &wg)
			wg.Wait()
			rt.mu.Lock()
			_, kept := rt.containers["c-t9"]
			rt.mu.Unlock()
			if kept == tc.wantRemoved {
				t.Errorf("container of a task the replica does not know: removed %v, want %v", !kept, tc.wantRemoved)
			}
		})
	}
}

// contactRaft is a follower that last heard its leader at lc.
type contactRaft struct{ lc *time.Time }

func (contactRaft) Synced() bool             { return true }
func (contactRaft) IsLeader() bool           { return false }
func (c contactRaft) LastContact() time.Time { return *c.lc }

// TestQuietCountsOwnDownMarkOnLocalClock: this node still hears the log
// (a fresh last contact) but gossip does not reach the leader, which marked
// it down; the leader's clock is 2 minutes ahead of this node's. The node
// must count its silence from when it saw the mark, on its own clock: the
// leader replaces its at-most-once tasks grace plus stop grace after the
// mark by the leader's clock. Before, the mark, 2 minutes in this node's
// future, counted for nothing and the node fenced its tasks 2 minutes late,
// while their replacements ran.
func TestQuietCountsOwnDownMarkOnLocalClock(t *testing.T) {
	rep := newReplica(t)
	t1 := time.Now()
	mark := t1.Add(2 * time.Minute).Round(0).UTC() // the leader's clock
	n, err := rep.store.Node("n1")
	if err != nil {
		t.Fatal(err)
	}
	n.Status, n.StatusChangedAt = api.NodeDown, mark
	if err := rep.apply(t, command.UpsertNode{Node: *n}); err != nil {
		t.Fatalf("mark the node down: %v", err)
	}
	lc := t1
	r := New(Config{NodeID: "n1", Store: rep.store, Raft: contactRaft{lc: &lc}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if q := r.quiet(t1); q > time.Second {
		t.Fatalf("quiet at the first sight of the mark: %v, want about 0", q)
	}
	lc = t1.Add(30 * time.Second) // the log still arrives
	if q := r.quiet(t1.Add(30 * time.Second)); q < 30*time.Second {
		t.Fatalf("quiet 30 s after the node saw its down mark: %v, want at least 30 s", q)
	}
	// Back up: no silence.
	n.Status, n.StatusChangedAt = api.NodeReady, mark.Add(time.Minute)
	if err := rep.apply(t, command.UpsertNode{Node: *n}); err != nil {
		t.Fatal(err)
	}
	lc = t1.Add(31 * time.Second)
	if q := r.quiet(t1.Add(31 * time.Second)); q > time.Second {
		t.Fatalf("quiet once the node is up again: %v", q)
	}
}

// TestQuietSurvivesAgentRestart: an agent restarted while its node is cut
// off from the leader (kill -9 or a crash, then systemd) finds its
// containers still running. Its silence counts from the last contact the
// previous agent kept, not from its own start: the leader replaces the
// node's at-most-once tasks grace plus stop grace after it marked the
// node down, and a fence that counted from the restart came after that.
func TestQuietSurvivesAgentRestart(t *testing.T) {
	rep := newReplica(t) // this node's record: ready (the mark never arrived)
	file := filepath.Join(t.TempDir(), "contact.json")
	heard := time.Now().Add(-90 * time.Second) // the last contact, 90 s ago
	lc := heard
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	before := New(Config{NodeID: "n1", Store: rep.store, Raft: contactRaft{lc: &lc}, Logger: log, ContactFile: file})
	before.since, before.contact = heard.Add(-time.Minute), heard.Add(-time.Minute) // it started earlier
	before.quiet(heard.Add(time.Second))                                            // in touch: the contact is kept
	// The agent died since; a new one starts now, still cut off (Raft has
	// heard no leader since its start).
	lc = time.Time{}
	after := New(Config{NodeID: "n1", Store: rep.store, Raft: contactRaft{lc: &lc}, Logger: log, ContactFile: file})
	if q := after.quiet(time.Now()); q < 85*time.Second {
		t.Fatalf("quiet after the restart: %v, want about 90 s (since the last contact before it)", q)
	}
	// Without a file, or with an unreadable one, the silence counts from
	// the start.
	if err := os.WriteFile(file, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	fresh := New(Config{NodeID: "n1", Store: rep.store, Raft: contactRaft{lc: &lc}, Logger: log, ContactFile: file})
	if q := fresh.quiet(time.Now()); q > time.Second {
		t.Fatalf("quiet with an unreadable contact file: %v", q)
	}
}

// TestWriteContactInPlace: each save overwrites the record in the same
// file (same inode: no new file renamed over the old one, whose freed
// blocks a `discard` mount sends to the disk), a shorter record after a
// longer one leaves nothing of it, a longer file is cut to the record,
// and loadContact reads back what was saved.
func TestWriteContactInPlace(t *testing.T) {
	file := filepath.Join(t.TempDir(), "contact.json")
	if err := os.WriteFile(file, []byte(strings.Repeat("x", 200)), 0o600); err != nil {
		t.Fatal(err)
	}
	inode := func() uint64 {
		t.Helper()
		fi, err := os.Stat(file)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}
	first := inode()
	for _, at := range []time.Time{
		time.Date(2026, 12, 6, 2, 35, 34, 123456789, time.UTC),
		time.Date(2026, 12, 6, 2, 35, 36, 0, time.UTC), // shorter in JSON
	} {
		b, err := json.Marshal(contactRecord{Contact: at})
		if err != nil {
			t.Fatal(err)
		}
		if err := writeContact(file, b); err != nil {
			t.Fatal(err)
		}
		if got, ok := loadContact(file); !ok || !got.Equal(at) {
			t.Fatalf("loadContact after saving %v: %v, %v", at, got, ok)
		}
		if fi, _ := os.Stat(file); fi.Size() != contactSize {
			t.Fatalf("file of %d bytes, want %d", fi.Size(), contactSize)
		}
		if inode() != first {
			t.Fatal("the save made a new file instead of overwriting the record")
		}
	}
	if err := writeContact(file, []byte(strings.Repeat("y", contactSize))); err == nil {
		t.Fatal("a record longer than the file's size was written")
	}
}
