// Package lb is a node's load balancer: service VIPs and published ports
// (the routing mesh) programmed in one nftables table, and an embedded DNS
// server answering service names.
//
// The agent runs one LB per node in the node's network namespace and calls
// Set with the complete desired State whenever services, tasks or the
// membership change; each Set is one atomic nftables transaction. The rule
// set and why it looks the way it does are in README.md; it follows the
// hand-proven recipe in notes/dataplane-recipe.md (variant D).
package lb

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// LB owns one nftables table in one network namespace. Its methods are safe
// for concurrent use; Set calls are serialised.
type LB struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	nsFile  *os.File // nil: current namespace
	applied *State   // last State the kernel accepted; nil before the first
	closed  bool
}

// New checks cfg, opens the namespace and prepares it (bridge netfilter
// off unless cfg.KeepBridgeNetfilter). It programs nothing: rules left by a
// previous agent keep serving traffic until the first Set replaces them.
func New(cfg Config) (*LB, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	l := &LB{cfg: cfg, log: cfg.logger().With("component", "lb", "table", cfg.TableName)}
	if cfg.NetNSPath != "" {
		f, err := os.Open(cfg.NetNSPath)
		if err != nil {
			return nil, fmt.Errorf("open netns %s: %w", cfg.NetNSPath, err)
		}
		l.nsFile = f
	}
	if !cfg.KeepBridgeNetfilter {
		// Recipe §4: with br_netfilter on, a DNAT back onto the same
		// bridge is bridged, not routed, and hairpin breaks. The sysctl
		// only exists once the br_netfilter module is loaded.
		err := l.inNS(func() error {
			return writeSysctl("/proc/sys/net/bridge/bridge-nf-call-iptables", "0")
		})
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			l.log.Warn("cannot turn bridge netfilter off; same-host VIP traffic may fail", "err", err)
		}
	}
	return l, nil
}

// Set makes the kernel's table exactly st, in one transaction. Parts of st
// that cannot be programmed (see ErrInvalidState and State's precedence
// order) are left out and everything else is programmed: Set then returns
// an error wrapping ErrInvalidState that names each part left out; calling
// Set again with the same st changes nothing. On any other error the
// previous rule set stays in force and the next Set rebuilds everything.
// After the rules are in, conntrack entries of UDP flows to backends that
// are gone are deleted (TCP flows end on their own; a stale UDP entry would
// keep sending a client's datagrams to a dead task). Set does not keep st.
func (l *LB) Set(st State) error {
	st, skipped := st.resolve()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	rs := compile(l.cfg, st)
	if err := l.apply(rs); err != nil {
		return fmt.Errorf("program nftables table %s: %w", l.cfg.TableName, err)
	}
	prev := l.applied
	snap := st.clone()
	l.applied = &snap
	if prev != nil {
		if err := l.flushConntrack(conntrackPlan(*prev, snap)); err != nil {
			l.log.Warn("conntrack cleanup incomplete", "err", err)
		}
	}
	l.log.Debug("rules synced", "services", len(st.Services), "chains", len(rs.chains), "rules", len(rs.rules))
	if len(skipped) > 0 {
		return fmt.Errorf("program nftables table %s: %d part(s) of the state left out, the rest programmed: %w",
			l.cfg.TableName, len(skipped), errors.Join(skipped...))
	}
	return nil
}

// apply replays rs as one batch: add (so the delete cannot fail on a fresh
// namespace), delete, re-add the table with everything in it. The batch
// goes out in one sendmsg and every message is answered (an ack, and each
// rule echoed back), so the socket's buffers are sized from rs.
func (l *LB) apply(rs *ruleset) error {
	c, err := l.conn(rs.bufferSize())
	if err != nil {
		return err
	}
	c.AddTable(rs.table)
	c.DelTable(rs.table)
	c.AddTable(rs.table)
	for _, ch := range rs.chains {
		c.AddChain(ch)
	}
	for _, s := range rs.sets {
		if err := c.AddSet(s.set, s.elems); err != nil {
			return fmt.Errorf("add set %s: %w", s.set.Name, err)
		}
	}
	for _, r := range rs.rules {
		c.AddRule(r)
	}
	return c.Flush()
}

// conn returns a netlink connection to nftables in the LB's namespace whose
// receive and send buffers hold bufSize bytes each. With the kernel's
// default buffers (net.core.rmem_default, 212992 bytes) a batch of a few
// dozen services fills the receive buffer with acks and echoes: the kernel
// commits the batch but Flush reports ENOBUFS. A few hundred services make
// the batch itself larger than the send buffer, and sendmsg fails with
// EMSGSIZE before anything is programmed.
func (l *LB) conn(bufSize int) (*nftables.Conn, error) {
	opts := []nftables.ConnOption{nftables.WithSockOptions(sockBuffers[nftables.SockOption](bufSize))}
	if l.nsFile != nil {
		opts = append(opts, nftables.WithNetNSFd(int(l.nsFile.Fd())))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nftables connection: %w", err)
	}
	return c, nil
}

