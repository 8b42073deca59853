package overlay

// Why the overlay looks like this (the flannel "vxlan" backend, L3 flavour).
//
// Every node owns one subnet of the cluster CIDR (a /24 of 10.42.0.0/16 by
// default) and is the only place where addresses of that subnet live. That
// turns cross-node container traffic into plain IP routing: node A reaches
// 10.42.7.0/24 by sending it to node 7. The VXLAN device is only the "wire"
// that carries those routed packets, so nothing has to be learned at run time
// and nothing floods:
//
//   - the device is created with `nolearning` and without a multicast group or
//     default remote: the kernel never guesses, it only uses what we program;
//   - each node's VXLAN device has the network address of its subnet as a /32
//     (10.42.7.0/32 on node 7). That address is the "gateway" of the subnet as
//     seen from the other nodes, and it gives packets the host itself sends
//     into the overlay (and the masquerade of the load balancer) a source
//     address that the remote side can route back;
//   - for every peer we install three things, all static:
//     1. a route   10.42.7.0/24 via 10.42.7.0 dev shoal.vx onlink
//     ("onlink" because 10.42.7.0 is not on any local subnet);
//     2. a permanent neighbour entry 10.42.7.0 lladdr <VTEP MAC of node 7>,
//     so the kernel never ARPs across the overlay for the gateway;
//     3. a forwarding entry <VTEP MAC of node 7> dst <underlay IP of node 7>
//     in the VXLAN device's own FDB, which tells the kernel which underlay
//     host the inner Ethernet frame must be tunnelled to.
//     A packet to 10.42.7.9 thus resolves route → gateway → MAC → underlay IP
//     without a single broadcast; node 7 decapsulates it, sees its own MAC
//     and routes the inner packet onto its bridge.
//
// The VTEP MAC is derived from the node ID (VTEPMAC) instead of being random:
// after an agent restart the re-created device has the same MAC, so neighbour
// entries other nodes still hold stay valid (stale entries pointing at a MAC
// that no longer exists were a known Docker Swarm failure), and every node can
// compute a peer's MAC from its ID alone.
//
// The kernel drops things behind our back: deleting the device's last IPv4
// address flushes its routes and its permanent neighbour entries (the FDB
// survives), and a link going down flushes its routes. So the desired peer
// set is kept in memory and Setup (run again by Run on netlink events and on
// a timer) always re-applies it.
//
// SetPeers is an idempotent desired-state sync: it first adds or replaces
// the desired entries, then deletes the entries of peers that are gone, and
// when some operations fail it carries on and returns one error naming each
// failed peer and entry (ErrPartial), so a caller can retry later. While
// the kernel is known to hold the last peer set (the previous sync fully
// succeeded) it programs only the difference (diffPeers, pure: current
// peers, desired peers → add / update / remove and the entries nobody uses
// any more); after a failure, and in every Setup, it resyncs in full
// against what the kernel lists.

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"

	"github.com/shoal-org/shoal/overlay/linkutil"
	"github.com/shoal-org/shoal/overlay/meshreturn"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Peer is another node of the overlay, as learned from gossip.
type Peer struct {
	// NodeID identifies the peer; a peer with this node's ID is ignored.
	NodeID string
	// Subnet is the peer's share of the cluster CIDR.
	Subnet netip.Prefix
	// UnderlayIP is the peer's advertise address (VXLAN packets go there).
	UnderlayIP netip.Addr
	// VTEPMAC is the MAC of the peer's VXLAN device; nil means
	// VTEPMACFor(NodeID, Config.VNI), which is what every Shoal node uses.
	VTEPMAC net.HardwareAddr
}

// VTEPMAC returns the MAC address of the VXLAN device of node nodeID: a
// locally administered unicast address derived from a SHA-256 of the ID, so
// it is the same across restarts and computable by every other node.
func VTEPMAC(nodeID string) net.HardwareAddr {
	return derivedMAC("shoal-vtep:" + nodeID)
}

