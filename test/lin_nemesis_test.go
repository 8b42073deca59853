package test

// The nemesis of the linearizability test and the chaos soak: one fault at
// a time, held for a while, then healed. Faults are those of DESIGN.md
// (kill a host: SIGKILL + link cut; partition; restart) plus agent restarts,
// link blips and SIGSTOP pauses of the agent process. It runs beside the
// clients on its own goroutine and never touches a testing.TB.

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/api/client"
	"github.com/shoal-org/shoal/test/harness"
)

// Fault kinds.
const (
	faultKillLeader    = "kill-leader"        // SIGKILL + link cut of the leader, restart after the hold
	faultKill9         = "kill9"              // SIGKILL of a random agent, link up, restart after the hold
	faultIsolateLeader = "partition-leader"   // the leader alone in a minority
	faultMinority      = "partition-minority" // a random minority (1 of 3, 2 of 5) cut off
	faultRestart       = "restart"            // SIGTERM, start again at once
	faultPause         = "pause"              // SIGSTOP the agent for the hold, then SIGCONT
	faultBlip          = "blip"               // link down for about a second
)

var allFaults = []string{faultKillLeader, faultKill9, faultIsolateLeader, faultMinority, faultRestart, faultPause, faultBlip}

// nemesis injects faults into a cluster. Its counters are safe to read
// from any goroutine.
type nemesis struct {
	c      *harness.Cluster
	logf   func(format string, args ...any)
	rng    *rand.Rand
	faults []string

	epochs []atomic.Int64 // per host (Index-1): bumped when its agent dies
	active atomic.Bool    // a fault is in place

	mu       sync.Mutex
	counts   map[string]int
	errs     []string
	paused   map[*harness.Host]bool
	lastHeal time.Time
}

func newNemesis(c *harness.Cluster, seed int64, logf func(string, ...any), faults ...string) *nemesis {
	if len(faults) == 0 {
		faults = allFaults
	}
	return &nemesis{
		c: c, logf: logf, rng: rand.New(rand.NewSource(seed)), faults: faults,
		epochs: make([]atomic.Int64, len(c.Hosts())),
		counts: map[string]int{}, paused: map[*harness.Host]bool{},
	}
}

// epoch is the agent incarnation of h: reads that see it change under them
// are not compared for monotonicity.
func (n *nemesis) epoch(h *harness.Host) int { return int(n.epochs[h.Index-1].Load()) }

func (n *nemesis) bump(h *harness.Host) { n.epochs[h.Index-1].Add(1) }

// total returns the number of faults injected so far.
func (n *nemesis) total() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	t := 0
	for _, v := range n.counts {
		t += v
	}
	return t
}

// summary renders the counts: "kill-leader=2 pause=1".
func (n *nemesis) summary() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	keys := make([]string, 0, len(n.counts))
	for k := range n.counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, n.counts[k]))
	}
	return strings.Join(parts, " ")
}

// healedAt is when the last fault was healed (zero before any).
func (n *nemesis) healedAt() time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.lastHeal
}

func (n *nemesis) errorf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	n.logf("nemesis: %s", msg)
	n.mu.Lock()
	n.errs = append(n.errs, msg)
	n.mu.Unlock()
}

// run injects one fault after another until ctx ends, then heals: each
// is held for a random time in [minHold, maxHold] and followed by quiet.
// Holds longer than the agent's write timeout (10 s) make writes through
// the cut-off side end unknown.
func (n *nemesis) run(ctx context.Context, minHold, maxHold, quiet time.Duration) {
	defer n.healAll()
	for {
		if !wait(ctx, quiet) {
			return
		}
		hold := minHold + time.Duration(n.rng.Int63n(int64(maxHold-minHold)+1))
		n.round(ctx, n.faults[n.rng.Intn(len(n.faults))], hold)
	}
}

