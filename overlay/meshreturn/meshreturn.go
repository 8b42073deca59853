// Package meshreturn routes the replies of the routing mesh's connections
// back through the node that took them: a policy rule and a routing table
// per peer. It is apart from the overlay because it is a routing concern
// of its own (rules and tables, not devices or neighbours) with a pure
// half that is table-tested, and it needs nothing of the overlay but the
// peers, the bridge and the VXLAN device (README.md).
package meshreturn

// Why there is a policy rule and a routing table per peer (the return path
// of the routing mesh).
//
// The lb package's routing mesh DNATs a connection from outside the cluster
// (a LAN client) on the node that took it, the ingress node, to a backend
// that may live on another node, and forwards it over VXLAN WITHOUT
// masquerading it, so that the backend sees the client's own address. The
// backend answers that address; left to the main routing table, its node
// would send the reply straight to the client, which would drop a packet
// from a container address it never called. The reply has to go back
// through the ingress node, the only one holding the conntrack entry that
// turns the container's address back into the published one.
//
// The backend's node therefore remembers, per connection, which node it
// came from, and routes the replies there:
//
//   - the lb marks a new connection arriving through the VXLAN device from
//     an address outside every network with Mark of the inner frame's
//     source MAC: the ingress node's VTEP MAC of that network, derived from
//     its node ID, so a mark names one peer and survives restarts;
//   - the lb copies that conntrack mark onto the packets coming back from the
//     bridge (the replies);
//   - for every peer, the overlay installs the rule
//     `fwmark M iif BRIDGE lookup M` (priority RulePriority) and, in
//     table M, `default via <peer's VXLAN address> dev VXLAN onlink`. The
//     reply thus takes the VXLAN device to the ingress node, which undoes the
//     DNAT and sends it to the client.
//
// The rule is bound to the bridge (iif): only forwarded replies of
// containers are steered, never the node's own traffic nor the VXLAN
// device's underlay lookup of the encapsulated packet, which carries the
// same mark. The table ID is the mark itself, so nothing is allocated and
// every node computes the same values.
//
// Node death: when a peer leaves the peer set, its rule and table go with
// it; replies of connections it had forwarded then fall through to the main
// table (the client resets them — they died with the ingress node anyway).
// A peer that comes back under its ID has the same MAC and so the same mark.
//
// Reverse-path filtering: the connection arrives on the VXLAN device from
// an address the main table routes elsewhere, so a strict rp_filter would
// drop it. The overlay's Setup makes the VXLAN device's filter loose (2)
// where the effective setting is strict (LooseRPFilter); where it is off,
// it stays off.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/overlay/linkutil"
)

// RulePriority is the priority of the return rules: after the local
// table (0), before the main table (32766).
const RulePriority = 31000

// Mark is the connection and packet mark of mesh connections taken by the
// node whose VTEP MAC is mac: the MAC's last four bytes as the lb's
// nftables rule loads them (`ct mark set @ll,64,32`), that is in host byte
// order. It is also the ID of that peer's return routing table.
func Mark(mac net.HardwareAddr) uint32 {
	if len(mac) != 6 {
		return 0
	}
	return binary.NativeEndian.Uint32(mac[2:6])
}

// Peer is a node whose mesh connections get a return path.
type Peer struct {
	NodeID string
	// MAC is the peer's VTEP MAC: the lb marks its connections with
	// Mark(MAC).
	MAC net.HardwareAddr
	// Gw is the address of the peer's VXLAN device (its subnet's network
	// address), where the replies are routed.
	Gw netip.Addr
}

// route is one peer's return path: rule `fwmark Mark iif <bridge> lookup
// Mark` and, in table Mark, a default route via Gw.
type route struct {
	Mark   uint32
	Gw     netip.Addr
	NodeID string
}

// routes computes the return paths of peers (pure). A mark that is not
// usable as a routing table ID (0-255: unspecified and the kernel's own
// tables) or that two peers share (two MACs alike in their last four
// bytes) is left out and reported; such a peer's mesh connections then
// keep the main table's route.
func routes(peers []Peer) ([]route, []error) {
	var out []route
	var errs []error
	owner := map[uint32]string{}
	for _, p := range peers {
		m := Mark(p.MAC)
		switch other, dup := owner[m]; {
		case m < 256:
			errs = append(errs, fmt.Errorf("peer %s: VTEP MAC %s gives mark %d, a reserved routing table: no mesh return route", p.NodeID, p.MAC, m))
			continue
		case dup:
			errs = append(errs, fmt.Errorf("peers %s and %s: VTEP MACs share mark %#x: no mesh return route for %s", other, p.NodeID, m, p.NodeID))
			continue
		}
		owner[m] = p.NodeID
		out = append(out, route{Mark: m, Gw: p.Gw, NodeID: p.NodeID})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Mark < out[j].Mark })
	return out, errs
}