// VTEPMACFor is the MAC of node nodeID's VXLAN device of network vni:
// VTEPMAC(nodeID) for the default VNI (so existing clusters keep theirs),
// else derived from the ID and the VNI.
func VTEPMACFor(nodeID string, vni int) net.HardwareAddr {
	if vni == DefaultVNI {
		return VTEPMAC(nodeID)
	}
	return derivedMAC(fmt.Sprintf("shoal-vtep:%s:%d", nodeID, vni))
}

// derivedMAC returns a locally administered unicast MAC derived from seed.
func derivedMAC(seed string) net.HardwareAddr {
	sum := sha256.Sum256([]byte(seed))
	mac := net.HardwareAddr(sum[:6])
	mac[0] = (mac[0] | 0x02) &^ 0x01 // locally administered, unicast
	return mac
}

// peerEntry is a validated peer with its derived values.
type peerEntry struct {
	Peer
	gw  netip.Addr // the peer's subnet network address (its VXLAN device's)
	mac net.HardwareAddr
}

// validatePeers filters peers: it drops this node, and reports malformed or
// overlapping peers (which are left out of the result).
func (o *Overlay) validatePeers(peers []Peer) ([]peerEntry, []error) {
	var out []peerEntry
	var errs []error
	seen := map[netip.Prefix]string{}
	sorted := append([]Peer(nil), peers...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].NodeID < sorted[j].NodeID })
	for _, p := range sorted {
		if p.NodeID == o.cfg.NodeID {
			continue
		}
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("%w: peer %s: "+format, append([]any{ErrInvalidPeer, p.NodeID}, args...)...))
		}
		switch {
		case p.NodeID == "":
			bad("empty node ID")
			continue
		case !p.Subnet.IsValid() || !p.Subnet.Addr().Is4() || p.Subnet != p.Subnet.Masked():
			bad("subnet %q is not an IPv4 network prefix", p.Subnet)
			continue
		case p.Subnet.Bits() < o.cfg.ClusterCIDR.Bits() || !o.cfg.ClusterCIDR.Contains(p.Subnet.Addr()):
			bad("subnet %s is outside the cluster CIDR %s", p.Subnet, o.cfg.ClusterCIDR)
			continue
		case p.Subnet.Overlaps(o.cfg.Subnet):
			bad("subnet %s overlaps this node's %s", p.Subnet, o.cfg.Subnet)
			continue
		case !p.UnderlayIP.Is4() || p.UnderlayIP.IsUnspecified():
			bad("underlay address %q is not a usable IPv4 address", p.UnderlayIP)
			continue
		}
		overlap := ""
		for s, id := range seen {
			if s.Overlaps(p.Subnet) {
				overlap = id
			}
		}
		if overlap != "" {
			bad("subnet %s overlaps the one of peer %s", p.Subnet, overlap)
			continue
		}
		mac := p.VTEPMAC
		if mac == nil {
			mac = VTEPMACFor(p.NodeID, o.cfg.VNI)
		}
		if len(mac) != 6 || mac[0]&1 != 0 {
			bad("VTEP MAC %s is not a unicast Ethernet address", mac)
			continue
		}
		seen[p.Subnet] = p.NodeID
		out = append(out, peerEntry{Peer: p, gw: p.Subnet.Addr(), mac: mac})
	}
	return out, errs
}

// SetPeers makes the route, neighbour and FDB entries of the VXLAN device
// match peers exactly (see the comment at the top of this file). It is
// idempotent and safe for concurrent use; peers is not retained. Peers with
// this node's ID are ignored; malformed peers are skipped and reported.
//
// The peer set is remembered even when programming fails, and Setup
// re-applies it; before Setup has created the devices, SetPeers only records
// the peers. On partial failure the error wraps ErrPartial and lists what
// failed; everything else was applied.
func (o *Overlay) SetPeers(peers []Peer) error {
	entries, errs := o.validatePeers(peers)
	o.mu.Lock()
	defer o.mu.Unlock()
	prev, synced := o.peers, o.synced
	o.peers, o.synced = entries, false
	if o.h == nil {
		return fmt.Errorf("set peers: %w", ErrClosed)
	}
	if !o.setUp {
		return errors.Join(errs...)
	}
	var applyErrs []error
	if synced && !o.cfg.Routed {
		// Routed (WireGuard) overlays have no FDB or neighbours to diff;
		// applyRoutedPeersLocked is already an in-place update.
		applyErrs = o.applyPeerDiffLocked(diffPeers(prev, entries))
	} else {
		applyErrs = o.applyPeersLocked()
	}
	o.synced = len(applyErrs) == 0
	errs = append(errs, applyErrs...)
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrPartial, errors.Join(errs...))
	}
	return nil
}

