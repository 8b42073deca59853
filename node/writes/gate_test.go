package writes

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/consensus/snapshotfile"
)

// TestWriteRacingRestoreNotLost: a write that arrives while a restore is
// between its plan and its install is applied after the restore (or
// refused), never acknowledged and then erased. Before the write gate, a
// service created there was acknowledged and gone once the restore was
// installed.
func TestWriteRacingRestoreNotLost(t *testing.T) {
	l := newTestLeader(t)
	ctx := context.Background()
	l.must(t, command.CreateService{Service: api.Service{ID: "s1", Name: "web", Spec: api.ServiceSpec{Name: "web", Image: "busybox", Replicas: 1}}})
	var file bytes.Buffer
	if _, err := snapshotfile.Write(l.store.Snapshot(), &file, time.Now()); err != nil {
		t.Fatal(err)
	}
	f, err := snapshotfile.Read(bytes.NewReader(file.Bytes()), int64(file.Len()))
	if err != nil {
		t.Fatal(err)
	}
	late := command.CreateService{Service: api.Service{ID: "s2", Name: "late", Spec: api.ServiceSpec{Name: "late", Image: "busybox", Replicas: 1}}}
	type result struct{ err error }
	done := make(chan result, 1)
	restorePlanned = func() {
		go func() {
			_, err := l.ApplyLocal(ctx, encode(t, late))
			done <- result{err}
		}()
		// Wait until the write either waits at the gate or finished
		// (without a gate it is applied here, before the install).
		deadline := time.Now().Add(10 * time.Second)
		for writeGate.waiters() == 0 && len(done) == 0 {
			if time.Now().After(deadline) {
				t.Error("the write neither waited nor finished")
				return
			}
			time.Sleep(time.Millisecond) // polling the gate; no event to wait on
		}
	}
	t.Cleanup(func() { restorePlanned = nil })
	if _, err := l.RestoreAsLeader(ctx, f, true, "leader"); err != nil {
		t.Fatalf("restore: %v", err)
	}
	restorePlanned = nil
	var r result
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the write never finished")
	}
	_, gone := l.store.Service("s2")
	switch {
	case r.err == nil && gone != nil:
		t.Fatalf("the write was acknowledged and the restore erased it: %v", gone)
	case r.err != nil && gone == nil:
		t.Fatalf("the write was refused (%v) but applied", r.err)
	case r.err != nil:
		t.Logf("the write was refused: %v", r.err)
	}
}

// TestGateWaitEndsWithContext: a write waiting for a restore gives up when
// its context ends, holding nothing; a restore waits for the writes under
// way and keeps new ones out meanwhile.
func TestGateWaitEndsWithContext(t *testing.T) {
	var g gate
	w1, err := g.write(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan func(), 1)
	go func() {
		release, err := g.restore(context.Background())
		if err != nil {
			t.Error(err)
		}
		got <- release
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		g.mu.Lock()
		closed := g.closed != nil
		g.mu.Unlock()
		if closed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the restore never closed the gate")
		}
		time.Sleep(time.Millisecond) // polling the gate; no event to wait on
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := g.write(ctx); err == nil {
		t.Fatal("a write entered while a restore waited")
	}
	select {
	case <-got:
		t.Fatal("the restore went ahead of the write under way")
	default:
	}
	w1()
	release := <-got
	release()
	w2, err := g.write(context.Background())
	if err != nil {
		t.Fatalf("a write after the restore: %v", err)
	}
	w2()
	if g.writes != 0 || g.waiting != 0 || g.closed != nil {
		t.Fatalf("gate left %+v", &g)
	}
}
