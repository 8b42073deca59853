// Package lb is a node's load balancer: service VIPs and published ports
// (the routing mesh) programmed in one nftables table. The embedded DNS
// server answering service names is lb/dns; this package only keeps a
// published port 53 off its address (State.DNS) and never imports it.
//
// The agent runs one LB per node in the node's network namespace and calls
// Set with the complete desired State whenever services, tasks or the
// membership change; each Set is one atomic nftables transaction. The rule
// set and why it looks the way it does are in README.md; it follows the
// hand-proven recipe in notes/dataplane-recipe.md (variant D).
package lb

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"

	"github.com/google/nftables"
	"github.com/shoal-org/shoal/api"
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
	// tableUse is what the kernel counts in the table (its chains and
	// sets) as the last Set left it; 0 when unknown. Intact compares the
	// kernel's table with it.
	tableUse uint32
	// programmed is the rule set the kernel holds, as the last Set left
	// it; nil when unknown (before the first Set, after a failed one, or
	// once Intact found the table changed), and the next Set then
	// replaces the table whole instead of changing it in place (delta.go).
	programmed *ruleset
	// useExtra is what the kernel counted in the table beyond its chains
	// and sets after the last whole replacement (0 on the kernels seen),
	// so that an in-place Set can tell tableUse without asking.
	useExtra int64
	// wholeSets counts the Sets that replaced the table whole (tests).
	wholeSets int
	closed    bool
	// ctIncomplete: the last conntrack cleanup left entries it should
	// have deleted (a dump the kernel interrupted, a failed delete), so
	// the next Set sweeps as after a restart (conntrackPlan with prev
	// nil) rather than only the difference, which would forget them.
	ctIncomplete bool
	// ctDelete deletes the conntrack entries filters match (tests fake
	// it); nil is the kernel's table in the LB's namespace.
	ctDelete func(filters []netlink.CustomConntrackFilter) (uint, error)
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
// Set again with the same st changes nothing. The table is changed in
// place when it can be (delta.go), else replaced whole; either way in one
// transaction. On any other error the previous rule set stays in force
// and the next Set replaces the table whole.
// After the rules are in, conntrack entries of UDP flows that the new rules
// would not make are deleted: to backends that are gone, and to VIPs and
// published ports new here but not on their backends (conntrackPlan; TCP
// flows end on their own, a stale UDP entry would keep a client's
// datagrams off the backends for as long as it sends). The first Set of
// an LB (an agent restart) checks every VIP and published UDP port this
// way, and so does the Set after an incomplete cleanup (sweepConntrack).
// Set does not keep st.
func (l *LB) Set(st State) error {
	st, skipped := st.resolve()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	rs := compile(l.cfg, st)
	if err := l.program(rs); err != nil {
		return fmt.Errorf("program nftables table %s: %w", l.cfg.TableName, err)
	}
	prev := l.applied
	snap := st.clone()
	l.applied = &snap
	l.sweepConntrack(prev, snap)
	l.log.Debug("rules synced", "services", len(st.Services), "chains", len(rs.chains), "rules", len(rs.rules))
	if len(skipped) > 0 {
		return fmt.Errorf("program nftables table %s: %d part(s) of the state left out, the rest programmed: %w",
			l.cfg.TableName, len(skipped), errors.Join(skipped...))
	}
	return nil
}

// program makes the kernel's table rs: in place when the table holds
// what this LB programmed last and the change allows it, else whole. An
// in-place change that fails (the kernel's table is not what the LB
// thinks) is followed at once by a whole replacement. l.mu must be held.
func (l *LB) program(rs *ruleset) error {
	if l.programmed != nil {
		if d, ok := diff(l.programmed, rs); ok {
			err := l.applyDelta(rs, &d)
			if err == nil {
				l.programmed = rs
				l.tableUse = uint32(int64(len(rs.chains)+len(rs.sets)) + l.useExtra)
				return nil
			}
			l.log.Debug("in-place change of the table failed; replacing it whole", "err", err)
		}
	}
	l.programmed, l.tableUse = nil, 0
	l.wholeSets++
	if err := l.apply(rs); err != nil {
		return err
	}
	l.programmed = rs
	if t, err := l.listTable(); err == nil && t != nil {
		l.tableUse = tableUse(t)
		l.useExtra = int64(l.tableUse) - int64(len(rs.chains)+len(rs.sets))
	}
	return nil
}