// wait sleeps for d unless ctx ends first; it reports whether ctx is live.
// The nemesis holds faults for a time on purpose: this is a schedule, not a
// wait for a condition.
func wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// round injects fault, holds it (until ctx ends at most) and heals it.
func (n *nemesis) round(ctx context.Context, fault string, hold time.Duration) {
	running := n.c.Running()
	if len(running) == 0 {
		return
	}
	leader := n.leader()
	pick := running[n.rng.Intn(len(running))]
	hosts := n.c.Hosts()
	start := time.Now()
	n.active.Store(true)
	defer n.active.Store(false)
	var what string
	switch fault {
	case faultKillLeader, faultKill9:
		h := pick
		if fault == faultKillLeader {
			if leader == nil {
				return
			}
			h = leader
		}
		n.bump(h)
		var err error
		if fault == faultKillLeader {
			err = h.Kill()
		} else {
			err = h.KillProcess()
		}
		if err != nil {
			n.errorf("%s %s: %v", fault, h.Name, err)
		}
		what = h.Name
		wait(ctx, hold)
		n.bump(h)
		if err := h.Restart(); err != nil {
			n.errorf("restart %s after %s: %v", h.Name, fault, err)
		}
	case faultIsolateLeader, faultMinority:
		var group []*harness.Host
		if fault == faultIsolateLeader {
			if leader == nil {
				return
			}
			group = []*harness.Host{leader}
		} else {
			perm := n.rng.Perm(len(hosts))
			for _, i := range perm[:(len(hosts)-1)/2] {
				group = append(group, hosts[i])
			}
		}
		if err := n.c.Partition(group...); err != nil {
			n.errorf("partition: %v", err)
		}
		what = names(group)
		wait(ctx, hold)
		if err := n.c.Heal(); err != nil {
			n.errorf("heal: %v", err)
		}
	case faultRestart:
		n.bump(pick)
		if err := pick.Restart(); err != nil {
			n.errorf("restart %s: %v", pick.Name, err)
		}
		n.bump(pick)
		what = pick.Name
	case faultPause:
		pid := pick.PID()
		if pid == 0 || !isShoal(pid) {
			return
		}
		n.mu.Lock()
		n.paused[pick] = true
		n.mu.Unlock()
		_ = syscall.Kill(pid, syscall.SIGSTOP)
		what = pick.Name
		wait(ctx, hold)
		_ = syscall.Kill(pid, syscall.SIGCONT)
		n.mu.Lock()
		delete(n.paused, pick)
		n.mu.Unlock()
	case faultBlip:
		if err := pick.CutLink(); err != nil {
			n.errorf("blip %s: %v", pick.Name, err)
		}
		what = pick.Name
		wait(ctx, time.Second)
		if err := pick.RestoreLink(); err != nil {
			n.errorf("blip %s: %v", pick.Name, err)
		}
	default:
		n.errorf("unknown fault %q", fault)
		return
	}
	n.mu.Lock()
	n.counts[fault]++
	n.lastHeal = time.Now()
	n.mu.Unlock()
	n.logf("nemesis: %s %s for %s", fault, what, time.Since(start).Round(time.Millisecond))
}

// healAll undoes every fault: partitions healed, paused agents continued,
// links restored, dead agents started. Idempotent.
func (n *nemesis) healAll() {
	_ = n.c.Heal()
	n.mu.Lock()
	for h := range n.paused {
		if pid := h.PID(); pid != 0 {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
		delete(n.paused, h)
	}
	n.mu.Unlock()
	for _, h := range n.c.Hosts() {
		if err := h.RestoreLink(); err != nil {
			n.errorf("restore link %s: %v", h.Name, err)
		}
		if !h.Running() {
			n.bump(h)
			if err := h.Start(); err != nil {
				n.errorf("start %s: %v", h.Name, err)
			}
		}
	}
	n.mu.Lock()
	n.lastHeal = time.Now()
	n.mu.Unlock()
}

// leader returns the host most running hosts name as leader, or nil.
func (n *nemesis) leader() *harness.Host {
	byID := map[string]*harness.Host{}
	votes := map[string]int{}
	for _, h := range n.c.Running() {
		st, err := hostStatus(h, 2*time.Second)
		if err != nil {
			continue
		}
		byID[st.NodeID] = h
		if st.Leader != "" {
			votes[st.Leader]++
		}
	}
	best, bestVotes := "", 0
	for id, v := range votes {
		if v > bestVotes {
			best, bestVotes = id, v
		}
	}
	return byID[best]
}

// hostStatus asks h's API for its status, bounded by d.
func hostStatus(h *harness.Host, d time.Duration) (*api.Status, error) {
	cl, err := client.New("unix://" + h.Socket)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return cl.Status(ctx)
}

// isShoal reports whether pid runs the shoal binary (the harness's agent
// command execs through unshare, nsenter and sh down to it).
func isShoal(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return err == nil && strings.TrimSpace(string(b)) == "shoal"
}

func names(hosts []*harness.Host) string {
	s := make([]string, len(hosts))
	for i, h := range hosts {
		s[i] = h.Name
	}
	return strings.Join(s, ",")
}
