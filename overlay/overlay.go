// Package overlay connects the containers of all nodes with a routed VXLAN
// overlay (the flannel "vxlan" scheme): per node a bridge holding the node's
// subnet, a VXLAN device, and per peer a static route, neighbour and FDB
// entry programmed with netlink. It also plugs containers into the bridge
// (Attach/Detach, satisfying runtime.Network) and hands out their addresses
// from the node's subnet, persisted across agent restarts.
//
// One Overlay runs per node, inside the node's network namespace. See
// peers.go for why the scheme looks the way it does, and README.md.
package overlay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/overlay/guard"
	"github.com/shoal-org/shoal/overlay/ipam"
	"github.com/shoal-org/shoal/overlay/linkutil"
	"github.com/shoal-org/shoal/overlay/meshreturn"
)

// Overlay is one node's share of the overlay network. Its methods are safe
// for concurrent use; they serialise on one mutex (netlink calls are short).
type Overlay struct {
	cfg Config
	mac net.HardwareAddr // own VTEP MAC
	// bridgeMAC is fixed too: a bridge without an explicit MAC takes the
	// lowest MAC of its ports, so it would change as containers come and go
	// (and on re-creation), leaving the containers' neighbour entry for their
	// gateway stale.
	bridgeMAC net.HardwareAddr
	bridge    netip.Prefix // bridge address with the subnet's length (.1/24)
	ipam      *ipam.Allocator
	ns        netns.NsHandle // the programmed namespace, or -1 for the current one
	h         *netlink.Handle
	guard     *guard.Table // the container ports' anti-spoofing table
	// guardNS is the namespace New ran in, held for the guard when
	// Config.NetNS is empty (New says why); -1 otherwise.
	guardNS netns.NsHandle

	// mu guards the fields below and the devices. Attach and Detach take
	// it shared (attach.go): each touches only its own container's veth
	// and the ipam (its own lock), so container starts plug in parallel.
	mu    sync.RWMutex
	setUp bool        // Setup succeeded once: the devices exist
	mtu   int         // effective MTU, known after Setup
	peers []peerEntry // desired peers, re-applied by every Setup
	// synced: the kernel holds peers as of the last full apply or diff
	// without error, so the next SetPeers may program only the difference.
	synced bool
}

// New validates cfg, loads the address allocations from cfg.StateDir and
// opens a netlink handle on the namespace to program. It changes nothing on
// the host; call Setup next. Close releases the handle. An allocation file
// it cannot use is set aside, and the allocations are read off the veths
// of the containers attached (recover.go).
func New(cfg Config) (*Overlay, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	first, _ := u32Range(cfg.Subnet)
	o := &Overlay{
		cfg:       cfg,
		mac:       VTEPMACFor(cfg.NodeID, cfg.VNI),
		bridgeMAC: bridgeMAC(cfg.NodeID, cfg.VNI),
		bridge:    netip.PrefixFrom(first, cfg.Subnet.Bits()),
		ns:        netns.None(),
		guardNS:   netns.None(),
	}
	var err error
	if o.ipam, err = ipam.Open(cfg.StateDir, cfg.Subnet); err != nil {
		return nil, fmt.Errorf("open address allocations: %w", err)
	}
	if cfg.NetNS != "" {
		if o.ns, err = netns.GetFromPath(cfg.NetNS); err != nil {
			return nil, fmt.Errorf("open network namespace %s: %w", cfg.NetNS, err)
		}
		o.h, err = netlink.NewHandleAt(o.ns)
	} else {
		o.h, err = netlink.NewHandle()
	}
	if err != nil {
		o.closeNS()
		return nil, fmt.Errorf("open netlink handle: %w", err)
	}
	guardNS := o.ns
	if cfg.NetNS == "" {
		// The netlink handle above holds sockets of the namespace New
		// runs in, but the guard dials nftables at each sync, and the
		// netlink library opens that socket on a locked goroutine of its
		// own, on whatever thread the runtime gives it. In the agent
		// every thread is in one namespace; a caller that entered a
		// namespace on a locked thread (the netloop tests) had the guard
		// table land in the root namespace. So the guard is pinned to
		// this thread's namespace now.
		if o.guardNS, err = netns.Get(); err != nil {
			o.h.Close()
			return nil, fmt.Errorf("open this thread's network namespace: %w", err)
		}
		guardNS = o.guardNS
	}
	o.guard = guard.New(guard.Config{Bridge: cfg.BridgeName, NetNS: guardNS, Ports: o.guardPortsLocked, Logger: cfg.Logger})
	if why := o.ipam.Recovered(); why != nil {
		// Containers may be running: their addresses must not be handed
		// out again (recover.go).
		o.cfg.Logger.Warn("overlay: address allocations lost", "err", why)
		o.restoreAllocations()
	}
	return o, nil
}