// Socket buffers of the nftables connection: at least minSockBuffer, more
// for a batch that needs it (ruleset.bufferSize).
const (
	minSockBuffer = 16 << 20
	// msgBuffer is what one message of the batch may cost: its own bytes
	// on the way in (a few hundred), and on the way back its ack and, for a
	// rule, the echo, which the kernel allocates as a whole netlink page
	// (NLMSG_GOODSIZE) and accounts with its overhead.
	msgBuffer = 8 << 10
	// elemBuffer covers a set element's bytes in the batch.
	elemBuffer = 64
)

// bufferSize is the receive and send buffer the batch of rs needs, with a
// wide margin: the buffers are limits, not allocations.
func (rs *ruleset) bufferSize() int {
	msgs := 3 + len(rs.chains) + 2*len(rs.sets) + len(rs.rules) // table add/del/add; a set is two messages
	elems := 0
	for _, s := range rs.sets {
		elems += len(s.elems)
	}
	return max(minSockBuffer, msgs*msgBuffer+elems*elemBuffer)
}

// bufConn is what sockBuffers needs of the netlink connection nftables
// dials (mdlayher/netlink's *Conn).
type bufConn interface {
	SetReadBuffer(bytes int) error
	SetWriteBuffer(bytes int) error
	SyscallConn() (syscall.RawConn, error)
}

// sockBuffers returns the socket option (O is nftables.SockOption) that
// sets both buffers of the connection to size. It is generic only so that
// the connection's type is inferred from nftables.SockOption rather than
// named, which would make mdlayher/netlink a direct dependency of the
// module.
//
// As root (CAP_NET_ADMIN) it uses SO_RCVBUFFORCE and SO_SNDBUFFORCE, which
// ignore net.core.rmem_max and wmem_max, as nft(8) does; otherwise it asks
// for size with SO_RCVBUF and SO_SNDBUF, which the kernel caps at those
// limits.
func sockBuffers[O ~func(C) error, C bufConn](size int) O {
	return func(c C) error {
		raw, err := c.SyscallConn()
		if err != nil {
			return fmt.Errorf("netlink socket: %w", err)
		}
		for _, b := range []struct {
			force int
			set   func(int) error
			what  string
		}{
			{unix.SO_RCVBUFFORCE, c.SetReadBuffer, "receive"},
			{unix.SO_SNDBUFFORCE, c.SetWriteBuffer, "send"},
		} {
			var serr error
			if err := raw.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, b.force, size)
			}); err != nil {
				return fmt.Errorf("netlink socket: %w", err)
			}
			if serr == nil {
				continue
			}
			if err := b.set(size); err != nil {
				return fmt.Errorf("netlink %s buffer of %d bytes: %w", b.what, size, errors.Join(serr, err))
			}
		}
		return nil
	}
}

// Close releases the LB but leaves its rules in place: traffic keeps
// flowing while the agent restarts, and the next agent's first Set replaces
// them. Close is idempotent.
func (l *LB) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closeLocked()
}

func (l *LB) closeLocked() error {
	if l.closed {
		return nil
	}
	l.closed = true
	if l.nsFile != nil {
		return l.nsFile.Close()
	}
	return nil
}

// Teardown deletes the LB's table (a node leaving the cluster) and closes
// the LB. A missing table is not an error.
func (l *LB) Teardown() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	var err error
	if c, cerr := l.conn(minSockBuffer); cerr != nil {
		err = cerr
	} else {
		t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: l.cfg.TableName}
		c.AddTable(t)
		c.DelTable(t)
		if ferr := c.Flush(); ferr != nil {
			err = fmt.Errorf("delete nftables table %s: %w", l.cfg.TableName, ferr)
		}
	}
	return errors.Join(err, l.closeLocked())
}

// ctPlan lists the UDP flows whose conntrack entries must go.
type ctPlan struct {
	deadBackends []net.IP
	revivedVIPs  []net.IP
	revivedPorts []uint16
}

