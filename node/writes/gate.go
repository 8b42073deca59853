package writes

// The write gate. A restore merges the snapshot file with the leader's
// state as it is after a barrier (PlanRestore over Store.Snapshot) and
// installs the result with raft's user-snapshot restore, which replaces
// the state whole. restoreMu kept restores from overlapping, but nothing
// kept writes out: a service create or scale, a join, committed between
// the snapshot and the install was acknowledged to its client and then
// erased by the restore. Now every write of the leader's write path holds
// the gate shared while it proposes and applies, and a restore holds it
// alone from its barrier until the restored state is installed; a write
// that arrives meanwhile waits for it (bounded by its context) and is
// applied after the restore, or, when its context ends first, refused
// with nothing applied.

import (
	"context"
	"fmt"
	"sync"

	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/consensus/raftnode"
)

// writeGate is the process's gate: the agent builds a Writer per call, and
// one process leads at most one cluster.
var writeGate gate

// gate is a read-write lock whose waits end with a context; a restore
// waiting for it keeps new writes out (it is not starved by a stream of
// writes).
type gate struct {
	mu      sync.Mutex
	writes  int           // writes holding the gate
	waiting int           // writes waiting for a restore to let go
	closed  chan struct{} // non-nil while a restore holds or waits for the gate; closed when it lets go
	drained chan struct{} // closed when writes falls to 0 while a restore waits
}

// errRestoring wraps the end of a write's wait for a restore.
const errRestoring = "a snapshot restore is under way, the write was not applied"

// write takes the gate shared, waiting while a restore holds it or until
// ctx ends, and returns its release, which must be called once.
func (g *gate) write(ctx context.Context) (release func(), err error) {
	for {
		g.mu.Lock()
		if g.closed == nil {
			g.writes++
			g.mu.Unlock()
			return g.doneWrite, nil
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

func (g *gate) doneWrite() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.writes--; g.writes == 0 && g.drained != nil {
		close(g.drained)
		g.drained = nil
	}
}

// restore takes the gate alone: new writes wait from now, and it returns
// once the writes holding it are done (or ctx ends: then nothing is
// held). The caller runs one restore at a time (restoreMu).
func (g *gate) restore(ctx context.Context) (release func(), err error) {
	g.mu.Lock()
	g.closed = make(chan struct{})
	var wait chan struct{}
	if g.writes > 0 {
		g.drained = make(chan struct{})
		wait = g.drained
	}
	g.mu.Unlock()
	if wait != nil {
		select {
		case <-wait:
		case <-ctx.Done():
			g.open()
			return nil, fmt.Errorf("wait for the writes under way: %w", ctx.Err())
		}
	}
	return g.open, nil
}

// open lets writes in again.
func (g *gate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.drained = nil
	if g.closed != nil {
		close(g.closed)
		g.closed = nil
	}
}

// gatedApply is raft's Apply under the write gate.
func gatedApply(ctx context.Context, r *raftnode.Raft, cmd command.Command) (any, error) {
	release, err := writeGate.write(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	return r.Apply(ctx, cmd)
}

// GatedRaft is raftnode.Raft whose Apply holds the write gate: the leader's
// writes outside this package (a join's record, node/joining) are not
// erased by a restore either.
type GatedRaft struct{ *raftnode.Raft }

// Apply proposes cmd under the write gate.
func (r GatedRaft) Apply(ctx context.Context, cmd command.Command) (any, error) {
	return gatedApply(ctx, r.Raft, cmd)
}

// waiters is how many writes wait for a restore.
func (g *gate) waiters() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.waiting
}