// bridgeMAC derives the bridge's MAC from the node ID (and the VNI, for
// networks other than the default one).
func bridgeMAC(nodeID string, vni int) net.HardwareAddr {
	if vni == DefaultVNI {
		return derivedMAC("shoal-bridge:" + nodeID)
	}
	return derivedMAC(fmt.Sprintf("shoal-bridge:%s:%d", nodeID, vni))
}

// u32Range returns the first host address (.1) of subnet and the network
// address (.0).
func u32Range(subnet netip.Prefix) (first, network netip.Addr) {
	network = subnet.Masked().Addr()
	return network.Next(), network
}

// BridgeIP is the bridge's address (the subnet's .1): the containers' default
// gateway and where the node's embedded DNS server listens.
func (o *Overlay) BridgeIP() net.IP { return net.IP(o.bridge.Addr().AsSlice()) }

// Subnet is this node's subnet.
func (o *Overlay) Subnet() netip.Prefix { return o.cfg.Subnet }

// VTEPMAC is the MAC of this node's VXLAN device (VTEPMAC(cfg.NodeID)).
func (o *Overlay) VTEPMAC() net.HardwareAddr { return append(net.HardwareAddr(nil), o.mac...) }

// MTU is the MTU of the overlay devices and container veths; 0 before the
// first successful Setup when Config.MTU is 0.
func (o *Overlay) MTU() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.mtu
}

// Setup creates or adopts the bridge and the VXLAN device, fixing any drift
// (wrong type, VNI, port, underlay, MTU, MAC or addresses), brings them up,
// sets the sysctls the data plane needs, re-applies the peers and rebuilds
// the anti-spoofing table of the container ports (overlay/guard). It is
// idempotent and cheap when nothing drifted; Run calls it again whenever the
// kernel removed something. ctx bounds nothing long: it is checked between
// steps.
func (o *Overlay) Setup(ctx context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.setupLocked(ctx)
}