// tableUse is the count of objects in t. The kernel sends it in network
// byte order and google/nftables (v0.3.0) decodes it in the host's, so it
// is turned back here: an in-place Set predicts the count (chains and
// sets) and Intact compares the two.
func tableUse(t *nftables.Table) uint32 {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], t.Use)
	return binary.BigEndian.Uint32(b[:])
}

// applyDelta sends d as one batch; an empty delta sends nothing.
func (l *LB) applyDelta(rs *ruleset, d *delta) error {
	if d.empty() {
		return nil
	}
	c, err := l.conn(rs.bufferSize())
	if err != nil {
		return err
	}
	if err := d.queue(c); err != nil {
		return err
	}
	return c.Flush()
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

// Intact reports whether the kernel still holds the table the last Set
// programmed, with as many chains and sets: not so when someone else
// deleted it or a chain of it (`nft flush ruleset`, which an nftables
// service's restart and some firewall managers' reloads run, or an admin's
// `nft delete table ip shoal`). The table is rebuilt only by a Set, and
// the caller calls Set only when the state changes: without this check a
// flushed rule set left the node without VIPs, published ports, egress
// masquerade and network isolation until the next change of any service.
// It is one netlink request, cheap enough for every pass of a periodic
// loop. Before the first Set (nothing programmed by this LB) it reports
// false; rules changed inside an intact chain are not seen. After a false
// answer the next Set replaces the table whole, since the LB no longer
// knows what the kernel holds.
func (l *LB) Intact() (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false, ErrClosed
	}
	if l.applied == nil {
		return false, nil
	}
	t, err := l.listTable()
	if err != nil {
		return false, fmt.Errorf("list nftables table %s: %w", l.cfg.TableName, err)
	}
	intact := t != nil && (l.tableUse == 0 || tableUse(t) == l.tableUse)
	if !intact {
		l.programmed = nil // the next Set replaces the table whole
	}
	return intact, nil
}

// listTable returns the LB's table as the kernel lists it, nil when there
// is none. l.mu must be held.
func (l *LB) listTable() (*nftables.Table, error) {
	c, err := l.conn(0)
	if err != nil {
		return nil, err
	}
	t, err := c.ListTableOfFamily(l.cfg.TableName, nftables.TableFamilyIPv4)
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	return t, err
}

// conn returns a netlink connection to nftables in the LB's namespace whose
// receive and send buffers hold bufSize bytes each (0: the kernel's
// defaults, for a small request). With the kernel's
// default buffers (net.core.rmem_default, 212992 bytes) a batch of a few
// dozen services fills the receive buffer with acks and echoes: the kernel
// commits the batch but Flush reports ENOBUFS. A few hundred services make
// the batch itself larger than the send buffer, and sendmsg fails with
// EMSGSIZE before anything is programmed.
func (l *LB) conn(bufSize int) (*nftables.Conn, error) {
	var opts []nftables.ConnOption
	if bufSize > 0 { // 0: a small request, the kernel's default buffers
		opts = append(opts, nftables.WithSockOptions(sockBuffers[nftables.SockOption](bufSize)))
	}
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
		l.programmed = nil
		if ferr := c.Flush(); ferr != nil {
			err = fmt.Errorf("delete nftables table %s: %w", l.cfg.TableName, ferr)
		}
	}
	return errors.Join(err, l.closeLocked())
}

// ctPlan lists the UDP flows whose conntrack entries must go: those whose
// reply comes from a backend no service uses any more, and those to a VIP
// or a published port of this node that do not reach one of its live
// backends (stale). A UDP flow's entry outlives the rules that made it: one
// that reached a port before it was published here, or a VIP before it had
// backends, records "no DNAT" and bypasses the new backends for as long as
// the client keeps sending; one DNATed to a backend that is gone keeps
// sending to it.
type ctPlan struct {
	deadBackends []net.IP
	stale        staleFlows
}

// staleFlows matches the UDP conntrack entries of the VIPs and published
// ports it names that are not on one of their live backends: the reply
// does not come from a live backend's address and port. Entries on a live
// backend are left alone, so no flow is moved that need not be.
type staleFlows struct {
	vips  map[string]liveBackends // by VIP
	ports map[uint16]liveBackends // by published UDP port
	// dns is the embedded DNS server's address: its port 53 is never a
	// published port (compile).
	dns net.IP
	// local are the addresses published ports answer on (Config.NodeIPs,
	// or the namespace's addresses but loopback). flushConntrack fills it
	// in; an entry to another address on a published port's number is
	// someone else's flow.
	local map[string]bool
	// backends, when set (after a restart), are every live backend: a
	// DNATed entry (its reply does not come from the address it was sent
	// to) whose reply comes from none of them is stale too, whatever VIP
	// or port it was sent to (a service removed while no agent ran).
	backends map[string]bool
}

