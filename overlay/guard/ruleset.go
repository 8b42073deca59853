package guard

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
// already fixed (the overlay gives it 0a:58 + IP) and its address is
// known, so each port is bound to both, as the CNI bridge plugin's
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
//   - **Keyed by interface name, in sets.** The overlay derives veth names
//     from the container ID, so the entries survive a veth's re-attachment
//     to a re-created bridge and an agent restart, and one chain serves any
//     number of containers: Attach adds a container's three elements and
//     Detach removes its address entries, each in one transaction (Add,
//     Remove).
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
//   - **Compute, then apply.** compile is pure (ruleset, traced frame by
//     frame in trace_test.go); Setup replaces the whole table in one
//     transaction (Sync: add, delete, add again: the kernel switches
//     atomically) from the address allocations (Config.Ports), which also
//     drops stale entries. A table deleted by hand is fail-open until the
//     next Setup (Run's resync timer) or Attach (Add rebuilds the table
//     when its element transaction fails) brings it back. A kernel without
//     nftables for the bridge family fails Setup (ErrPartial) and every
//     Attach: containers do not start unguarded.

import (
	"net"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Names and constants of the table.
const (
	tablePrefix = "shoal-guard-" // + the bridge name: one table per overlay
	chainHook   = "prerouting"
	chainPorts  = "from-container"
	setPorts    = "ports"
	setIP       = "ip-src"
	setARP      = "arp-src"
	// priority runs the chain before every other bridge prerouting hook
	// (NF_BR_PRI_FIRST is INT_MIN; br_netfilter's hook is at 0).
	priority = -300

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

// Port is one container port: the frames entering the bridge from the
// host veth IfName must come from MAC and IP, the container's own.
type Port struct {
	IfName string
	MAC    net.HardwareAddr
	IP     netip.Addr
}

// ruleset is the whole content of the table, in the order it is added
// (sets before the rules that look them up).
type ruleset struct {
	table                  *nftables.Table
	hook, ports            *nftables.Chain
	portSet, ipSet, arpSet *nftables.Set
	portElems              []nftables.SetElement
	ipElems, arpElems      []nftables.SetElement
	rules                  []*nftables.Rule
}

// TableName is the table of the overlay whose bridge is bridge (`nft list
// table bridge NAME` shows it).
func TableName(bridge string) string { return tablePrefix + bridge }

// sets returns the table and its sets as objects that name them
// (for element updates on the existing table). IDs are batch-local and
// set here: the library's own counter is a global without a lock.
func sets(tableName string) (*nftables.Table, *nftables.Set, *nftables.Set, *nftables.Set) {
	t := &nftables.Table{Family: nftables.TableFamilyBridge, Name: tableName}
	ports := &nftables.Set{Table: t, ID: 1, Name: setPorts, KeyType: nftables.TypeIFName}
	ip := &nftables.Set{Table: t, ID: 2, Name: setIP, Concatenation: true,
		KeyType: nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeEtherAddr, nftables.TypeIPAddr)}
	arp := &nftables.Set{Table: t, ID: 3, Name: setARP, Concatenation: true,
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

// elems returns the elements of one port in the three sets.
func elems(p Port) (port, ip, arp nftables.SetElement) {
	name, mac, addr := ifNameKey(p.IfName), pad4(p.MAC), p.IP.AsSlice()
	port = nftables.SetElement{Key: name}
	ip = nftables.SetElement{Key: slices.Concat(name, mac, addr)}
	arp = nftables.SetElement{Key: slices.Concat(name, mac, mac, addr)}
	return port, ip, arp
}

// compile builds the table tableName with the given ports. It is pure;
// Table.Sync sends what it returns.
func compile(tableName string, ports []Port) *ruleset {
	t, portSet, ipSet, arpSet := sets(tableName)
	accept := nftables.ChainPolicyAccept
	prio := nftables.ChainPriority(priority)
	rs := &ruleset{
		table: t,
		hook: &nftables.Chain{Table: t, Name: chainHook, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookPrerouting, Priority: &prio, Policy: &accept},
		ports:   &nftables.Chain{Table: t, Name: chainPorts},
		portSet: portSet, ipSet: ipSet, arpSet: arpSet,
	}
	for _, p := range ports {
		pe, ie, ae := elems(p)
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
		&expr.Verdict{Kind: expr.VerdictJump, Chain: chainPorts})
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