func (o *Overlay) setupLocked(ctx context.Context) error {
	if o.h == nil {
		return fmt.Errorf("setup: %w", ErrClosed)
	}
	if o.cfg.Routed {
		return o.setupRoutedLocked(ctx) // wireguard_routed.go
	}
	under, err := o.underlayLink()
	if err != nil {
		return err
	}
	mtu := o.cfg.MTU
	if mtu == 0 {
		mtu = under.Attrs().MTU - vxlanOverhead
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := o.ensureBridge(mtu); err != nil {
		return err
	}
	if err := o.ensureVXLAN(under, mtu); err != nil {
		return err
	}
	if err := o.setSysctls(); err != nil {
		return err
	}
	o.mtu = mtu
	o.setUp = true
	errs := o.applyPeersLocked()
	o.synced = len(errs) == 0
	links, listErr := o.h.LinkList()
	o.pruneAllocationsLocked(links, listErr)
	// The guard before the veths go back into the bridge: a port carries
	// nothing but its container's own frames from the moment it is in.
	if err := o.guard.Sync(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, o.reattachVethsLocked(links, listErr)...)
	if len(errs) > 0 {
		return fmt.Errorf("setup: %w: %w", ErrPartial, errors.Join(errs...))
	}
	return nil
}

// reattachVethsLocked puts the host veths of the containers holding an
// address back into the bridge, with the hairpin flag (a bridge port's,
// lost with the port) and up: a bridge deleted underneath comes back
// empty from ensureBridge, and only Attach enslaves a veth, so running
// containers stayed cut off. A veth whose alias names another container
// (a name prefix collision, attach.go) is not touched; one that is gone
// belongs to a container the agent detaches. links and listErr are the
// namespace's link dump (one per Setup, shared with
// pruneAllocationsLocked). o.mu must be held.
func (o *Overlay) reattachVethsLocked(links []netlink.Link, listErr error) []error {
	attached := o.ipam.All()
	if len(attached) == 0 {
		return nil
	}
	br, err := o.h.LinkByName(o.cfg.BridgeName)
	if err != nil {
		return []error{fmt.Errorf("find bridge %s: %w", o.cfg.BridgeName, err)}
	}
	if listErr != nil && !errors.Is(listErr, netlink.ErrDumpInterrupted) {
		return []error{fmt.Errorf("list links: %w", listErr)}
	}
	byName := make(map[string]netlink.Link, len(links))
	for _, l := range links {
		byName[l.Attrs().Name] = l
	}
	var errs []error
	for _, id := range ipam.SortedIDs(attached) {
		name := vethName(o.cfg.VethPrefix, id)
		l, ok := byName[name]
		if !ok || l.Attrs().Alias != id || l.Attrs().MasterIndex == br.Attrs().Index {
			continue
		}
		if err := o.h.LinkSetMasterByIndex(l, br.Attrs().Index); err != nil {
			errs = append(errs, fmt.Errorf("container %s: attach %s to %s again: %w", id, name, o.cfg.BridgeName, err))
			continue
		}
		if err := o.h.LinkSetHairpin(l, true); err != nil {
			errs = append(errs, fmt.Errorf("container %s: set hairpin on %s: %w", id, name, err))
		}
		if err := o.h.LinkSetUp(l); err != nil {
			errs = append(errs, fmt.Errorf("container %s: bring %s up: %w", id, name, err))
		}
		o.cfg.Logger.Info("overlay: container veth back in the bridge", "container", id, "device", name, "bridge", o.cfg.BridgeName)
	}
	return errs
}

// underlayLink finds the link that carries cfg.UnderlayIP.
func (o *Overlay) underlayLink() (netlink.Link, error) {
	addrs, err := o.h.AddrList(nil, netlink.FAMILY_V4)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	want := net.IP(o.cfg.UnderlayIP.AsSlice())
	for _, a := range addrs {
		if a.IP.Equal(want) {
			l, err := o.h.LinkByIndex(a.LinkIndex)
			if err != nil {
				return nil, fmt.Errorf("find underlay link %d: %w", a.LinkIndex, err)
			}
			return l, nil
		}
	}
	return nil, fmt.Errorf("%w: %s", ErrNoUnderlay, o.cfg.UnderlayIP)
}

// ensureBridge creates or adopts the bridge with the subnet's .1.
func (o *Overlay) ensureBridge(mtu int) error {
	name := o.cfg.BridgeName
	l, err := o.h.LinkByName(name)
	if err == nil && l.Type() != "bridge" {
		o.cfg.Logger.Warn("overlay: replacing a non-bridge device that has the bridge's name", "device", name, "type", l.Type())
		if err := o.h.LinkDel(l); err != nil {
			return fmt.Errorf("delete device %s of type %s: %w", name, l.Type(), err)
		}
		l, err = nil, netlink.LinkNotFoundError{}
	}
	if errors.As(err, &netlink.LinkNotFoundError{}) {
		attrs := netlink.NewLinkAttrs()
		attrs.Name, attrs.MTU, attrs.HardwareAddr = name, mtu, o.bridgeMAC
		if err := o.h.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
			return fmt.Errorf("create bridge %s: %w", name, err)
		}
		o.cfg.Logger.Info("overlay: created bridge", "device", name, "mtu", mtu)
		l, err = o.h.LinkByName(name)
	}
	if err != nil {
		return fmt.Errorf("find bridge %s: %w", name, err)
	}
	if l.Attrs().MTU != mtu {
		if err := o.h.LinkSetMTU(l, mtu); err != nil {
			return fmt.Errorf("set MTU %d on %s: %w", mtu, name, err)
		}
	}
	if l.Attrs().HardwareAddr.String() != o.bridgeMAC.String() {
		if err := o.h.LinkSetHardwareAddr(l, o.bridgeMAC); err != nil {
			return fmt.Errorf("set MAC %s on %s: %w", o.bridgeMAC, name, err)
		}
	}
	if err := linkutil.EnsureAddr(o.h, l, o.bridge); err != nil {
		return err
	}
	if err := o.h.LinkSetUp(l); err != nil {
		return fmt.Errorf("bring %s up: %w", name, err)
	}
	return nil
}

