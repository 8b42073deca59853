package runtime

import (
	"context"
	"sync"
	"time"
)

// startGate bounds how many `runc run` the runtime has going at once: as
// many as the machine has CPUs.
//
// Why: a container start is CPU work from end to end (runc's Go runtime
// starting twice, namespaces, some 25 mounts, cgroups, the seccomp
// compile), so a burst of starts (a scale-up, a node's tasks after a
// reboot) gets nothing from running them all at once but contention. On
// this 2-core VM, 40 `runc run -d` of Shoal's own bundles, alternating
// (runtime/README.md, "Start cost"): all at once 2.99–3.63 s and 5.6–6.8
// CPU-s; two at a time 2.58–2.91 s and 4.5–5.1 CPU-s; three 2.93–3.25 s;
// one 3.58–4.29 s (a start also waits on the kernel, so one leaves CPUs
// idle).
//
// A slot is given back when runc returns, or after stuck whatever runc
// does: a `runc run` stuck on a dead NFS mount must not hold back every
// other start on the node until the supervisor's bound on runc (minutes)
// ends it. A healthy start takes well under a second here even when 40
// are queued.
type startGate struct {
	slots chan struct{}
	stuck time.Duration
}

// startStuckAfter is how long a start may hold its slot (startGate).
const startStuckAfter = 5 * time.Second

func newStartGate(n int, stuck time.Duration) *startGate {
	return &startGate{slots: make(chan struct{}, max(n, 1)), stuck: stuck}
}

// enter waits for a slot, or for ctx to end (nothing was started then).
// leave gives the slot back; it may be called more than once.
func (g *startGate) enter(ctx context.Context) (leave func(), err error) {
	select {
	case g.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var once sync.Once
	free := func() { once.Do(func() { <-g.slots }) }
	t := time.AfterFunc(g.stuck, free)
	return func() {
		t.Stop()
		free()
	}, nil
}
