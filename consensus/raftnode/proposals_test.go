package raftnode

import (
	"context"
	"testing"
	"time"
)

// TestProposalGateWaitEndsWithContext: a proposal waiting for a restore
// gives up when its context ends, holding nothing; a restore waits for the
// proposals under way and keeps new ones out meanwhile.
func TestProposalGateWaitEndsWithContext(t *testing.T) {
	var g proposalGate
	w1, err := g.shared(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan func(), 1)
	go func() {
		release, err := g.exclusive(context.Background())
		if err != nil {
			t.Error(err)
		}
		got <- release
	}()
	waitClosed(t, &g)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := g.shared(ctx); err == nil {
		t.Fatal("a proposal entered while a restore waited")
	}
	select {
	case <-got:
		t.Fatal("the restore went ahead of the proposal under way")
	default:
	}
	w1()
	release := <-got
	release()
	w2, err := g.shared(context.Background())
	if err != nil {
		t.Fatalf("a proposal after the restore: %v", err)
	}
	w2()
	if g.holders != 0 || g.waiting != 0 || g.closed != nil {
		t.Fatalf("gate left %+v", &g)
	}
}

func waitClosed(t *testing.T, g *proposalGate) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		g.mu.Lock()
		closed := g.closed != nil
		g.mu.Unlock()
		if closed {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the restore never closed the gate")
		}
		time.Sleep(time.Millisecond) // polling the gate; no event to wait on
	}
}

// TestHoldProposalsNests: under a paused gate, the restore's own proposals
// and holds (its marked context) go through instead of waiting for
// themselves; a hold's nested hold and Apply do not wait for a restore
// that waits for the outer hold; another Raft's mark does not count.
func TestHoldProposalsNests(t *testing.T) {
	var r, other Raft
	pctx, release, err := r.PauseProposals(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !r.holds(pctx) || other.holds(pctx) {
		t.Fatal("the paused context is not marked for its Raft only")
	}
	if _, rel, err := r.HoldProposals(pctx); err != nil {
		t.Fatalf("a hold under the pause's own context: %v", err)
	} else {
		rel()
	}
	short, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, _, err := r.HoldProposals(short); err == nil {
		t.Fatal("a hold entered while paused")
	}
	release()

	hctx, hrel, err := r.HoldProposals(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	paused := make(chan func(), 1)
	go func() {
		_, rel, err := r.PauseProposals(context.Background())
		if err != nil {
			t.Error(err)
		}
		paused <- rel
	}()
	waitClosed(t, &r.proposals)
	if _, rel, err := r.HoldProposals(hctx); err != nil {
		t.Fatalf("a nested hold waited for the restore that waits for it: %v", err)
	} else {
		rel()
	}
	hrel()
	(<-paused)()
	if r.proposals.holders != 0 || r.proposals.closed != nil {
		t.Fatalf("gate left %+v", &r.proposals)
	}
}