// ensureVXLAN creates or adopts the VXLAN device; a device whose identity
// (type, VNI, port, local address, underlay link, learning) drifted is
// re-created.
func (o *Overlay) ensureVXLAN(under netlink.Link, mtu int) error {
	name := o.cfg.VXLANName
	want := o.vxlanSpec(under, mtu)
	l, err := o.h.LinkByName(name)
	if err == nil {
		if why := vxlanDrift(l, want); why != "" {
			o.cfg.Logger.Warn("overlay: re-creating the VXLAN device", "device", name, "reason", why)
			if err := o.h.LinkDel(l); err != nil {
				return fmt.Errorf("delete drifted VXLAN device %s: %w", name, err)
			}
			err = netlink.LinkNotFoundError{}
		}
	}
	if errors.As(err, &netlink.LinkNotFoundError{}) {
		if err := o.h.LinkAdd(want); err != nil {
			return fmt.Errorf("create VXLAN device %s: %w", name, err)
		}
		o.cfg.Logger.Info("overlay: created VXLAN device", "device", name, "vni", o.cfg.VNI,
			"local", o.cfg.UnderlayIP, "mac", o.mac.String(), "mtu", mtu)
		l, err = o.h.LinkByName(name)
	}
	if err != nil {
		return fmt.Errorf("find VXLAN device %s: %w", name, err)
	}
	if l.Attrs().MTU != mtu {
		if err := o.h.LinkSetMTU(l, mtu); err != nil {
			return fmt.Errorf("set MTU %d on %s: %w", mtu, name, err)
		}
	}
	if l.Attrs().HardwareAddr.String() != o.mac.String() {
		// Changing the MAC of a running device is refused by some drivers.
		if err := o.h.LinkSetDown(l); err != nil {
			return fmt.Errorf("bring %s down to change its MAC: %w", name, err)
		}
		if err := o.h.LinkSetHardwareAddr(l, o.mac); err != nil {
			return fmt.Errorf("set MAC %s on %s: %w", o.mac, name, err)
		}
	}
	_, network := u32Range(o.cfg.Subnet)
	if err := linkutil.EnsureAddr(o.h, l, netip.PrefixFrom(network, 32)); err != nil {
		return err
	}
	if err := o.h.LinkSetUp(l); err != nil {
		return fmt.Errorf("bring %s up: %w", name, err)
	}
	return nil
}

