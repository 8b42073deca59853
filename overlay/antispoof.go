package overlay

// Anti-spoofing on the container ports of the bridge.
//
// Containers have CAP_NET_RAW (Docker's default set), so they can write
// any frame onto their veth. The bridge and the node's IP stack believe
// what they read: one ARP reply from c1 saying "c2's address is at c1's
// MAC" moves the node's neighbour entry for c2 to c1, and everything the
// node routes to c2 (other nodes' traffic, VIP and published-port DNAT)
// goes to c1; the same against the gateway .1 steals other containers'
// egress; and a forged IPv4 source lets a container pass as another one
// (the lb's source checks, network isolation). The container's MAC is
// already fixed (containerMAC, 0a:58 + IP) and its address is known, so
// the overlay binds each port to both, as the CNI bridge plugin's
// macspoofchk does for the MAC:
//
//	table bridge shoal-guard-<bridge> {
//	  set ports   { type ifname }                                       # host veths of attached containers
//	  set ip-src  { type ifname . ether_addr . ipv4_addr }              # veth . its MAC . its IP
//	  set arp-src { type ifname . ether_addr . ether_addr . ipv4_addr } # veth . MAC . MAC . IP
//	  chain prerouting { type filter hook prerouting priority -300; policy accept;
//	    iifname @ports jump from-container }
//	  chain from-container {
//	    ether type ip iifname . ether saddr . ip saddr @ip-src accept
//	    ether type arp arp htype 1 arp ptype ip arp hlen 6 arp plen 4
//	      iifname . ether saddr . arp saddr ether . arp saddr ip @arp-src accept
//	    counter drop }
//	}
//
// Why it looks like this:
//
//   - **Family bridge, hook prerouting.** It sees every frame entering the
//     bridge from a port, whether the bridge forwards it to another port
//     or hands it up to the node (ARP for the gateway, IP to be routed),
//     and nothing the node itself sends. It needs neither br_netfilter nor
//     a device per chain: a netdev ingress chain is bound to its devices
//     and goes away with them, while this table outlives veths, bridges
//     and agents. Priority -300 runs it before br_netfilter's hook (0)
//     and the usual filter chains (-200).
//   - **Keyed by interface name, in sets.** Veth names are derived from the
//     container ID (vethName), so the entries survive a veth's re-attachment
//     to a re-created bridge and an agent restart, and one chain serves any
//     number of containers: Attach adds a container's three elements and
//     Detach removes its address entries, each in one transaction.
//     (This kernel has no `meta ibrname`, so the bridge cannot be named in
//     the rules; the port set scopes the chain to this overlay's ports.)
//   - **Fail closed for our ports.** Attach adds the elements before the
//     veth exists; a frame from a port in `ports` that matches no entry is
//     dropped. A port name stays in `ports` after Detach until the next
//     Setup rebuilds the table (a port of that name is then dropped
//     entirely, never let through). Ports the overlay does not know (other
//     bridges of the node) are not touched.
//   - **Only IPv4 and ARP.** Containers are IPv4 only. Their IPv6
//     link-local chatter (router and neighbour solicitations, MLD, DAD) is
//     dropped with everything else that is neither: IPv6 would let a
//     container spoof neighbour discovery and reach the node's link-local
//     address past the lb's IPv4 filters. VLAN-tagged frames are dropped
//     too (the kernel gives nft the tag back as `ether type` 0x8100).
//     0.0.0.0 is refused like any other foreign source (there is no DHCP).
//   - **Every legitimate frame of a container carries its own MAC and
//     address.** NAT is the node's work, not the container's: hairpin and
//     same-host VIP traffic is DNATed and masqueraded by the node and
//     comes back to the container from the bridge device (which this hook
//     does not see), the routing mesh's replies leave the backend with its
//     own address (the mark is put on by the node), and a container on
//     several networks sends through each interface with that interface's
//     address. Gratuitous ARP has the sender's own address.
//   - **Compute, then apply.** compileGuard is pure (guardRuleset, traced
//     frame by frame in antispoof_test.go); Setup replaces the whole table
//     in one transaction (add, delete, add again: the kernel switches
//     atomically) from the address allocations (guardPortsLocked), which
//     also drops stale entries. A table deleted by hand is fail-open until
//     the next Setup (Run's resync timer) or Attach (which rebuilds the
//     table when its element transaction fails) brings it back. A kernel
//     without nftables for the bridge family fails Setup (ErrPartial) and
//     every Attach: containers do not start unguarded.

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/overlay/ipam"
)

