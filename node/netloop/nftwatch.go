package netloop

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

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
	// rcvBuf is the socket's receive buffer (nftWatchBuffer; tests make
	// it overflow).
	rcvBuf int

	checkedGen uint64
	checkedAt  time.Time
	checked    bool
}

func newNFTWatch() *nftWatch { return &nftWatch{kick: make(chan struct{}, 1), rcvBuf: nftWatchBuffer} }

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
// ~200 KiB) the announcements of a 5,000-rule transaction overflowed it
// (TestNFTWatchSurvivesABurst). An overflow loses announcements, so the
// watch then counts a deletion (the next pass checks), but a buffer that
// holds the burst keeps that check for real deletions. The memory is the
// kernel's, taken only while announcements wait to be read.
const nftWatchBuffer = 16 << 20

// nftReadBuffer takes one datagram of the group: the kernel packs a
// transaction's announcements into datagrams of at most a netlink page
// (NLMSG_GOODSIZE, 8 KiB at most).
const nftReadBuffer = 64 << 10

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
// can no longer be read.
//
// Why raw datagrams and not google/nftables' monitor: the kernel announces
// every rule of every transaction to the group, and the monitor decoded
// each one (rule, expressions, allocations). While load balancer syncs
// still replaced the whole table, that was about a tenth of the agent's
// CPU during a scale-up of 40 tasks on 3 nodes. Only the type in each
// message's header matters here, so the watch reads the datagrams into
// one buffer and walks the headers (nftDeletion).
func (w *nftWatch) watch(ctx context.Context) error {
	f, err := nftGroupSocket(w.rcvBuf)
	if err != nil {
		return err
	}
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("nftables watch socket: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = f.SetReadDeadline(time.Now()) })
	defer stop()
	// From here on no deletion goes unseen; one announced before is
	// covered by a check the loop makes on the next pass.
	w.live.Store(true)
	w.deleted()
	buf := make([]byte, nftReadBuffer)
	for {
		var n int
		var rerr error
		if err := rc.Read(func(fd uintptr) bool {
			n, _, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
			return rerr != unix.EAGAIN && rerr != unix.EINTR
		}); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("nftables watch: %w", err)
		}
		switch {
		case rerr == unix.ENOBUFS:
			// Announcements were dropped, a deletion among them perhaps:
			// check. The socket goes on with the next ones.
			w.deleted()
		case rerr != nil:
			return fmt.Errorf("nftables watch: read: %w", rerr)
		case nftDeletion(buf[:n]):
			w.deleted()
		}
	}
}

// nftGroupSocket opens a netlink socket in the namespace of the calling
// thread, subscribed to the nftables announcements, with a receive buffer
// of rcvBuf bytes (SO_RCVBUFFORCE: past rmem_max, the agent runs as root),
// as a pollable file.
func nftGroupSocket(rcvBuf int) (*os.File, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("nftables watch socket: %w", err)
	}
	f := os.NewFile(uintptr(fd), "nftables-watch")
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvBuf); err != nil {
		f.Close()
		return nil, fmt.Errorf("nftables watch socket: receive buffer of %d bytes: %w", rcvBuf, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		f.Close()
		return nil, fmt.Errorf("nftables watch socket: bind: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, unix.NFNLGRP_NFTABLES); err != nil {
		f.Close()
		return nil, fmt.Errorf("subscribe to nftables deletions: %w", err)
	}
	return f, nil
}

// nftDeletion reports whether a datagram of the nftables group announces
// the deletion of a table, a chain or a set: what lb.Intact and the
// guards' check look at. The kernel packs several announcements into one
// datagram, so every message header in it is read. A datagram that does
// not parse counts as a deletion: the check it causes is cheap, a missed
// deletion is not.
func nftDeletion(b []byte) bool {
	for len(b) > 0 {
		if len(b) < unix.NLMSG_HDRLEN {
			return true
		}
		l := int(binary.NativeEndian.Uint32(b[0:4]))
		if l < unix.NLMSG_HDRLEN || l > len(b) {
			return true
		}
		typ := binary.NativeEndian.Uint16(b[4:6])
		if typ>>8 == unix.NFNL_SUBSYS_NFTABLES {
			switch typ & 0xff {
			case unix.NFT_MSG_DELTABLE, unix.NFT_MSG_DELCHAIN, unix.NFT_MSG_DELSET:
				return true
			}
		}
		l = (l + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1)
		if l >= len(b) {
			return false
		}
		b = b[l:]
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