// vxlanSpec is the VXLAN device Setup wants.
func (o *Overlay) vxlanSpec(under netlink.Link, mtu int) *netlink.Vxlan {
	attrs := netlink.NewLinkAttrs()
	attrs.Name, attrs.MTU, attrs.HardwareAddr = o.cfg.VXLANName, mtu, o.mac
	return &netlink.Vxlan{
		LinkAttrs:    attrs,
		VxlanId:      o.cfg.VNI,
		VtepDevIndex: under.Attrs().Index,
		SrcAddr:      net.IP(o.cfg.UnderlayIP.AsSlice()),
		Port:         o.cfg.Port,
		Learning:     false,
	}
}

// vxlanDrift says why an existing device cannot be adopted as want, or "".
func vxlanDrift(l netlink.Link, want *netlink.Vxlan) string {
	have, ok := l.(*netlink.Vxlan)
	switch {
	case !ok:
		return "device type is " + l.Type()
	case have.VxlanId != want.VxlanId:
		return fmt.Sprintf("VNI %d, want %d", have.VxlanId, want.VxlanId)
	case have.Port != want.Port:
		return fmt.Sprintf("port %d, want %d", have.Port, want.Port)
	case !have.SrcAddr.Equal(want.SrcAddr):
		return fmt.Sprintf("local %s, want %s", have.SrcAddr, want.SrcAddr)
	case have.VtepDevIndex != want.VtepDevIndex:
		return fmt.Sprintf("underlay link %d, want %d", have.VtepDevIndex, want.VtepDevIndex)
	case have.Learning:
		return "learning is on"
	case have.Group != nil && !have.Group.IsUnspecified():
		return "has a default remote " + have.Group.String()
	}
	return ""
}

// setSysctls enables forwarding in the programmed namespace (the node routes
// between its bridge and the VXLAN device) and keeps a strict reverse-path
// filter from dropping mesh connections on the VXLAN device
// (overlay/meshreturn).
func (o *Overlay) setSysctls() error {
	return o.inNS(func() error {
		if err := linkutil.WriteSysctl("net/ipv4/ip_forward", "1"); err != nil {
			return err
		}
		return meshreturn.LooseRPFilter(o.cfg.VXLANName)
	})
}

// RepairGuard makes the anti-spoofing table again when someone else
// deleted it (guard.Table.Intact), and reports whether it did. Setup does
// too, but only every ResyncInterval: after an `nft flush ruleset` every
// container could forge its source for up to 30 s. The caller runs it on
// its every pass.
func (o *Overlay) RepairGuard() (repaired bool, err error) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	if o.h == nil || !o.setUp {
		return false, nil
	}
	if ok, err := o.guard.Intact(); err == nil && ok {
		return false, nil
	}
	if err := o.guard.Sync(); err != nil {
		return false, err
	}
	return true, nil
}