// Names and constants of the guard table.
const (
	guardTablePrefix = "shoal-guard-" // + the bridge name: one table per overlay
	guardChainHook   = "prerouting"
	guardChainPorts  = "from-container"
	guardSetPorts    = "ports"
	guardSetIP       = "ip-src"
	guardSetARP      = "arp-src"
	// guardPriority runs the chain before every other bridge prerouting
	// hook (NF_BR_PRI_FIRST is INT_MIN; br_netfilter's hook is at 0).
	guardPriority = -300

	etherTypeIPv4 = 0x0800
	etherTypeARP  = 0x0806
	ifNameSize    = unix.IFNAMSIZ // meta iifname loads 16 bytes, NUL-padded

	// Registers, as nft lays out a concatenation: the interface name fills
	// the first 16-byte register (four 32-bit ones), each further field
	// starts at the next 32-bit register (a MAC takes two).
	regIfName = unix.NFT_REG_1
	regField2 = unix.NFT_REG32_04
	regField3 = unix.NFT_REG32_06
	regField4 = unix.NFT_REG32_08
)

// guardPort is one container port: the host veth name and the MAC and
// address the container must send from.
type guardPort struct {
	ifName string
	mac    net.HardwareAddr
	ip     netip.Addr
}

// guardRuleset is the whole content of the guard table, in the order it
// is added (sets before the rules that look them up).
type guardRuleset struct {
	table                  *nftables.Table
	hook, ports            *nftables.Chain
	portSet, ipSet, arpSet *nftables.Set
	portElems              []nftables.SetElement
	ipElems, arpElems      []nftables.SetElement
	rules                  []*nftables.Rule
}

// guardTableName is the table of the overlay whose bridge is bridge.
func guardTableName(bridge string) string { return guardTablePrefix + bridge }

// guardSets returns the guard table and its sets as objects that name them
// (for element updates on the existing table). IDs are batch-local and
// set here: the library's own counter is a global without a lock.
func guardSets(tableName string) (*nftables.Table, *nftables.Set, *nftables.Set, *nftables.Set) {
	t := &nftables.Table{Family: nftables.TableFamilyBridge, Name: tableName}
	ports := &nftables.Set{Table: t, ID: 1, Name: guardSetPorts, KeyType: nftables.TypeIFName}
	ip := &nftables.Set{Table: t, ID: 2, Name: guardSetIP, Concatenation: true,
		KeyType: nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeEtherAddr, nftables.TypeIPAddr)}
	arp := &nftables.Set{Table: t, ID: 3, Name: guardSetARP, Concatenation: true,
		KeyType: nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeEtherAddr, nftables.TypeEtherAddr, nftables.TypeIPAddr)}
	return t, ports, ip, arp
}

// ifNameKey is an interface name as meta iifname loads it.
func ifNameKey(name string) []byte {
	b := make([]byte, ifNameSize)
	copy(b, name)
	return b
}

// pad4 pads b with zeros to a multiple of 4 bytes (a concatenation's
// fields each start at a register).
func pad4(b []byte) []byte {
	out := append([]byte(nil), b...)
	for len(out)%4 != 0 {
		out = append(out, 0)
	}
	return out
}

// guardElems returns the elements of one port in the three sets.
func guardElems(p guardPort) (port, ip, arp nftables.SetElement) {
	name, mac, addr := ifNameKey(p.ifName), pad4(p.mac), p.ip.AsSlice()
	port = nftables.SetElement{Key: name}
	ip = nftables.SetElement{Key: slices.Concat(name, mac, addr)}
	arp = nftables.SetElement{Key: slices.Concat(name, mac, mac, addr)}
	return port, ip, arp
}

