package netloop

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Why a watch: the load balancer's and the anti-spoofing guards' nftables
// tables are made again only when someone else deletes them (`nft flush
// ruleset`, which an nftables service's restart and some firewall
// managers' reloads run). The loop used to ask the kernel on every pass
// whether each table was still whole (lb.Intact, overlay.RepairGuard):
// two or more netlink dumps every 2 s, a socket opened and closed for
// each, on every idle node — about a fifth of an idle agent's wake-ups.
// Only a deletion of a table, a chain or a set can break what those checks
// look at, and the kernel announces each one on its nftables multicast
// group. So the loop subscribes, and checks only after one was announced
// (its own deletions included: a needless check costs one request), on
// its first pass, and every nftFallback in case an announcement was lost.
// While the subscription is down it checks on every pass, as before. A
// deletion also wakes the loop at once: the tables come back within
// milliseconds instead of at the next pass.

// nftFallback is how often the tables are checked without any deletion
// announced.
const nftFallback = time.Minute

// nftRetry is how long the watch waits before it subscribes again after
// its subscription failed or ended.
const nftRetry = 5 * time.Second

// nftWatch counts the deletions the kernel announced. Its own goroutine
// (run) writes gen and live; the loop's goroutine reads them (due) and
// owns checkedGen and checkedAt (done).
type nftWatch struct {
	gen  atomic.Uint64
	live atomic.Bool
	// ended counts the subscriptions that ended on an error (tests).
	ended atomic.Uint64
	// kick (one slot) wakes the loop after a deletion.
	kick chan struct{}

	checkedGen uint64
	checkedAt  time.Time
	checked    bool
}

func newNFTWatch() *nftWatch { return &nftWatch{kick: make(chan struct{}, 1)} }

// nftCheckDue decides whether a pass checks the tables: on the first pass,
// while the subscription is down, after a deletion it has not checked
// since (gen moved), and once nftFallback has passed since the last check.
func nftCheckDue(checked, live bool, gen, checkedGen uint64, sinceCheck time.Duration) bool {
	return !checked || !live || gen != checkedGen || sinceCheck >= nftFallback
}

// nftWatchBuffer is the receive buffer of the watch's socket. Why: the
// kernel announces every object of a transaction to the group at commit,
// all at once, and the load balancer's sync of a large cluster is one
// transaction of thousands of rules. With the default buffer (rmem_default,
// ~200 KiB) the announcements of a 5,000-rule transaction were dropped and
// the watch ended on ENOBUFS (TestNFTWatchSurvivesABurst), leaving the
// loop blind for nftRetry. The memory is the kernel's, taken only while
// announcements wait to be read.
const nftWatchBuffer = 16 << 20

// forceReadBuffer sets a netlink socket's receive buffer to size past
// rmem_max (SO_RCVBUFFORCE: the agent runs as root), as the overlay's
// netlink subscriptions do.
func forceReadBuffer(size int) nftables.SockOption {
	return func(c *netlink.Conn) error {
		rc, err := c.SyscallConn()
		if err != nil {
			return fmt.Errorf("nftables watch socket: %w", err)
		}
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size)
		}); err != nil {
			return fmt.Errorf("nftables watch socket: %w", err)
		}
		if serr != nil {
			return fmt.Errorf("nftables watch socket: receive buffer of %d bytes: %w", size, serr)
		}
		return nil
	}
}

// due reports whether this pass checks the tables, and the count of
// deletions the check will cover (for done).
func (w *nftWatch) due(now time.Time) (uint64, bool) {
	g := w.gen.Load()
	return g, nftCheckDue(w.checked, w.live.Load(), g, w.checkedGen, now.Sub(w.checkedAt))
}

// done records a check that covered the deletions up to gen. A deletion
// announced during the check moved gen past it: the next pass checks again.
func (w *nftWatch) done(gen uint64, now time.Time) {
	w.checked, w.checkedGen, w.checkedAt = true, gen, now
}

// run subscribes to the kernel's nftables announcements of this network
// namespace until ctx ends, subscribing again nftRetry after a failure.
func (w *nftWatch) run(ctx context.Context, log *slog.Logger) {
	for {
		err := w.watch(ctx)
		w.live.Store(false)
		if ctx.Err() != nil {
			return
		}
		w.ended.Add(1)
		log.Warn("nftables watch ended; checking the tables on every pass until it is back", "err", err, "in", nftRetry)
		select {
		case <-ctx.Done():
			return
		case <-time.After(nftRetry):
		}
	}
}

// watch is one subscription: it returns when the kernel's announcements
// can no longer be trusted to be complete (an error, the monitor closed).
func (w *nftWatch) watch(ctx context.Context) error {
	c, err := nftables.New(nftables.WithSockOptions(forceReadBuffer(nftWatchBuffer)))
	if err != nil {
		return fmt.Errorf("nftables connection: %w", err)
	}
	// Every action and object: google/nftables v0.3.0 tests its filter as
	// flags&1<<type, which Go reads as (flags&1)<<type, so a filter
	// without new tables in it lets nothing through. The deletions are
	// picked out below (nftDeletion).
	mon := nftables.NewMonitor(nftables.WithMonitorEventBuffer(16))
	events, err := c.AddGenerationalMonitor(mon)
	if err != nil {
		return fmt.Errorf("subscribe to nftables deletions: %w", err)
	}
	defer func() {
		_ = mon.Close()
		go func() { // its reader may still be sending; it then closes events
			for range events {
			}
		}()
	}()
	// From here on no deletion goes unseen; one announced before is
	// covered by a check the loop makes on the next pass.
	w.live.Store(true)
	w.deleted()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				return fmt.Errorf("nftables monitor closed")
			}
			if ev.GeneratedBy != nil && ev.GeneratedBy.Error != nil {
				return fmt.Errorf("nftables monitor: %w", ev.GeneratedBy.Error)
			}
			if nftDeletion(ev.Changes) {
				w.deleted()
			}
		}
	}
}

// nftDeletion reports whether a transaction's changes delete a table, a
// chain or a set: what lb.Intact and the guards' check look at.
func nftDeletion(changes []*nftables.MonitorEvent) bool {
	for _, c := range changes {
		switch c.Type {
		case nftables.MonitorEventTypeDelTable, nftables.MonitorEventTypeDelChain, nftables.MonitorEventTypeDelSet:
			return true
		}
	}
	return false
}

// deleted counts a deletion and wakes the loop.
func (w *nftWatch) deleted() {
	w.gen.Add(1)
	select {
	case w.kick <- struct{}{}:
	default:
	}
}