// applyPeersLocked programs o.peers against what the kernel lists: the
// peers whose route, neighbour or FDB entry is missing or differs first,
// then the deletion of leftovers. It returns one error per failed
// operation. o.mu must be held.
//
// Why list first: this full pass runs on every Setup (the periodic resync
// and every repair) and after a failed sync. Setting all three entries of
// every peer each time cost three netlink writes per peer: at 50 nodes the
// 30 s resync alone was a quarter of an idle follower's CPU (issue 10).
// Three dumps and the writes of what differs make it O(changes).
func (o *Overlay) applyPeersLocked() []error {
	if o.cfg.Routed {
		return o.applyRoutedPeersLocked() // wireguard_routed.go
	}
	vx, err := o.h.LinkByName(o.cfg.VXLANName)
	if err != nil {
		return []error{fmt.Errorf("find VXLAN device %s: %w", o.cfg.VXLANName, err)}
	}
	idx := vx.Attrs().Index
	var errs []error
	// A failed or interrupted dump counts as an empty one: every peer is
	// then set, as before, and nothing is deleted on its account.
	routes, err := o.h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{LinkIndex: idx}, netlink.RT_FILTER_OIF)
	if err != nil {
		routes = nil
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			errs = append(errs, fmt.Errorf("list routes of %s: %w", o.cfg.VXLANName, err))
		}
	}
	neighs, err := o.h.NeighList(idx, netlink.FAMILY_V4)
	if err != nil {
		neighs = nil
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			errs = append(errs, fmt.Errorf("list neighbours of %s: %w", o.cfg.VXLANName, err))
		}
	}
	fdb, err := o.h.NeighList(idx, unix.AF_BRIDGE)
	if err != nil {
		fdb = nil
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			errs = append(errs, fmt.Errorf("list FDB of %s: %w", o.cfg.VXLANName, err))
		}
	}
	k := kernelPeers{Routes: make([]kernelRoute, 0, len(routes)), Neighs: make([]kernelNeigh, 0, len(neighs)), FDB: make([]kernelNeigh, 0, len(fdb))}
	for _, r := range routes {
		if r.Dst == nil {
			k.Routes = append(k.Routes, kernelRoute{})
			continue
		}
		dst, _ := linkutil.IPNetToPrefix(r.Dst)
		gw, _ := netip.AddrFromSlice(r.Gw)
		k.Routes = append(k.Routes, kernelRoute{Dst: dst, Gw: gw.Unmap(), Onlink: r.Flags&int(netlink.FLAG_ONLINK) != 0})
	}
	for _, n := range neighs {
		ip, _ := netip.AddrFromSlice(n.IP)
		k.Neighs = append(k.Neighs, kernelNeigh{IP: ip.Unmap(), MAC: n.HardwareAddr.String(), Permanent: n.State&netlink.NUD_PERMANENT != 0})
	}
	for _, n := range fdb {
		ip, _ := netip.AddrFromSlice(n.IP)
		mac := ""
		if n.LinkIndex == idx && n.HardwareAddr != nil && n.IP != nil {
			mac = n.HardwareAddr.String()
		}
		k.FDB = append(k.FDB, kernelNeigh{IP: ip.Unmap(), MAC: mac, Permanent: n.State&netlink.NUD_PERMANENT != 0})
	}
	w := peerWork(o.peers, k, o.cfg.ClusterCIDR)
	for _, p := range w.set {
		if err := o.setPeerLocked(idx, p); err != nil {
			errs = append(errs, err)
		}
	}
	// An entry a set above replaced in place (a peer's new underlay IP) is
	// already gone.
	gone := func(err error) bool { return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) }
	for _, i := range w.staleRoutes {
		r := routes[i]
		if err := o.h.RouteDel(&r); err != nil && !gone(err) {
			errs = append(errs, fmt.Errorf("delete stale route %s via %s: %w", k.Routes[i].Dst, o.cfg.VXLANName, err))
		}
	}
	for _, i := range w.staleNeighs {
		if err := o.h.NeighDel(&neighs[i]); err != nil && !gone(err) {
			errs = append(errs, fmt.Errorf("delete stale neighbour %s: %w", k.Neighs[i].IP, err))
		}
	}
	for _, i := range w.staleFDB {
		if err := o.h.NeighDel(&fdb[i]); err != nil && !gone(err) {
			errs = append(errs, fmt.Errorf("delete stale FDB entry %s dst %s: %w", k.FDB[i].MAC, k.FDB[i].IP, err))
		}
	}
	return append(errs, o.applyReturnLocked(vx)...)
}

