package raftnode

// The proposal gate. A snapshot restore merges the file with the leader's
// state as it is after a barrier (snapshotfile.PlanRestore over
// Store.Snapshot) and installs the result with raft's user-snapshot
// restore, which replaces the state whole: an entry committed between the
// plan and the install is erased, and a decision made on the state before
// the restore and proposed after it lands on a state it was not made for.
// node/writes once gated only its own write path (and joins): the leader's
// loops (scheduler, node status marks, autopilot, autoscaler, gossip key
// rotation, certificate renewals...) propose through Apply directly, and a
// scheduler plan, an autoscaled replica count or a status mark committed
// in that window was erased, or a plan read before the restore created
// tasks the restored state did not ask for.
//
// So the gate is here, where every proposal passes: Apply holds it shared
// while it proposes and waits, and a restore holds it alone
// (PauseProposals) from before its barrier until the restored state is
// installed. A loop whose proposal follows from what it read holds it
// shared from the read to the last proposal (HoldProposals), so a pass
// either ends before the restore plans or reads the restored state. A
// holder's context is marked: Apply (and a nested hold) under it takes no
// second hold, which a waiting restore would otherwise block for good
// (it keeps new holders out so that a stream of proposals cannot starve
// it).

import (
	"context"
	"fmt"
	"sync"
)

// errRestoring prefixes the error of a proposal whose wait for a restore
// ended with its context: nothing was proposed.
const errRestoring = "a snapshot restore is under way, nothing was proposed"

// proposalGate is a read-write lock whose waits end with a context; a
// restore waiting for it keeps new holders out.
type proposalGate struct {
	mu      sync.Mutex
	holders int           // shared holders
	waiting int           // shared holders waiting for a restore to let go
	closed  chan struct{} // non-nil while a restore holds or waits for the gate; closed when it lets go
	drained chan struct{} // closed when holders falls to 0 while a restore waits
}

// shared takes the gate shared, waiting while a restore holds it or until
// ctx ends, and returns its release, which must be called once.
func (g *proposalGate) shared(ctx context.Context) (release func(), err error) {
	for {
		g.mu.Lock()
		if g.closed == nil {
			g.holders++
			g.mu.Unlock()
			return g.doneShared, nil
		}
		ch := g.closed
		g.waiting++
		g.mu.Unlock()
		var err error
		select {
		case <-ch:
		case <-ctx.Done():
			err = fmt.Errorf("%s: %w", errRestoring, ctx.Err())
		}
		g.mu.Lock()
		g.waiting--
		g.mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
}

func (g *proposalGate) doneShared() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.holders--; g.holders == 0 && g.drained != nil {
		close(g.drained)
		g.drained = nil
	}
}

// exclusive takes the gate alone: new holders wait from now, and it
// returns once the current ones are done (or ctx ends: then nothing is
// held). Callers run one at a time (node/writes' restoreMu).
func (g *proposalGate) exclusive(ctx context.Context) (release func(), err error) {
	g.mu.Lock()
	g.closed = make(chan struct{})
	var wait chan struct{}
	if g.holders > 0 {
		g.drained = make(chan struct{})
		wait = g.drained
	}
	g.mu.Unlock()
	if wait != nil {
		select {
		case <-wait:
		case <-ctx.Done():
			g.open()
			return nil, fmt.Errorf("wait for the proposals under way: %w", ctx.Err())
		}
	}
	return g.open, nil
}

// open lets holders in again.
func (g *proposalGate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.drained = nil
	if g.closed != nil {
		close(g.closed)
		g.closed = nil
	}
}

// waiters is how many holders wait for a restore.
func (g *proposalGate) waiters() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.waiting
}

// holdKey marks a context whose caller holds r's gate (the value is r).
type holdKey struct{}

// holds reports whether ctx is marked as holding r's gate.
func (r *Raft) holds(ctx context.Context) bool {
	h, _ := ctx.Value(holdKey{}).(*Raft)
	return h == r
}

// HoldProposals holds the proposal gate shared until release (called
// once): a restore waits for the hold to end, and a hold waits (or, when
// ctx ends first, fails with nothing held) while a restore runs. Use the
// returned context for the proposals made under the hold. Under a context
// that already holds it, it holds nothing more.
func (r *Raft) HoldProposals(ctx context.Context) (context.Context, func(), error) {
	if r.holds(ctx) {
		return ctx, func() {}, nil
	}
	release, err := r.proposals.shared(ctx)
	if err != nil {
		return nil, nil, err
	}
	return context.WithValue(ctx, holdKey{}, r), release, nil
}

// PauseProposals holds the proposal gate alone until release (called
// once): it waits for the holds under way, and every other proposal and
// hold waits until release. The restore's own proposals use the returned
// context. One at a time.
func (r *Raft) PauseProposals(ctx context.Context) (context.Context, func(), error) {
	release, err := r.proposals.exclusive(ctx)
	if err != nil {
		return nil, nil, err
	}
	return context.WithValue(ctx, holdKey{}, r), release, nil
}

// ProposalsWaiting is how many proposals and holds wait for a restore
// (tests, diagnostics).
func (r *Raft) ProposalsWaiting() int { return r.proposals.waiters() }