// Sync makes the return paths of the containers on bridge those of peers,
// through the VXLAN device vx, with the handle h of the namespace to
// program: adds first, then deletes the rules and tables of peers that
// are gone. It touches only the rules bound to bridge (another network's
// overlay owns its own) and the tables of vx's default routes. It returns
// one error per failed operation; the caller serialises calls per bridge.
func Sync(h *netlink.Handle, bridge string, vx netlink.Link, peers []Peer) []error {
	want, errs := routes(peers)
	rules, err := ownRules(h, bridge)
	if err != nil {
		return append(errs, err)
	}
	have := map[uint32]bool{}
	for _, r := range rules {
		if uint32(r.Table) == r.Mark {
			have[r.Mark] = true
		}
	}
	vxIdx := vx.Attrs().Index
	// vx's default routes in every table, listed once: a table whose
	// route is already the peer's is not written again (this runs on
	// every membership change and every overlay resync, for every peer).
	defaults, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{LinkIndex: vxIdx, Table: unix.RT_TABLE_UNSPEC},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		// Nothing is taken as in place, and nothing deleted on its account.
		defaults = nil
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			errs = append(errs, fmt.Errorf("list mesh return routes of %s: %w", vx.Attrs().Name, err))
		}
	}
	inPlace := defaultGateways(defaults)
	wanted := map[uint32]bool{}
	for _, rr := range want {
		wanted[rr.Mark] = true
		if gw, ok := inPlace[rr.Mark]; ok && gw == rr.Gw && have[rr.Mark] {
			continue
		}
		// The route first: a rule without its table would send the
		// replies on to the main table anyway, but a table without a rule
		// is inert.
		if err := h.RouteReplace(&netlink.Route{
			LinkIndex: vxIdx,
			Dst:       &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
			Gw:        net.IP(rr.Gw.AsSlice()),
			Flags:     int(netlink.FLAG_ONLINK),
			Scope:     netlink.SCOPE_UNIVERSE,
			Table:     int(rr.Mark),
		}); err != nil {
			errs = append(errs, fmt.Errorf("peer %s: set mesh return route in table %d: %w", rr.NodeID, rr.Mark, err))
			continue
		}
		if have[rr.Mark] {
			continue
		}
		if err := h.RuleAdd(rule(bridge, rr.Mark)); err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("peer %s: add mesh return rule fwmark %#x: %w", rr.NodeID, rr.Mark, err))
		}
	}
	for _, r := range rules {
		if wanted[r.Mark] && uint32(r.Table) == r.Mark {
			continue
		}
		if err := h.RuleDel(&r); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("delete stale mesh return rule fwmark %#x: %w", r.Mark, err))
		}
	}
	// Stale tables: default routes of our VXLAN device outside the main
	// table whose table is no wanted mark.
	for _, r := range defaults {
		if r.Table == unix.RT_TABLE_MAIN || r.Table == unix.RT_TABLE_LOCAL || r.Table < 256 || wanted[uint32(r.Table)] {
			continue
		}
		if !isDefault(r) {
			continue
		}
		if err := h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("delete stale mesh return route of table %d: %w", r.Table, err))
		}
	}
	return errs
}

// rule is the rule of mark for bridge.
func rule(bridge string, mark uint32) *netlink.Rule {
	r := netlink.NewRule()
	r.Family = netlink.FAMILY_V4
	r.Priority = RulePriority
	r.Mark = mark
	mask := ^uint32(0)
	r.Mask = &mask
	r.IifName = bridge
	r.Table = int(mark)
	return r
}

// ownRules lists the IPv4 rules of RulePriority bound to bridge: the
// return rules its overlay owns (another network's overlay owns those of
// its own bridge).
func ownRules(h *netlink.Handle, bridge string) ([]netlink.Rule, error) {
	all, err := h.RuleList(netlink.FAMILY_V4)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("list routing rules: %w", err)
	}
	var out []netlink.Rule
	for _, r := range all {
		if r.Priority == RulePriority && r.IifName == bridge {
			out = append(out, r)
		}
	}
	return out, nil
}

// Delete removes the return rules of bridge (the overlay's Teardown; the
// tables go with the VXLAN device).
func Delete(h *netlink.Handle, bridge string) error {
	rules, err := ownRules(h, bridge)
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range rules {
		if err := h.RuleDel(&r); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("delete mesh return rule fwmark %#x: %w", r.Mark, err))
		}
	}
	return errors.Join(errs...)
}

// LooseRPFilter makes the reverse-path filter of the VXLAN device dev
// loose where the effective setting (the higher of "all" and the
// device's) is strict: mesh connections arrive on it from client
// addresses the main table routes through another interface. Run it
// inside the programmed namespace (/proc/sys/net is the calling
// thread's).
func LooseRPFilter(dev string) error {
	all, _ := linkutil.ReadSysctl("net/ipv4/conf/all/rp_filter")
	cur, _ := linkutil.ReadSysctl("net/ipv4/conf/" + dev + "/rp_filter")
	if all != "1" && cur != "1" {
		return nil
	}
	return linkutil.WriteSysctl("net/ipv4/conf/"+dev+"/rp_filter", "2")
}

// defaultGateways maps each table of routes (pure) that holds an onlink
// default route to its gateway: the return paths already in place.
func defaultGateways(routes []netlink.Route) map[uint32]netip.Addr {
	out := map[uint32]netip.Addr{}
	for _, r := range routes {
		if !isDefault(r) || r.Flags&int(netlink.FLAG_ONLINK) == 0 {
			continue
		}
		if gw, ok := netip.AddrFromSlice(r.Gw); ok {
			out[uint32(r.Table)] = gw.Unmap()
		}
	}
	return out
}

// isDefault reports whether r is a default route (no destination, or
// 0.0.0.0/0).
func isDefault(r netlink.Route) bool {
	if r.Dst == nil {
		return true
	}
	ones, _ := r.Dst.Mask.Size()
	return ones == 0
}
