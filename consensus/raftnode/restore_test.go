package raftnode

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/consensus/snapshotfile"
)

// TestRaftRestoreSnapshot restores onto a 3-node raft cluster: every node
// ends up with the file's services, and the index moved past the log.
func TestRaftRestoreSnapshot(t *testing.T) {
	c := newRaftCluster(t, 3)
	l := c.form()
	ctx := context.Background()
	mustApply := func(cmd command.Command) {
		t.Helper()
		if _, err := l.r.Apply(ctx, cmd); err != nil {
			t.Fatal(err)
		}
	}
	mustApply(command.CreateService{Service: api.Service{ID: "s1", Name: "web", Spec: api.ServiceSpec{Name: "web", Replicas: 2}}})
	var file bytes.Buffer
	if _, err := snapshotfile.Write(l.store.Snapshot(), &file, t0); err != nil {
		t.Fatal(err)
	}
	mustApply(command.CreateService{Service: api.Service{ID: "s2", Name: "extra", Spec: api.ServiceSpec{Name: "extra", Replicas: 1}}})
	before := l.r.LastIndex()

	f, err := snapshotfile.Read(&file, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := snapshotfile.PlanRestore(f, l.store.Snapshot(), false)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.r.RestoreSnapshot(ctx, plan); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.nodes {
		waitFor(t, n.id+" restored", func() bool {
			_, err := n.store.ServiceByName("extra")
			return errors.Is(err, consensus.ErrNotFound) && n.store.Index() > before
		})
		if _, err := n.store.ServiceByName("web"); err != nil {
			t.Fatalf("%s: web missing: %v", n.id, err)
		}
		if len(n.store.Nodes()) != 3 {
			t.Fatalf("%s: %d nodes", n.id, len(n.store.Nodes()))
		}
		// Replicas count as caught up again (node's reconciler waits for
		// this before it removes containers of tasks it does not know).
		waitFor(t, n.id+" store caught up with its log", n.r.CaughtUp)
	}
	// The cluster goes on: writes after the restore get later versions.
	mustApply(command.CreateService{Service: api.Service{ID: "s3", Name: "after", Spec: api.ServiceSpec{Name: "after", Replicas: 1}}})
	s, err := l.store.ServiceByName("after")
	if err != nil || s.Version <= before {
		t.Fatalf("after restore: %+v %v", s, err)
	}
	// A follower refuses to restore.
	for _, n := range c.nodes {
		if n != l {
			if err := n.r.RestoreSnapshot(ctx, plan); !errors.Is(err, consensus.ErrNotLeader) {
				t.Fatalf("follower restore: %v", err)
			}
			break
		}
	}
}

// restoreChildEnv marks the child process of
// TestRaftRestoreRefusesUnloadableState.
const restoreChildEnv = "SHOAL_RAFTNODE_RESTORE_CHILD"

// TestRaftRestoreRefusesUnloadableState: a backup file edited to hold a
// row the store refuses, its sha256 recomputed (a checksum, not a
// signature), passes Read and PlanRestore. RestoreSnapshot refuses it with
// nothing changed; the leader goes on and restarts on its data dir.
// Before, raft saved it as the newest snapshot and panicked the leader
// when the FSM refused it, and the restarted node failed to load it.
//
// The body runs in a child process: raft's panic is in its own goroutine,
// where no test can recover it, and it would end the package's whole run.
func TestRaftRestoreRefusesUnloadableState(t *testing.T) {
	if os.Getenv(restoreChildEnv) == "1" {
		restoreUnloadable(t)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestRaftRestoreRefusesUnloadableState$",
		"-test.v", "-test.count=1", "-test.timeout=90s")
	cmd.Env = append(os.Environ(), restoreChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS: TestRaftRestoreRefusesUnloadableState")) {
		if i := bytes.Index(out, []byte("panic: ")); i >= 0 {
			out = out[i:min(len(out), i+2048)]
		} else if len(out) > 4096 {
			out = out[len(out)-4096:]
		}
		t.Fatalf("child process: %v\n%s", err, out)
	}
}

func restoreUnloadable(t *testing.T) {
	c := newRaftCluster(t, 1)
	n := c.nodes[0]
	l := c.form()
	ctx := context.Background()
	if _, err := l.r.Apply(ctx, command.CreateService{Service: api.Service{ID: "s1", Name: "web", Spec: api.ServiceSpec{Name: "web", Replicas: 1}}}); err != nil {
		t.Fatal(err)
	}
	var saved bytes.Buffer
	if _, err := snapshotfile.Write(l.store.Snapshot(), &saved, t0); err != nil {
		t.Fatal(err)
	}
	// Rows PlanRestore passes on as they are, so that the store is what
	// refuses them.
	cases := []struct {
		name string
		edit func(*consensus.SnapshotData)
	}{
		{"a secret without a name", func(d *consensus.SnapshotData) {
			d.Secrets = append(d.Secrets, &consensus.Secret{ID: "x1", CreatedAt: t0})
		}},
		{"a task without an ID", func(d *consensus.SnapshotData) {
			d.Tasks = append(d.Tasks, &api.Task{ServiceID: "s1", Slot: 1, NodeID: n.id, DesiredState: api.TaskRunning, CreatedAt: t0})
		}},
	}
	for _, tc := range cases {
		before := l.store.Index()
		f, err := snapshotfile.Read(bytes.NewReader(editSnapshotFile(t, saved.Bytes(), tc.edit)), 1<<20)
		if err != nil {
			t.Fatalf("%s: read: %v", tc.name, err)
		}
		plan, err := snapshotfile.PlanRestore(f, l.store.Snapshot(), false)
		if err != nil {
			t.Fatalf("%s: plan: %v (this test needs a plan only the store refuses)", tc.name, err)
		}
		err = l.r.RestoreSnapshot(ctx, plan)
		if !errors.Is(err, consensus.ErrInvalid) || !strings.Contains(err.Error(), "nothing changed") {
			t.Fatalf("%s: restore: %v, want a refusal wrapping ErrInvalid", tc.name, err)
		}
		t.Logf("%s: %v", tc.name, err)
		if l.store.Index() != before {
			t.Fatalf("%s: refused, but the store moved from index %d to %d", tc.name, before, l.store.Index())
		}
		// raft saved no snapshot (it saves a user snapshot before its FSM
		// loads it; nothing here has taken one).
		if snaps, err := os.ReadDir(filepath.Join(n.dir, "raft", "snapshots")); err != nil || len(snaps) != 0 {
			t.Fatalf("%s: refused, but the snapshot dir holds %v (%v)", tc.name, snaps, err)
		}
		if _, err := l.store.ServiceByName("web"); err != nil {
			t.Fatalf("%s: web after the refusal: %v", tc.name, err)
		}
	}
	// The leader goes on, and starts again on its data dir.
	if _, err := l.r.Apply(ctx, command.CreateService{Service: api.Service{ID: "s2", Name: "after", Spec: api.ServiceSpec{Name: "after", Replicas: 1}}}); err != nil {
		t.Fatalf("write after the refusals: %v", err)
	}
	if err := l.r.Snapshot(); err != nil {
		t.Fatal(err)
	}
	c.stop(n)
	c.start(n, false)
	c.leader(n)
	waitFor(t, "replay after restart", func() bool {
		_, err := n.store.ServiceByName("after")
		return err == nil
	})
	if _, err := n.store.ServiceByName("web"); err != nil {
		t.Fatalf("web after restart: %v", err)
	}
}

// editSnapshotFile returns file with its body changed by edit and the
// header's size and sha256 recomputed, as anyone who edits a backup can.
func editSnapshotFile(t *testing.T, file []byte, edit func(*consensus.SnapshotData)) []byte {
	t.Helper()
	parts := bytes.SplitN(file, []byte("\n"), 3)
	if len(parts) != 3 {
		t.Fatal("not a snapshot file")
	}
	var h snapshotfile.Header
	if err := json.Unmarshal(parts[1], &h); err != nil {
		t.Fatal(err)
	}
	var body consensus.SnapshotData
	if err := json.Unmarshal(parts[2], &body); err != nil {
		t.Fatal(err)
	}
	edit(&body)
	nb, err := json.Marshal(&body)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(nb)
	h.Size, h.SHA256 = int64(len(nb)), hex.EncodeToString(sum[:])
	hl, err := json.Marshal(&h)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Join([][]byte{parts[0], hl, nb}, []byte("\n"))
}