// Run keeps the devices and peer entries in place until ctx ends: it
// re-runs Setup (which re-applies the peers) when netlink reports that one
// of our devices, its addresses or its routes went away, and every
// ResyncInterval. Failures are logged and retried; a broken netlink
// subscription is re-opened (followed by a full re-apply, as events may have
// been missed). Run blocks and returns nil when ctx ends.
func (o *Overlay) Run(ctx context.Context) error {
	for {
		err := o.watch(ctx)
		if ctx.Err() != nil {
			return nil
		}
		o.cfg.Logger.Warn("overlay: netlink watch ended; restarting", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// errWatchEnded: a netlink subscription closed its channel.
var errWatchEnded = errors.New("netlink subscription ended")

// drain reads ch until it is closed.
func drain[T any](ch <-chan T) {
	for range ch {
	}
}

// watch subscribes to link, address and route updates of the programmed
// namespace and re-applies the state on relevant ones until ctx ends or a
// subscription breaks. The subscriptions' goroutines stop when watch
// returns (done is closed).
func (o *Overlay) watch(ctx context.Context) error {
	done := make(chan struct{})
	// Container starts create veths in bursts (link, address and route
	// events for each), and a re-apply below holds this loop for a while:
	// the sockets' buffers (rcvbuf, forced) hold the burst meanwhile, so
	// the kernel does not drop our subscription with ENOBUFS under a
	// scale-up. The channels only pass each parsed message from the
	// library's reader to this loop, which costs a map lookup per event,
	// and a full one makes the reader wait with the rest in its socket.
	// They were 1024 deep: 0.5 MiB per network per agent (a RouteUpdate is
	// 384 bytes), held for good and scanned by every GC cycle.
	const depth = 64
	linkCh := make(chan netlink.LinkUpdate, depth)
	addrCh := make(chan netlink.AddrUpdate, depth)
	routeCh := make(chan netlink.RouteUpdate, depth)
	// The library's goroutines send with a bare `ch <- update`: one whose
	// channel is full when we stop reading would block for good (one per
	// watch restart, buffer and all). So after done, each started
	// subscription's channel is drained until the library closes it.
	var drains []func()
	defer func() {
		close(done)
		for _, d := range drains {
			go d()
		}
	}()
	const rcvbuf = 4 << 20
	var nsOpt *netns.NsHandle
	if o.cfg.NetNS != "" {
		nsOpt = &o.ns
	}
	logErr := func(err error) {
		select {
		case <-done: // the socket was closed on purpose
		default:
			o.cfg.Logger.Warn("overlay: netlink subscription", "err", err)
		}
	}
	if err := netlink.LinkSubscribeWithOptions(linkCh, done, netlink.LinkSubscribeOptions{Namespace: nsOpt, ErrorCallback: logErr, ReceiveBufferSize: rcvbuf, ReceiveBufferForceSize: true}); err != nil {
		return fmt.Errorf("subscribe to link updates: %w", err)
	}
	drains = append(drains, func() { drain(linkCh) })
	if err := netlink.AddrSubscribeWithOptions(addrCh, done, netlink.AddrSubscribeOptions{Namespace: nsOpt, ErrorCallback: logErr, ReceiveBufferSize: rcvbuf, ReceiveBufferForceSize: true}); err != nil {
		return fmt.Errorf("subscribe to address updates: %w", err)
	}
	drains = append(drains, func() { drain(addrCh) })
	if err := netlink.RouteSubscribeWithOptions(routeCh, done, netlink.RouteSubscribeOptions{Namespace: nsOpt, ErrorCallback: logErr, ReceiveBufferSize: rcvbuf, ReceiveBufferForceSize: true}); err != nil {
		return fmt.Errorf("subscribe to route updates: %w", err)
	}
	drains = append(drains, func() { drain(routeCh) })

	var resync <-chan time.Time
	if o.cfg.ResyncInterval > 0 {
		ticks := o.cfg.ResyncTicks
		if ticks == nil {
			ticks = func(d time.Duration) (<-chan time.Time, func()) {
				t := time.NewTicker(d)
				return t.C, t.Stop
			}
		}
		var stop func()
		resync, stop = ticks(o.cfg.ResyncInterval)
		defer stop()
	}
	// Coalesce bursts (a deleted device removes many routes at once). The
	// first pass runs right away: events before the subscription were missed.
	const debounce = 100 * time.Millisecond
	kick := time.NewTimer(0)
	defer kick.Stop()
	pending := true
	// Our devices' indexes, refreshed after every re-apply: address and
	// route events of container veths are many, and must not each cost
	// netlink lookups under the lock Attach needs.
	own := o.ownIndexes()
	trigger := func(why string) {
		if !pending {
			o.cfg.Logger.Debug("overlay: re-applying", "reason", why)
			pending = true
			kick.Reset(debounce)
		}
	}
	apply := func() {
		if err := o.Setup(ctx); err != nil && ctx.Err() == nil {
			o.cfg.Logger.Warn("overlay: re-apply failed; will retry", "err", err)
			pending = true
			kick.Reset(time.Second)
		}
		own = o.ownIndexes()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-linkCh:
			if !ok {
				return fmt.Errorf("links: %w", errWatchEnded)
			}
			if o.ownLink(u.Attrs().Name) && (u.Header.Type == unix.RTM_DELLINK || u.IfInfomsg.Flags&unix.IFF_UP == 0) {
				trigger("link " + u.Attrs().Name + " deleted or down")
			}
		case u, ok := <-addrCh:
			if !ok {
				return fmt.Errorf("addresses: %w", errWatchEnded)
			}
			if !u.NewAddr && own[u.LinkIndex] {
				trigger("address removed")
			}
		case u, ok := <-routeCh:
			if !ok {
				return fmt.Errorf("routes: %w", errWatchEnded)
			}
			if u.Type == unix.RTM_DELROUTE && own[u.LinkIndex] {
				trigger("route removed")
			}
		case <-resync:
			// No burst to coalesce: re-apply in this wake-up rather than
			// a debounce later (one wake-up, not two). A pending re-apply
			// covers it.
			if !pending {
				o.cfg.Logger.Debug("overlay: re-applying", "reason", "periodic resync")
				apply()
			}
		case <-kick.C:
			pending = false
			apply()
		}
	}
}

func (o *Overlay) ownLink(name string) bool {
	return name == o.cfg.BridgeName || name == o.cfg.VXLANName
}

// ownIndexes returns the interface indexes of the bridge and the VXLAN
// device (those that exist).
func (o *Overlay) ownIndexes() map[int]bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := map[int]bool{}
	if o.h == nil {
		return out
	}
	for _, name := range []string{o.cfg.BridgeName, o.cfg.VXLANName} {
		if l, err := o.h.LinkByName(name); err == nil {
			out[l.Attrs().Index] = true
		}
	}
	return out
}

// Teardown removes everything the overlay created: container veths it knows
// of, the anti-spoofing table, the VXLAN device (and with it the peer
// entries), the bridge and the address allocations. For `shoal leave`; the
// Overlay must not be used afterwards except for Close. Errors of
// independent steps are joined.
func (o *Overlay) Teardown() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.h == nil {
		return fmt.Errorf("teardown: %w", ErrClosed)
	}
	var errs []error
	if err := meshreturn.Delete(o.h, o.cfg.BridgeName); err != nil {
		errs = append(errs, err)
	}
	for _, id := range ipam.SortedIDs(o.ipam.All()) {
		if err := o.deleteVethLocked(id); err != nil {
			errs = append(errs, err)
		}
	}
	if err := o.guard.Delete(); err != nil {
		errs = append(errs, err)
	}
	owned := []string{o.cfg.VXLANName, o.cfg.BridgeName}
	if o.cfg.Routed { // not ours: only our routes and address on it go
		errs = append(errs, o.teardownRoutedLocked()...)
		owned = owned[1:]
	}
	for _, name := range owned {
		l, err := o.h.LinkByName(name)
		if errors.As(err, &netlink.LinkNotFoundError{}) {
			continue
		}
		if err == nil {
			err = o.h.LinkDel(l)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("delete %s: %w", name, err))
		}
	}
	if err := o.ipam.Remove(); err != nil {
		errs = append(errs, err)
	}
	o.setUp, o.synced = false, false
	o.peers = nil
	return errors.Join(errs...)
}

// Close releases the netlink handle and namespace handle; call it after Run
// has returned. It changes nothing on the host: containers keep their network
// across agent restarts. Later calls of other methods return ErrClosed.
func (o *Overlay) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.h != nil {
		o.h.Close()
		o.h = nil
	}
	o.setUp, o.synced = false, false
	o.closeNS()
	return nil
}

func (o *Overlay) closeNS() {
	if o.ns.IsOpen() {
		_ = o.ns.Close()
		o.ns = netns.None()
	}
	if o.guardNS.IsOpen() {
		_ = o.guardNS.Close()
		o.guardNS = netns.None()
	}
}