// kernelPeers is what the kernel lists on the VXLAN device, reduced to what
// peerWork compares: its routes, its IPv4 neighbours and its FDB.
type kernelPeers struct {
	Routes []kernelRoute
	Neighs []kernelNeigh
	FDB    []kernelNeigh // IP is the entry's underlay destination; MAC "" for one that is not the device's own or has none
}

type kernelRoute struct {
	Dst    netip.Prefix // invalid: a route without a destination (not ours)
	Gw     netip.Addr
	Onlink bool
}

type kernelNeigh struct {
	IP        netip.Addr
	MAC       string
	Permanent bool
}

// peerKernelWork is what a full pass writes: the peers to set (any of
// their three entries missing or different) and the indexes, in the
// kernelPeers lists, of the entries to delete.
type peerKernelWork struct {
	set                                []peerEntry
	staleRoutes, staleNeighs, staleFDB []int
}

// peerWork compares the desired peers with the kernel's entries (pure):
// a peer is set unless the kernel holds its route (its subnet via its
// gateway, onlink), its permanent neighbour (gateway → VTEP MAC) and its
// permanent FDB entry (VTEP MAC → underlay IP, and no other destination
// for that MAC: the FDB of a VXLAN device may hold several, and each
// would get the peer's frames). Deleted are the routes inside cluster
// that no peer routes, the permanent neighbours no peer uses and the FDB
// entries whose MAC no peer has or that send a peer's MAC elsewhere; the
// kernel's own entries (not permanent, or routes outside cluster) are left
// alone.
func peerWork(peers []peerEntry, k kernelPeers, cluster netip.Prefix) peerKernelWork {
	var w peerKernelWork
	route := map[netip.Prefix]kernelRoute{}
	for _, r := range k.Routes {
		if r.Dst.IsValid() {
			route[r.Dst] = r
		}
	}
	neigh := map[netip.Addr]string{}
	for _, n := range k.Neighs {
		if n.Permanent {
			neigh[n.IP] = n.MAC
		}
	}
	fdb := map[string][]netip.Addr{}
	for _, n := range k.FDB {
		if n.Permanent && n.MAC != "" {
			fdb[n.MAC] = append(fdb[n.MAC], n.IP)
		}
	}
	wantRoute := map[netip.Prefix]bool{}
	wantNeigh := map[netip.Addr]bool{}
	wantFDB := map[string]netip.Addr{}
	for _, p := range peers {
		mac := p.mac.String()
		wantRoute[p.Subnet], wantNeigh[p.gw], wantFDB[mac] = true, true, p.UnderlayIP
		r, ok := route[p.Subnet]
		okRoute := ok && r.Gw == p.gw && r.Onlink
		okNeigh := neigh[p.gw] == mac
		// One destination, the peer's: a second one would also get
		// the peer's frames (the FDB of a VXLAN device may hold several).
		dsts := fdb[mac]
		okFDB := len(dsts) == 1 && dsts[0] == p.UnderlayIP
		if !okRoute || !okNeigh || !okFDB {
			w.set = append(w.set, p)
		}
	}
	for i, r := range k.Routes {
		if r.Dst.IsValid() && !wantRoute[r.Dst] && r.Dst.Bits() >= cluster.Bits() && cluster.Contains(r.Dst.Addr()) {
			w.staleRoutes = append(w.staleRoutes, i)
		}
	}
	for i, n := range k.Neighs {
		if n.Permanent && !wantNeigh[n.IP] {
			w.staleNeighs = append(w.staleNeighs, i)
		}
	}
	for i, n := range k.FDB {
		if dst, ok := wantFDB[n.MAC]; n.MAC != "" && (!ok || dst != n.IP) {
			w.staleFDB = append(w.staleFDB, i)
		}
	}
	return w
}