// liveBackends are the addresses a VIP or published port DNATs to, and the
// port: the target port of a published port, 0 for a VIP (port kept).
type liveBackends struct {
	ips    map[string]bool
	target uint16
}

func (s staleFlows) empty() bool { return len(s.vips)+len(s.ports) == 0 && s.backends == nil }

// MatchConntrackFlow implements netlink.CustomConntrackFilter.
func (s staleFlows) MatchConntrackFlow(f *netlink.ConntrackFlow) bool {
	if f.Forward.Protocol != unix.IPPROTO_UDP {
		return false
	}
	if s.backends != nil && !f.Forward.DstIP.Equal(f.Reverse.SrcIP) && !s.backends[f.Reverse.SrcIP.String()] {
		return true
	}
	dst := f.Forward.DstIP.String()
	live, ok := s.vips[dst]
	if !ok {
		if live, ok = s.ports[f.Forward.DstPort]; !ok || !s.local[dst] ||
			(f.Forward.DstPort == 53 && f.Forward.DstIP.Equal(s.dns)) {
			return false
		}
	}
	port := live.target
	if port == 0 {
		port = f.Forward.DstPort
	}
	return !live.ips[f.Reverse.SrcIP.String()] || f.Reverse.SrcPort != port
}

// conntrackPlan computes what to flush after a switch from prev to next
// (prev nil: the first Set of this LB, after an agent restart; the kernel
// may hold any rule set's entries):
//
//   - UDP flows to backends no service uses any more; after a restart,
//     when the backends of before are unknown, every DNATed UDP flow
//     whose reply comes from no live backend;
//   - UDP flows to the VIPs and published UDP ports that DNAT here in next
//     but did not, or DNATed for another service or to another target, in
//     prev, and are not on one of their live backends; after a restart,
//     the same for every VIP and published UDP port of next, which also
//     catches the flows of backends removed while no agent ran.
//
// It is pure; flushConntrack applies it.
func conntrackPlan(prev *State, next State) ctPlan {
	p := ctPlan{stale: staleFlows{vips: map[string]liveBackends{}, ports: map[uint16]liveBackends{}, dns: next.DNS}}
	nextVIPs, nextPorts := dnatTargets(next)
	live := map[string]bool{}
	for _, s := range next.Services {
		for _, b := range s.Backends {
			live[b.IP.String()] = true
		}
	}
	if prev == nil {
		for vip, d := range nextVIPs {
			p.stale.vips[vip] = d.live
		}
		for port, d := range nextPorts {
			p.stale.ports[port] = d.live
		}
		p.stale.backends = live
		return p
	}
	seen := map[string]bool{}
	for _, s := range prev.Services {
		for _, b := range s.Backends {
			if k := b.IP.String(); !live[k] && !seen[k] {
				seen[k] = true
				p.deadBackends = append(p.deadBackends, b.IP)
			}
		}
	}
	prevVIPs, prevPorts := dnatTargets(*prev)
	for vip, d := range nextVIPs {
		if prevVIPs[vip].owner != d.owner {
			p.stale.vips[vip] = d.live
		}
	}
	for port, d := range nextPorts {
		if prevPorts[port].owner != d.owner {
			p.stale.ports[port] = d.live
		}
	}
	return p
}

// dnatTarget is where a VIP or published port DNATs on this node: owner
// names the service, the mode and the target port, live the backends.
type dnatTarget struct {
	owner string
	live  liveBackends
}

// dnatTargets lists the VIPs and published UDP ports st DNATs on this
// node (those with backends here: for a host-mode port, local ones).
func dnatTargets(st State) (vips map[string]dnatTarget, udpPorts map[uint16]dnatTarget) {
	vips, udpPorts = map[string]dnatTarget{}, map[uint16]dnatTarget{}
	set := func(bs []Backend, localOnly bool) map[string]bool {
		m := map[string]bool{}
		for _, b := range bs {
			if b.Local || !localOnly {
				m[b.IP.String()] = true
			}
		}
		return m
	}
	for _, s := range st.Services {
		if len(s.Backends) == 0 {
			continue
		}
		if s.VIP != nil {
			vips[s.VIP.String()] = dnatTarget{owner: s.Name, live: liveBackends{ips: set(s.Backends, false)}}
		}
		for _, p := range s.Ports {
			if protoName(p.Protocol) != "udp" {
				continue
			}
			ips := set(s.Backends, p.Mode == api.PublishHost)
			if len(ips) == 0 {
				continue // host mode without a local task: not published here
			}
			udpPorts[uint16(p.Published)] = dnatTarget{
				owner: fmt.Sprintf("%s %s %d", s.Name, p.Mode, p.Target),
				live:  liveBackends{ips: ips, target: uint16(p.Target)},
			}
		}
	}
	return vips, udpPorts
}

