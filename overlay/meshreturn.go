package overlay

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
//     an address outside every network with ReturnMark of the inner frame's
//     source MAC: the ingress node's VTEP MAC of that network, derived from
//     its node ID, so a mark names one peer and survives restarts;
//   - the lb copies that conntrack mark onto the packets coming back from the
//     bridge (the replies);
//   - for every peer, the overlay installs the rule
//     `fwmark M iif BRIDGE lookup M` (priority ReturnRulePriority) and, in
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
// drop it. setupLocked makes the VXLAN device's filter loose (2) where the
// effective setting is strict; where it is off, it stays off.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ReturnRulePriority is the priority of the return rules: after the local
// table (0), before the main table (32766).
const ReturnRulePriority = 31000

// ReturnMark is the connection and packet mark of mesh connections taken by
// the node whose VTEP MAC is mac: the MAC's last four bytes as the lb's
// nftables rule loads them (`ct mark set @ll,64,32`), that is in host byte
// order. It is also the ID of that peer's return routing table.
func ReturnMark(mac net.HardwareAddr) uint32 {
	if len(mac) != 6 {
		return 0
	}
	return binary.NativeEndian.Uint32(mac[2:6])
}

// returnRoute is one peer's return path: rule `fwmark Mark iif <bridge>
// lookup Mark` and, in table Mark, a default route via Gw.
type returnRoute struct {
	Mark   uint32
	Gw     netip.Addr
	NodeID string
}

// returnRoutes computes the return paths of peers (pure). A mark that is
// not usable as a routing table ID (0-255: unspecified and the kernel's own
// tables) or that two peers share (two MACs alike in their last four bytes)
// is left out and reported; such a peer's mesh connections then keep the
// main table's route.
func returnRoutes(peers []peerEntry) ([]returnRoute, []error) {
	var out []returnRoute
	var errs []error
	owner := map[uint32]string{}
	for _, p := range peers {
		m := ReturnMark(p.mac)
		switch other, dup := owner[m]; {
		case m < 256:
			errs = append(errs, fmt.Errorf("peer %s: VTEP MAC %s gives mark %d, a reserved routing table: no mesh return route", p.NodeID, p.mac, m))
			continue
		case dup:
			errs = append(errs, fmt.Errorf("peers %s and %s: VTEP MACs share mark %#x: no mesh return route for %s", other, p.NodeID, m, p.NodeID))
			continue
		}
		owner[m] = p.NodeID
		out = append(out, returnRoute{Mark: m, Gw: p.gw, NodeID: p.NodeID})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Mark < out[j].Mark })
	return out, errs
}

// applyReturnLocked programs the return paths of o.peers on the VXLAN
// device vxIdx: adds first, then deletes the rules and tables of peers
// that are gone. It returns one error per failed operation. o.mu must be
// held.
func (o *Overlay) applyReturnLocked(vxIdx int) []error {
	want, errs := returnRoutes(o.peers)
	rules, err := o.ownReturnRulesLocked()
	if err != nil {
		return append(errs, err)
	}
	have := map[uint32]bool{}
	for _, r := range rules {
		if uint32(r.Table) == r.Mark {
			have[r.Mark] = true
		}
	}
	wanted := map[uint32]bool{}
	for _, rr := range want {
		wanted[rr.Mark] = true
		// The route first: a rule without its table would send the
		// replies on to the main table anyway, but a table without a rule
		// is inert.
		if err := o.h.RouteReplace(&netlink.Route{
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
		if err := o.h.RuleAdd(o.returnRule(rr.Mark)); err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("peer %s: add mesh return rule fwmark %#x: %w", rr.NodeID, rr.Mark, err))
		}
	}
	for _, r := range rules {
		if wanted[r.Mark] && uint32(r.Table) == r.Mark {
			continue
		}
		if err := o.h.RuleDel(&r); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("delete stale mesh return rule fwmark %#x: %w", r.Mark, err))
		}
	}
	// Stale tables: default routes of our VXLAN device outside the main
	// table whose table is no wanted mark.
	routes, err := o.h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{LinkIndex: vxIdx, Table: unix.RT_TABLE_UNSPEC},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return append(errs, fmt.Errorf("list mesh return routes of %s: %w", o.cfg.VXLANName, err))
	}
	for _, r := range routes {
		if r.Table == unix.RT_TABLE_MAIN || r.Table == unix.RT_TABLE_LOCAL || r.Table < 256 || wanted[uint32(r.Table)] {
			continue
		}
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones != 0 {
				continue
			}
		}
		if err := o.h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("delete stale mesh return route of table %d: %w", r.Table, err))
		}
	}
	return errs
}

// returnRule is the rule of mark for this overlay's bridge.
func (o *Overlay) returnRule(mark uint32) *netlink.Rule {
	r := netlink.NewRule()
	r.Family = netlink.FAMILY_V4
	r.Priority = ReturnRulePriority
	r.Mark = mark
	mask := ^uint32(0)
	r.Mask = &mask
	r.IifName = o.cfg.BridgeName
	r.Table = int(mark)
	return r
}

// ownReturnRulesLocked lists the IPv4 rules of ReturnRulePriority bound to
// this overlay's bridge: the return rules it owns (another network's
// overlay owns those of its own bridge).
func (o *Overlay) ownReturnRulesLocked() ([]netlink.Rule, error) {
	all, err := o.h.RuleList(netlink.FAMILY_V4)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("list routing rules: %w", err)
	}
	var out []netlink.Rule
	for _, r := range all {
		if r.Priority == ReturnRulePriority && r.IifName == o.cfg.BridgeName {
			out = append(out, r)
		}
	}
	return out, nil
}

// deleteReturnRulesLocked removes this overlay's return rules (Teardown;
// the tables go with the VXLAN device).
func (o *Overlay) deleteReturnRulesLocked() error {
	rules, err := o.ownReturnRulesLocked()
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range rules {
		if err := o.h.RuleDel(&r); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("delete mesh return rule fwmark %#x: %w", r.Mark, err))
		}
	}
	return errors.Join(errs...)
}

// looseRPFilter makes the VXLAN device's reverse-path filter loose where
// the effective setting (the higher of "all" and the device's) is strict:
// mesh connections arrive on it from client addresses the main table routes
// through another interface. Run inside the programmed namespace.
func looseRPFilter(dev string) error {
	all, _ := readSysctl("net/ipv4/conf/all/rp_filter")
	cur, _ := readSysctl("net/ipv4/conf/" + dev + "/rp_filter")
	if all != "1" && cur != "1" {
		return nil
	}
	return writeSysctl("net/ipv4/conf/"+dev+"/rp_filter", "2")
}

// readSysctl reads one sysctl of the current namespace, trimmed.
func readSysctl(key string) (string, error) {
	b, err := os.ReadFile(filepath.Join("/proc/sys", key))
	if err != nil {
		return "", err
	}
	return string(trimNL(b)), nil
}