// compileGuard builds the guard table of a bridge with the given ports.
// It is pure; applyGuard sends it.
func compileGuard(tableName string, ports []guardPort) *guardRuleset {
	t, portSet, ipSet, arpSet := guardSets(tableName)
	accept := nftables.ChainPolicyAccept
	prio := nftables.ChainPriority(guardPriority)
	rs := &guardRuleset{
		table: t,
		hook: &nftables.Chain{Table: t, Name: guardChainHook, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookPrerouting, Priority: &prio, Policy: &accept},
		ports:   &nftables.Chain{Table: t, Name: guardChainPorts},
		portSet: portSet, ipSet: ipSet, arpSet: arpSet,
	}
	for _, p := range ports {
		pe, ie, ae := guardElems(p)
		rs.portElems = append(rs.portElems, pe)
		rs.ipElems = append(rs.ipElems, ie)
		rs.arpElems = append(rs.arpElems, ae)
	}
	rule := func(c *nftables.Chain, exprs ...expr.Any) {
		rs.rules = append(rs.rules, &nftables.Rule{Table: t, Chain: c, Exprs: exprs})
	}
	ll := func(off, n uint32, reg uint32) expr.Any {
		return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseLLHeader, Offset: off, Len: n}
	}
	nh := func(off, n uint32, reg uint32) expr.Any {
		return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n}
	}
	eq := func(reg uint32, data ...byte) expr.Any {
		return &expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: data}
	}
	iifname := &expr.Meta{Key: expr.MetaKeyIIFNAME, Register: regIfName}

	// iifname @ports jump from-container
	rule(rs.hook, iifname,
		&expr.Lookup{SourceRegister: regIfName, SetName: portSet.Name, SetID: portSet.ID},
		&expr.Verdict{Kind: expr.VerdictJump, Chain: guardChainPorts})
	// ether type ip iifname . ether saddr . ip saddr @ip-src accept
	rule(rs.ports,
		ll(12, 2, regIfName), eq(regIfName, etherTypeIPv4>>8, etherTypeIPv4&0xff),
		iifname, ll(6, 6, regField2), nh(12, 4, regField3),
		&expr.Lookup{SourceRegister: regIfName, SetName: ipSet.Name, SetID: ipSet.ID},
		&expr.Verdict{Kind: expr.VerdictAccept})
	// ether type arp arp htype 1 arp ptype ip arp hlen 6 arp plen 4
	// iifname . ether saddr . arp saddr ether . arp saddr ip @arp-src accept
	rule(rs.ports,
		ll(12, 2, regIfName), eq(regIfName, etherTypeARP>>8, etherTypeARP&0xff),
		nh(0, 4, regIfName), eq(regIfName, 0, 1, etherTypeIPv4>>8, etherTypeIPv4&0xff),
		nh(4, 2, regIfName), eq(regIfName, 6, 4),
		iifname, ll(6, 6, regField2), nh(8, 6, regField3), nh(14, 4, regField4),
		&expr.Lookup{SourceRegister: regIfName, SetName: arpSet.Name, SetID: arpSet.ID},
		&expr.Verdict{Kind: expr.VerdictAccept})
	// counter drop: whatever else a container port sends (forged sources,
	// IPv6, VLAN tags, other ether types).
	rule(rs.ports, &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop})
	return rs
}

// nftConn opens an nftables connection in the programmed namespace.
func (o *Overlay) nftConn() (*nftables.Conn, error) {
	var opts []nftables.ConnOption
	if o.ns.IsOpen() {
		opts = append(opts, nftables.WithNetNSFd(int(o.ns)))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nftables connection: %w", err)
	}
	return c, nil
}

// applyGuard replaces the guard table with rs in one transaction: add (so
// the delete cannot fail on a fresh namespace), delete, add with
// everything in it.
func (o *Overlay) applyGuard(rs *guardRuleset) error {
	c, err := o.nftConn()
	if err != nil {
		return err
	}
	c.AddTable(rs.table)
	c.DelTable(rs.table)
	c.AddTable(rs.table)
	c.AddChain(rs.hook)
	c.AddChain(rs.ports)
	for _, s := range []struct {
		set   *nftables.Set
		elems []nftables.SetElement
	}{{rs.portSet, rs.portElems}, {rs.ipSet, rs.ipElems}, {rs.arpSet, rs.arpElems}} {
		if err := c.AddSet(s.set, s.elems); err != nil {
			return fmt.Errorf("add set %s: %w", s.set.Name, err)
		}
	}
	for _, r := range rs.rules {
		c.AddRule(r)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("replace nftables table bridge %s: %w", rs.table.Name, err)
	}
	return nil
}