// setPeerLocked adds or replaces the FDB entry, neighbour and route of one
// peer on the VXLAN device idx. o.mu must be held.
func (o *Overlay) setPeerLocked(idx int, p peerEntry) error {
	fail := func(what string, err error) error {
		return fmt.Errorf("peer %s (%s at %s): %s: %w", p.NodeID, p.Subnet, p.UnderlayIP, what, err)
	}
	// FDB and neighbour first, the route last: once the route exists the
	// kernel sends traffic, which must find the L2 entries in place.
	if err := o.h.NeighSet(&netlink.Neigh{
		LinkIndex:    idx,
		Family:       unix.AF_BRIDGE,
		Flags:        netlink.NTF_SELF,
		State:        netlink.NUD_PERMANENT,
		IP:           net.IP(p.UnderlayIP.AsSlice()),
		HardwareAddr: p.mac,
	}); err != nil {
		return fail("set FDB entry "+p.mac.String(), err)
	}
	if err := o.h.NeighSet(&netlink.Neigh{
		LinkIndex:    idx,
		Family:       netlink.FAMILY_V4,
		State:        netlink.NUD_PERMANENT,
		Type:         unix.RTN_UNICAST,
		IP:           net.IP(p.gw.AsSlice()),
		HardwareAddr: p.mac,
	}); err != nil {
		return fail("set neighbour "+p.gw.String(), err)
	}
	if err := o.h.RouteReplace(&netlink.Route{
		LinkIndex: idx,
		Dst:       linkutil.PrefixToIPNet(p.Subnet),
		Gw:        net.IP(p.gw.AsSlice()),
		Flags:     int(netlink.FLAG_ONLINK),
		Scope:     netlink.SCOPE_UNIVERSE,
	}); err != nil {
		return fail("set route", err)
	}
	return nil
}

// peerDiff is how a desired peer set differs from the current one: the
// peers to program (new or changed) and the kernel entries of the current
// set that no desired peer uses any more. Entries are compared, not only
// node IDs, so a subnet that moves from one peer to another keeps its
// route (replaced, never deleted).
type peerDiff struct {
	add    []peerEntry // peers only in the desired set
	update []peerEntry // peers in both whose subnet, underlay or MAC changed (desired form)
	remove []string    // node IDs only in the current set

	staleRoutes []netip.Prefix // subnets of current peers no desired peer routes
	staleNeighs []netip.Addr   // gateways no desired peer uses
	staleFDB    []peerEntry    // current peers whose MAC no desired peer uses (MAC, underlay)
}

// empty reports whether applying d changes nothing.
func (d peerDiff) empty() bool {
	return len(d.add)+len(d.update)+len(d.remove)+len(d.staleRoutes)+len(d.staleNeighs)+len(d.staleFDB) == 0
}

// diffPeers compares the current peer set (as last programmed) with the
// desired one, both as validatePeers returns them (unique node IDs and
// subnets). It is pure; the result follows the desired set's order, then
// the current set's.
func diffPeers(cur, want []peerEntry) peerDiff {
	var d peerDiff
	curByID := make(map[string]peerEntry, len(cur))
	for _, p := range cur {
		curByID[p.NodeID] = p
	}
	wantID := map[string]bool{}
	wantRoute := map[netip.Prefix]bool{}
	wantNeigh := map[netip.Addr]bool{}
	wantFDB := map[string]bool{}
	for _, p := range want {
		wantID[p.NodeID] = true
		wantRoute[p.Subnet] = true
		wantNeigh[p.gw] = true
		wantFDB[p.mac.String()] = true
		old, ok := curByID[p.NodeID]
		switch {
		case !ok:
			d.add = append(d.add, p)
		case old.Subnet != p.Subnet || old.gw != p.gw || old.UnderlayIP != p.UnderlayIP || old.mac.String() != p.mac.String():
			d.update = append(d.update, p)
		}
	}
	for _, p := range cur {
		if !wantID[p.NodeID] {
			d.remove = append(d.remove, p.NodeID)
		}
		if !wantRoute[p.Subnet] {
			d.staleRoutes = append(d.staleRoutes, p.Subnet)
		}
		if !wantNeigh[p.gw] {
			d.staleNeighs = append(d.staleNeighs, p.gw)
		}
		if !wantFDB[p.mac.String()] {
			d.staleFDB = append(d.staleFDB, p)
		}
	}
	return d
}