// conntrackPlan computes what to flush after a switch from prev to next:
// UDP flows to backends no service uses any more, and UDP flows to VIPs and
// published ports that had no backend before (their entries record "no
// DNAT" and would keep bypassing the new backends).
func conntrackPlan(prev, next State) ctPlan {
	var p ctPlan
	live := map[string]bool{}
	for _, s := range next.Services {
		for _, b := range s.Backends {
			live[b.IP.String()] = true
		}
	}
	seen := map[string]bool{}
	prevEmpty := map[string]bool{}
	for _, s := range prev.Services {
		for _, b := range s.Backends {
			if k := b.IP.String(); !live[k] && !seen[k] {
				seen[k] = true
				p.deadBackends = append(p.deadBackends, b.IP)
			}
		}
		if len(s.Backends) == 0 {
			prevEmpty[s.Name] = true
		}
	}
	for _, s := range next.Services {
		if !prevEmpty[s.Name] || len(s.Backends) == 0 {
			continue
		}
		if s.VIP != nil {
			p.revivedVIPs = append(p.revivedVIPs, s.VIP)
		}
		for _, port := range s.Ports {
			if protoName(port.Protocol) == "udp" {
				p.revivedPorts = append(p.revivedPorts, uint16(port.Published))
			}
		}
	}
	return p
}

func (l *LB) flushConntrack(p ctPlan) error {
	if len(p.deadBackends)+len(p.revivedVIPs)+len(p.revivedPorts) == 0 {
		return nil
	}
	var filters []netlink.CustomConntrackFilter
	add := func(build func(f *netlink.ConntrackFilter) error) error {
		f := &netlink.ConntrackFilter{}
		if err := f.AddProtocol(unix.IPPROTO_UDP); err != nil {
			return err
		}
		if err := build(f); err != nil {
			return err
		}
		filters = append(filters, f)
		return nil
	}
	var errs error
	for _, ip := range p.deadBackends {
		errs = errors.Join(errs, add(func(f *netlink.ConntrackFilter) error { return f.AddIP(netlink.ConntrackReplySrcIP, ip) }))
	}
	for _, ip := range p.revivedVIPs {
		errs = errors.Join(errs, add(func(f *netlink.ConntrackFilter) error { return f.AddIP(netlink.ConntrackOrigDstIP, ip) }))
	}
	for _, port := range p.revivedPorts {
		errs = errors.Join(errs, add(func(f *netlink.ConntrackFilter) error { return f.AddPort(netlink.ConntrackOrigDstPort, port) }))
	}
	h, err := l.netlinkHandle()
	if err != nil {
		return errors.Join(errs, err)
	}
	defer h.Close()
	n, err := h.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, filters...)
	if err != nil {
		errs = errors.Join(errs, fmt.Errorf("delete conntrack entries: %w", err))
	}
	l.log.Debug("conntrack entries deleted", "count", n, "dead_backends", len(p.deadBackends))
	return errs
}

func (l *LB) netlinkHandle() (*netlink.Handle, error) {
	if l.nsFile == nil {
		h, err := netlink.NewHandle(unix.NETLINK_NETFILTER)
		if err != nil {
			return nil, fmt.Errorf("netlink handle: %w", err)
		}
		return h, nil
	}
	h, err := netlink.NewHandleAt(netns.NsHandle(l.nsFile.Fd()), unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("netlink handle in %s: %w", l.cfg.NetNSPath, err)
	}
	return h, nil
}

// inNS runs fn with the calling goroutine's thread inside the LB's
// namespace (or directly when the LB uses the current one).
func (l *LB) inNS(fn func() error) error {
	if l.nsFile == nil {
		return fn()
	}
	return runInNS(l.nsFile, fn)
}

// runInNS runs fn on a locked OS thread switched into the namespace ns. If
// the thread cannot be switched back it stays locked, so Go discards it.
func runInNS(ns *os.File, fn func() error) error {
	errCh := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errCh <- fmt.Errorf("current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(netns.NsHandle(ns.Fd())); err != nil {
			runtime.UnlockOSThread()
			errCh <- fmt.Errorf("enter netns: %w", err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errCh <- errors.Join(ferr, fmt.Errorf("leave netns: %w", err)) // thread stays locked and dies
			return
		}
		runtime.UnlockOSThread()
		errCh <- ferr
	}()
	return <-errCh
}

func writeSysctl(path, value string) error {
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", path, value, err)
	}
	return nil
}

func (st State) clone() State {
	out := State{Services: make([]Service, len(st.Services)), Networks: append([]Network(nil), st.Networks...)}
	for _, ip := range st.Peers {
		out.Peers = append(out.Peers, append(net.IP(nil), ip...))
	}
	if st.Peers != nil && out.Peers == nil {
		out.Peers = []net.IP{}
	}
	if st.DNS != nil {
		out.DNS = append(net.IP(nil), st.DNS...)
	}
	for i, s := range st.Services {
		c := s
		c.VIP = append(net.IP(nil), s.VIP...)
		if s.VIP == nil {
			c.VIP = nil
		}
		c.Ports = append(c.Ports[:0:0], s.Ports...)
		c.Backends = make([]Backend, len(s.Backends))
		for j, b := range s.Backends {
			c.Backends[j] = Backend{IP: append(net.IP(nil), b.IP...), Local: b.Local}
		}
		out.Services[i] = c
	}
	return out
}