// guardPortsLocked lists the ports the guard table holds: one per
// container with an address, unless its veth name belongs to another
// container (a prefix collision, attach.go). A container whose veth does
// not exist yet (an Attach under way) or any more (a Detach to come) is
// included: its entries name a port only it can have. o.mu must be held.
func (o *Overlay) guardPortsLocked() ([]guardPort, error) {
	attached := o.ipam.All()
	links, err := o.h.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("list links: %w", err)
	}
	aliasOf := make(map[string]string, len(links))
	for _, l := range links {
		aliasOf[l.Attrs().Name] = l.Attrs().Alias
	}
	var ports []guardPort
	for _, id := range ipam.SortedIDs(attached) {
		name := vethName(o.cfg.VethPrefix, id)
		if alias := aliasOf[name]; alias != "" && alias != id {
			continue
		}
		ip := attached[id]
		ports = append(ports, guardPort{ifName: name, mac: containerMAC(ip), ip: ip})
	}
	return ports, nil
}

// syncGuardLocked replaces the guard table with one built from the
// allocations (guardPortsLocked). It takes o.guardMu, which orders it
// against Attach's and Detach's element updates; the allocations are read
// under it, so an address allocated later has its elements added after
// this rebuild. o.mu must be held (shared is enough).
func (o *Overlay) syncGuardLocked() error {
	o.guardMu.Lock()
	defer o.guardMu.Unlock()
	ports, err := o.guardPortsLocked()
	if err == nil {
		err = o.applyGuard(compileGuard(guardTableName(o.cfg.BridgeName), ports))
	}
	if err != nil {
		return fmt.Errorf("guard: %w", err)
	}
	return nil
}

// guardAdd lets the port named ifName carry frames from the container at
// ip (and only those), in one transaction. When that fails (the table was
// deleted underneath) it rebuilds the whole table, which holds the
// container once it has its address. o.mu must be held (shared is
// enough).
func (o *Overlay) guardAdd(ifName string, ip netip.Addr) error {
	err := o.guardElemsOp(ifName, ip, true)
	if err == nil {
		return nil
	}
	o.cfg.Logger.Warn("overlay: guard entries not added; rebuilding the table", "device", ifName, "err", err)
	return o.syncGuardLocked()
}

// guardRemove takes the address entries of the container at ip off the
// port named ifName; the port stays in the ports set (fail closed) until
// the next Setup rebuilds the table. Missing entries, or a missing table,
// are fine. o.mu must be held (shared is enough).
func (o *Overlay) guardRemove(ifName string, ip netip.Addr) error {
	err := o.guardElemsOp(ifName, ip, false)
	if errors.Is(err, unix.ENOENT) {
		return nil // no table: nothing to remove
	}
	return err
}

// guardElemsOp adds or removes the elements of one port in one transaction
// under o.guardMu. Removal adds the address elements first (an existing
// element is no error without NLM_F_EXCL), so it succeeds whether they
// were there or not; it leaves the port's name in the ports set.
func (o *Overlay) guardElemsOp(ifName string, ip netip.Addr, add bool) error {
	o.guardMu.Lock()
	defer o.guardMu.Unlock()
	c, err := o.nftConn()
	if err != nil {
		return err
	}
	_, portSet, ipSet, arpSet := guardSets(guardTableName(o.cfg.BridgeName))
	pe, ie, ae := guardElems(guardPort{ifName: ifName, mac: containerMAC(ip), ip: ip})
	op := "remove"
	if add {
		op = "add"
		if err := c.SetAddElements(portSet, []nftables.SetElement{pe}); err != nil {
			return err
		}
	}
	for _, s := range []struct {
		set *nftables.Set
		e   nftables.SetElement
	}{{ipSet, ie}, {arpSet, ae}} {
		if err := c.SetAddElements(s.set, []nftables.SetElement{s.e}); err != nil {
			return err
		}
		if !add {
			if err := c.SetDeleteElements(s.set, []nftables.SetElement{s.e}); err != nil {
				return err
			}
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("guard: %s the entries of %s (%s) in table bridge %s: %w", op, ifName, ip, guardTableName(o.cfg.BridgeName), err)
	}
	return nil
}

// deleteGuardLocked deletes the guard table (Teardown). A missing table is
// fine. o.mu must be held.
func (o *Overlay) deleteGuardLocked() error {
	o.guardMu.Lock()
	defer o.guardMu.Unlock()
	c, err := o.nftConn()
	if err != nil {
		return err
	}
	t, _, _, _ := guardSets(guardTableName(o.cfg.BridgeName))
	c.AddTable(t)
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("delete nftables table bridge %s: %w", t.Name, err)
	}
	return nil
}