// ctAttempts is how many times flushConntrack runs a cleanup the kernel
// interrupted (the conntrack table changed during the dump, as it does on
// a busy host: the dump is then partial) before it gives up until the next
// Set.
const ctAttempts = 3

// sweepConntrack deletes the UDP flows that the switch from prev to next
// leaves stale (conntrackPlan). After an incomplete cleanup the difference
// is not enough (the entries it missed are in no later difference: a dead
// backend's flows would keep a client's datagrams for as long as it sends),
// so the sweep is the full one of a restart until one completes. The
// caller holds mu.
func (l *LB) sweepConntrack(prev *State, next State) {
	if l.ctIncomplete {
		prev = nil
	}
	err := l.flushConntrack(conntrackPlan(prev, next))
	l.ctIncomplete = err != nil
	if err != nil {
		l.log.Warn("conntrack cleanup incomplete; the next sync sweeps every UDP flow again", "err", err)
	}
}

func (l *LB) flushConntrack(p ctPlan) error {
	if len(p.deadBackends) == 0 && p.stale.empty() {
		return nil
	}
	var local map[string]bool
	var errs error
	if len(p.stale.ports) > 0 {
		var err error
		if local, err = l.publishedAddrs(); err != nil {
			errs = errors.Join(errs, err) // VIPs only, then
		}
	}
	filters, err := p.filters(local)
	errs = errors.Join(errs, err)
	del := l.ctDelete
	if del == nil {
		h, err := l.netlinkHandle(unix.NETLINK_NETFILTER)
		if err != nil {
			return errors.Join(errs, err)
		}
		defer h.Close()
		del = func(filters []netlink.CustomConntrackFilter) (uint, error) {
			return h.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, filters...)
		}
	}
	// An interrupted dump still deleted what it listed; the entries it
	// missed need another pass.
	var n uint
	for attempt := 1; ; attempt++ {
		deleted, err := del(filters)
		n += deleted
		if err == nil {
			break
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) || attempt == ctAttempts {
			errs = errors.Join(errs, fmt.Errorf("delete conntrack entries: %w", err))
			break
		}
	}
	l.log.Debug("conntrack entries deleted", "count", n, "dead_backends", len(p.deadBackends),
		"vips", len(p.stale.vips), "udp_ports", len(p.stale.ports))
	return errs
}

// filters are the conntrack filters of p, published ports answering on
// the addresses local.
func (p ctPlan) filters(local map[string]bool) ([]netlink.CustomConntrackFilter, error) {
	var filters []netlink.CustomConntrackFilter
	var errs error
	for _, ip := range p.deadBackends {
		f := &netlink.ConntrackFilter{}
		if err := errors.Join(f.AddProtocol(unix.IPPROTO_UDP), f.AddIP(netlink.ConntrackReplySrcIP, ip)); err != nil {
			errs = errors.Join(errs, err)
			continue
		}
		filters = append(filters, f)
	}
	if !p.stale.empty() {
		p.stale.local = local
		filters = append(filters, p.stale)
	}
	return filters, errs
}

// publishedAddrs are the addresses published ports answer on:
// Config.NodeIPs, or every address of the namespace but loopback.
func (l *LB) publishedAddrs() (map[string]bool, error) {
	out := map[string]bool{}
	if len(l.cfg.NodeIPs) > 0 {
		for _, ip := range l.cfg.NodeIPs {
			out[ip.String()] = true
		}
		return out, nil
	}
	h, err := l.netlinkHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return out, err
	}
	defer h.Close()
	addrs, err := h.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return out, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if !a.IP.IsLoopback() {
			out[a.IP.String()] = true
		}
	}
	return out, nil
}

func (l *LB) netlinkHandle(family int) (*netlink.Handle, error) {
	if l.nsFile == nil {
		h, err := netlink.NewHandle(family)
		if err != nil {
			return nil, fmt.Errorf("netlink handle: %w", err)
		}
		return h, nil
	}
	h, err := netlink.NewHandleAt(netns.NsHandle(l.nsFile.Fd()), family)
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
	out.PeerPorts = append([]int(nil), st.PeerPorts...)
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