// applyPeerDiffLocked programs d: the new and changed peers first, then
// the deletion of stale entries (an entry already gone is fine). It
// returns one error per failed operation. o.mu must be held.
func (o *Overlay) applyPeerDiffLocked(d peerDiff) []error {
	if d.empty() {
		return nil
	}
	vx, err := o.h.LinkByName(o.cfg.VXLANName)
	if err != nil {
		return []error{fmt.Errorf("find VXLAN device %s: %w", o.cfg.VXLANName, err)}
	}
	idx := vx.Attrs().Index
	var errs []error
	for _, p := range append(slices.Clone(d.add), d.update...) {
		if err := o.setPeerLocked(idx, p); err != nil {
			errs = append(errs, err)
		}
	}
	gone := func(err error) bool { return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) }
	for _, dst := range d.staleRoutes {
		if err := o.h.RouteDel(&netlink.Route{LinkIndex: idx, Dst: linkutil.PrefixToIPNet(dst)}); err != nil && !gone(err) {
			errs = append(errs, fmt.Errorf("delete stale route %s: %w", dst, err))
		}
	}
	for _, gw := range d.staleNeighs {
		if err := o.h.NeighDel(&netlink.Neigh{LinkIndex: idx, Family: netlink.FAMILY_V4, IP: net.IP(gw.AsSlice())}); err != nil && !gone(err) {
			errs = append(errs, fmt.Errorf("delete stale neighbour %s: %w", gw, err))
		}
	}
	for _, p := range d.staleFDB {
		if err := o.h.NeighDel(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF,
			IP: net.IP(p.UnderlayIP.AsSlice()), HardwareAddr: p.mac}); err != nil && !gone(err) {
			errs = append(errs, fmt.Errorf("delete stale FDB entry %s dst %s: %w", p.mac, p.UnderlayIP, err))
		}
	}
	// The routing mesh's return paths follow o.peers too; their sync is
	// already a small idempotent pass over the rules this overlay owns.
	return append(errs, o.applyReturnLocked(vx)...)
}

// applyReturnLocked gives the peers of o.peers the routing mesh's return
// path through the VXLAN device vx (overlay/meshreturn). o.mu must be
// held.
func (o *Overlay) applyReturnLocked(vx netlink.Link) []error {
	peers := make([]meshreturn.Peer, len(o.peers))
	for i, p := range o.peers {
		peers[i] = meshreturn.Peer{NodeID: p.NodeID, MAC: p.mac, Gw: p.gw}
	}
	return meshreturn.Sync(o.h, o.cfg.BridgeName, vx, peers)
}

// deleteStaleRoutesLocked deletes, of routes (one device's, as listed),
// those inside the cluster CIDR that want does not hold (routes elsewhere
// are not ours). o.mu must be held.
func (o *Overlay) deleteStaleRoutesLocked(routes []netlink.Route, want map[netip.Prefix]bool) []error {
	var errs []error
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		dst, ok := linkutil.IPNetToPrefix(r.Dst)
		if !ok || want[dst] || dst.Bits() < o.cfg.ClusterCIDR.Bits() || !o.cfg.ClusterCIDR.Contains(dst.Addr()) {
			continue
		}
		if err := o.h.RouteDel(&r); err != nil {
			errs = append(errs, fmt.Errorf("delete stale route %s via %s: %w", dst, o.cfg.VXLANName, err))
		}
	}
	return errs
}
