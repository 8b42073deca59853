package lb

// The rule set (see README.md for the picture and the why).
//
// Everything lives in one `table ip <TableName>` the LB owns: every sync
// makes the table this rule set in one nftables transaction (in place, or
// deleted and re-added whole: delta.go), so the kernel switches from the
// old rule set to the new one atomically (a `numgen mod N` rule and its map
// always change together), and a failed sync leaves the previous rule set
// in place; the next sync replaces the table whole (kube-proxy's "full
// resync after a failed partial one").
//
// compile is pure: State in, ruleset out. apply (lb.go) only replays the
// ruleset on a netlink connection, and the tests trace packets through the
// very same expressions (trace_test.go).

import (
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/shoal-org/shoal/api"
	"golang.org/x/sys/unix"
)

// Chain names of the fixed skeleton.
const (
	chainPrerouting           = "prerouting"      // nat, hook prerouting, dstnat
	chainOutput               = "output"          // nat, hook output, dstnat
	chainPostrouting          = "postrouting"     // nat, hook postrouting, srcnat
	chainRejectPre            = "reject-pre"      // filter, hook prerouting, dstnat-10
	chainRejectOut            = "reject-out"      // filter, hook output, dstnat-10
	chainServices             = "services"        // VIP and published-port dispatch
	chainNoBackends           = "no-backends"     // rejects for services without backends
	chainServicesOut          = "services-out"    // services for the node itself (with networks)
	chainNoBackendsOut        = "no-backends-out" // rejects for the node itself (with networks)
	chainFilterForward        = "filter-forward"  // filter, hook forward: networks apart, closed to the outside
	chainFilterInput          = "filter-input"    // filter, hook input: VXLAN from peers, DNS for containers
	chainMeshMark             = "mesh-mark"       // filter, hook prerouting, mangle: routing-mesh replies back to the ingress node
	ctStateNewBit             = 0x8               // NF_CT_STATE_BIT(NEW)
	setVXLANPeers             = "vxlan-peers"     // State.Peers
	setBridges                = "bridges"         // every network's bridge (with networks)
	setOverlayDevs            = "overlay-devs"    // every network's VXLAN (or WireGuard) device (with networks)
	setNodeIPs                = "node-ips"        // Config.NodeIPs, when given
	rtnLocal                  = 2                 // RTN_LOCAL, the fib address type of local addresses
	ipsDstNAT                 = 0x20              // IPS_DST_NAT conntrack status bit
	ctStateEstablishedRelated = 0x2 | 0x4         // NF_CT_STATE_BIT(ESTABLISHED) | NF_CT_STATE_BIT(RELATED)
	icmpPortUnreach           = 3                 // ICMP code port unreachable
	ifNameLen                 = unix.IFNAMSIZ     // meta iifname/oifname compare length
	maxObjectNameSize         = 200               // well below NFT_NAME_MAXLEN (256)
	regAddr                   = unix.NFT_REG_1    // 16-byte registers, as nft uses them
	regPort                   = unix.NFT_REG_2    //
	protoTCP                  = unix.IPPROTO_TCP
	protoUDP                  = unix.IPPROTO_UDP
)

// ruleset is one complete content of the LB's table, in the order it must
// be added (sets before the rules that look them up).
type ruleset struct {
	table  *nftables.Table
	chains []*nftables.Chain
	sets   []setSpec
	rules  []*nftables.Rule
	// keys are the rules' wire forms by chain, made once (ruleKeys): the
	// LB keeps the rule set it programmed and compares the next with it.
	keys map[string][][]byte
}

type setSpec struct {
	set   *nftables.Set
	elems []nftables.SetElement
}

func (rs *ruleset) chain(name string) *nftables.Chain {
	for _, c := range rs.chains {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func (rs *ruleset) set(name string) *setSpec {
	for i := range rs.sets {
		if rs.sets[i].set.Name == name {
			return &rs.sets[i]
		}
	}
	return nil
}

func (rs *ruleset) addChain(c *nftables.Chain) *nftables.Chain {
	c.Table = rs.table
	rs.chains = append(rs.chains, c)
	return c
}

func (rs *ruleset) addRule(c *nftables.Chain, exprs ...expr.Any) {
	rs.rules = append(rs.rules, &nftables.Rule{Table: rs.table, Chain: c, Exprs: exprs})
}

func (rs *ruleset) addSet(s *nftables.Set, elems []nftables.SetElement) *nftables.Set {
	s.Table = rs.table
	s.ID = uint32(len(rs.sets) + 1) // batch-local ID; we add every set of the batch
	rs.sets = append(rs.sets, setSpec{set: s, elems: elems})
	return s
}

// compile turns a resolved State (State.resolve) into the table content
// for cfg.
func compile(cfg Config, st State) *ruleset {
	rs := &ruleset{table: &nftables.Table{Family: nftables.TableFamilyIPv4, Name: cfg.TableName}}
	accept := nftables.ChainPolicyAccept
	base := func(name string, typ nftables.ChainType, hook *nftables.ChainHook, prio nftables.ChainPriority) *nftables.Chain {
		return rs.addChain(&nftables.Chain{Name: name, Type: typ, Hooknum: hook,
			Priority: nftables.ChainPriorityRef(prio), Policy: &accept})
	}
	// With networks the table keeps them apart and closes them to the
	// outside; without, it is the single flat overlay of Config.
	filtered := len(st.Networks) > 0
	nets := st.Networks
	if !filtered {
		nets = []Network{{Subnet: cfg.ClusterCIDR, Bridge: cfg.BridgeName, VXLAN: cfg.VXLANName}}
	}
	netByName := map[string]Network{}
	for _, n := range nets {
		netByName[n.Name] = n
	}

	pre := base(chainPrerouting, nftables.ChainTypeNAT, nftables.ChainHookPrerouting, *nftables.ChainPriorityNATDest)
	out := base(chainOutput, nftables.ChainTypeNAT, nftables.ChainHookOutput, *nftables.ChainPriorityNATDest)
	post := base(chainPostrouting, nftables.ChainTypeNAT, nftables.ChainHookPostrouting, *nftables.ChainPriorityNATSource)
	rejPre := base(chainRejectPre, nftables.ChainTypeFilter, nftables.ChainHookPrerouting, *nftables.ChainPriorityNATDest-10)
	rejOut := base(chainRejectOut, nftables.ChainTypeFilter, nftables.ChainHookOutput, *nftables.ChainPriorityNATDest-10)
	services := rs.addChain(&nftables.Chain{Name: chainServices})
	noBackends := rs.addChain(&nftables.Chain{Name: chainNoBackends})
	// The node itself may use every VIP: in output, VIPs are not bound to
	// a source network. Without networks one chain serves both hooks.
	servicesOut, noBackendsOut := services, noBackends
	if filtered {
		servicesOut = rs.addChain(&nftables.Chain{Name: chainServicesOut})
		noBackendsOut = rs.addChain(&nftables.Chain{Name: chainNoBackendsOut})
	}

	// The embedded DNS server's address is never a published port's: a
	// service publishing 53 would otherwise take (or, without backends,
	// refuse) every container's queries, `fib daddr type local` counting
	// the bridge address among the node's.
	if dns := st.DNS.To4(); dns != nil {
		for _, c := range []*nftables.Chain{pre, out, rejPre, rejOut} {
			for _, proto := range []byte{protoUDP, protoTCP} {
				rs.addRule(c, concat(matchAddr(16, dns), matchL4(proto), matchDport(53),
					[]expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}})...)
			}
		}
	}
	rs.addRule(pre, jump(chainServices))
	rs.addRule(out, jump(servicesOut.Name))
	rs.addRule(rejPre, jump(chainNoBackends))
	rs.addRule(rejOut, jump(noBackendsOut.Name))

	for _, n := range nets {
		// Same host and hairpin: client and backend both behind the
		// bridge. Without masquerade the backend would answer the client
		// directly over L2 and the client would drop a reply from an
		// address it never called.
		rs.addRule(post, concat(
			ctStatusDNAT(),
			ifname(expr.MetaKeyIIFNAME, n.Bridge),
			ifname(expr.MetaKeyOIFNAME, n.Bridge),
			[]expr.Any{&expr.Counter{}, &expr.Masq{}},
		)...)
		if cfg.MeshMasquerade || n.Routed {
			// Routing mesh, the old way: a connection from outside the
			// network DNATed to a backend on another node is masqueraded so
			// it returns through this node. Without it, the backend's node
			// sends the reply back here by policy routing (compileMeshReturn).
			rs.addRule(post, concat(
				ctStatusDNAT(),
				notInNet(12, n.Subnet),
				ifname(expr.MetaKeyOIFNAME, n.VXLAN),
				[]expr.Any{&expr.Counter{}, &expr.Masq{}},
			)...)
		}
		if cfg.MasqueradeEgress && !n.Internal {
			// Containers to the world outside their network.
			rs.addRule(post, concat(
				inNet(12, n.Subnet),
				notInNet(16, n.Subnet),
				[]expr.Any{&expr.Counter{}, &expr.Masq{}},
			)...)
		}
	}

	// Where published ports answer.
	var published []expr.Any
	if len(cfg.NodeIPs) > 0 {
		elems := make([]nftables.SetElement, 0, len(cfg.NodeIPs))
		seen := map[string]bool{}
		for _, ip := range cfg.NodeIPs {
			if !seen[ip.String()] {
				seen[ip.String()] = true
				elems = append(elems, nftables.SetElement{Key: ip.To4()})
			}
		}
		s := rs.addSet(&nftables.Set{Name: setNodeIPs, KeyType: nftables.TypeIPAddr}, elems)
		published = []expr.Any{
			loadAddr(16),
			&expr.Lookup{SourceRegister: regAddr, SetName: s.Name, SetID: s.ID},
		}
	} else {
		published = concat(
			[]expr.Any{
				&expr.Fib{Register: regAddr, ResultADDRTYPE: true, FlagDADDR: true},
				&expr.Cmp{Op: expr.CmpOpEq, Register: regAddr, Data: binaryutil.NativeEndian.PutUint32(rtnLocal)},
			},
			// 127.0.0.0/8 never reaches prerouting; from the node itself a
			// DNAT of a loopback connection to another host cannot work.
			notInNet(16, &net.IPNet{IP: net.IPv4(127, 0, 0, 0).To4(), Mask: net.CIDRMask(8, 32)}),
		)
	}
	// vipSource restricts a VIP rule of prerouting to its network's
	// containers: a source address of the network arriving through the
	// network's bridge (this node's containers) or its VXLAN device (other
	// nodes' containers; for a routed network the WireGuard device, which
	// only lets a peer send from its own shares). The address alone is not
	// enough: a LAN host, or a container of another network, can send from
	// any address it likes. The node's own traffic takes the output hook.
	netIfs := map[string]*nftables.Set{}
	if filtered {
		for i, n := range nets {
			elems := []nftables.SetElement{{Key: ifnameBytes(n.Bridge)}}
			if n.VXLAN != n.Bridge {
				elems = append(elems, nftables.SetElement{Key: ifnameBytes(n.VXLAN)})
			}
			netIfs[n.Name] = rs.addSet(&nftables.Set{Name: fmt.Sprintf("net%d-ifs", i), KeyType: nftables.TypeIFName}, elems)
		}
	}
	vipSource := func(s Service) []expr.Any {
		if !filtered {
			return nil
		}
		n, ok := netByName[s.Network]
		if s.Network == "" {
			n, ok = nets[0], true
		}
		if !ok {
			return nil // resolve left such a VIP out
		}
		ifs := netIfs[n.Name]
		return concat([]expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: regAddr},
			&expr.Lookup{SourceRegister: regAddr, SetName: ifs.Name, SetID: ifs.ID},
		}, inNet(12, n.Subnet))
	}
	both := func(a, b *nftables.Chain, exprs ...expr.Any) {
		rs.addRule(a, exprs...)
		if b != a {
			rs.addRule(b, exprs...)
		}
	}

	names := objectNames(st.Services)
	for _, s := range st.Services {
		name := names[s.Name]
		ports := s.Ports
		if len(s.Backends) == 0 {
			if s.VIP != nil {
				rs.addRule(noBackends, concat(vipSource(s), matchAddr(16, s.VIP), matchL4(protoTCP), rejectTCP())...)
				rs.addRule(noBackends, concat(vipSource(s), matchAddr(16, s.VIP), rejectICMP())...)
				if filtered {
					rs.addRule(noBackendsOut, concat(matchAddr(16, s.VIP), matchL4(protoTCP), rejectTCP())...)
					rs.addRule(noBackendsOut, concat(matchAddr(16, s.VIP), rejectICMP())...)
				}
			}
			for _, p := range ports {
				if p.Mode == api.PublishHost {
					continue // published only where a task runs: not here
				}
				proto, _ := protoNumber(p.Protocol)
				r := concat(published, matchL4(proto), matchDport(p.Published))
				if proto == protoTCP {
					r = concat(r, rejectTCP())
				} else {
					r = concat(r, rejectICMP())
				}
				both(noBackends, noBackendsOut, r...)
			}
			continue
		}

		elems := make([]nftables.SetElement, len(s.Backends))
		for i, b := range s.Backends {
			elems[i] = nftables.SetElement{Key: binaryutil.NativeEndian.PutUint32(uint32(i)), Val: b.IP.To4()}
		}
		m := rs.addSet(&nftables.Set{
			Name:         "be-" + name,
			IsMap:        true,
			KeyType:      nftables.TypeInteger,
			KeyByteOrder: binaryutil.NativeEndian,
			DataType:     nftables.TypeIPAddr,
		}, elems)
		n := uint32(len(s.Backends))

		if s.VIP != nil {
			// VIP mode: every port of the VIP, port kept.
			svc := rs.addChain(&nftables.Chain{Name: "svc-" + name})
			rs.addRule(services, concat(vipSource(s), matchAddr(16, s.VIP), []expr.Any{goTo(svc.Name)})...)
			if filtered {
				rs.addRule(servicesOut, concat(matchAddr(16, s.VIP), []expr.Any{goTo(svc.Name)})...)
			}
			rs.addRule(svc, concat([]expr.Any{&expr.Counter{}}, dnatMap(m, n, 0))...)
		}
		var hostMap *nftables.Set // local backends, for host-mode ports
		var local []nftables.SetElement
		for _, b := range s.Backends {
			if b.Local {
				local = append(local, nftables.SetElement{Key: binaryutil.NativeEndian.PutUint32(uint32(len(local))), Val: b.IP.To4()})
			}
		}
		nLocal := uint32(len(local))
		for _, p := range ports {
			proto, _ := protoNumber(p.Protocol)
			if p.Mode == api.PublishHost {
				// Host mode (Swarm's mode=host): only on a node running a
				// task, only to its local tasks. The connection goes from
				// the node's interface to the bridge, so no masquerade rule
				// matches and the task sees the client's address.
				if nLocal == 0 {
					continue // no task here: not published on this node
				}
				if hostMap == nil {
					hostMap = rs.addSet(&nftables.Set{
						Name:         "beh-" + name,
						IsMap:        true,
						KeyType:      nftables.TypeInteger,
						KeyByteOrder: binaryutil.NativeEndian,
						DataType:     nftables.TypeIPAddr,
					}, local)
				}
				pub := rs.addChain(&nftables.Chain{Name: fmt.Sprintf("host-%s-%s-%d", name, protoName(p.Protocol), p.Published)})
				both(services, servicesOut, concat(published, matchL4(proto), matchDport(p.Published), []expr.Any{goTo(pub.Name)})...)
				rs.addRule(pub, concat(matchL4(proto), []expr.Any{&expr.Counter{}}, dnatMap(hostMap, nLocal, p.Target))...)
				continue
			}
			pub := rs.addChain(&nftables.Chain{Name: fmt.Sprintf("pub-%s-%s-%d", name, protoName(p.Protocol), p.Published)})
			both(services, servicesOut, concat(published, matchL4(proto), matchDport(p.Published), []expr.Any{goTo(pub.Name)})...)
			rs.addRule(pub, concat(matchL4(proto), []expr.Any{&expr.Counter{}}, dnatMap(m, n, p.Target))...)
		}
	}
	if !cfg.MeshMasquerade {
		compileMeshReturn(rs, nets)
	}
	if st.Peers != nil {
		elems := []nftables.SetElement{}
		seen := map[string]bool{}
		for _, ip := range st.Peers {
			if ip4 := ip.To4(); ip4 != nil && !seen[ip4.String()] {
				seen[ip4.String()] = true
				elems = append(elems, nftables.SetElement{Key: ip4})
			}
		}
		s := rs.addSet(&nftables.Set{Name: setVXLANPeers, KeyType: nftables.TypeIPAddr}, elems)
		if !cfg.MeshMasquerade {
			// Routing mesh from another node of the cluster (a health
			// check, a node's own client): kept unmasqueraded, a connection
			// balanced to a backend on the client's own node got its reply
			// there straight from the backend (the client's address is a
			// local one, routed before the return rule), and the client,
			// waiting for this node's published address, reset it: one
			// connection in N failed. Masqueraded, the reply comes back here.
			// Peers are nodes: their address is no client address to keep.
			for _, n := range nets {
				if n.Routed || n.VXLAN == "" {
					continue // Routed networks masquerade every remote backend above
				}
				rs.addRule(post, concat(
					ctStatusDNAT(),
					[]expr.Any{loadAddr(12), &expr.Lookup{SourceRegister: regAddr, SetName: s.Name, SetID: s.ID}},
					ifname(expr.MetaKeyOIFNAME, n.VXLAN),
					[]expr.Any{&expr.Counter{}, &expr.Masq{}},
				)...)
			}
		}
	}
	if filtered {
		var elems []nftables.SetElement
		seen := map[string]bool{}
		for _, n := range nets {
			if !seen[n.Bridge] {
				seen[n.Bridge] = true
				elems = append(elems, nftables.SetElement{Key: ifnameBytes(n.Bridge)})
			}
		}
		rs.addSet(&nftables.Set{Name: setBridges, KeyType: nftables.TypeIFName}, elems)
		elems = nil
		for _, n := range nets {
			if n.VXLAN != "" && !seen[n.VXLAN] {
				seen[n.VXLAN] = true
				elems = append(elems, nftables.SetElement{Key: ifnameBytes(n.VXLAN)})
			}
		}
		rs.addSet(&nftables.Set{Name: setOverlayDevs, KeyType: nftables.TypeIFName}, elems)
		compileForwardFilter(cfg, rs, nets, st.PeerPorts)
	}
	compileInputFilter(cfg, rs, st, nets)
	return rs
}

// clusterPort is a port of the cluster's own traffic (Config): VXLAN,
// gossip, raft and RPC, WireGuard.
type clusterPort struct {
	proto byte
	port  int
	// anywhere: closed to containers towards every address outside the
	// container networks, not only towards the peers (VXLAN, which a node
	// takes on all its addresses, trusting the source address alone).
	anywhere bool
}

// clusterPorts lists cfg's cluster ports, defaults filled in, each once.
func clusterPorts(cfg Config) []clusterPort {
	or := func(p, def int) int {
		if p == 0 {
			return def
		}
		return p
	}
	gossip := or(cfg.GossipPort, 7946)
	all := []clusterPort{
		{protoUDP, or(cfg.VXLANPort, 4789), true},
		{protoUDP, cfg.EncryptedVXLANPort, true},
		{protoUDP, gossip, false},
		{protoTCP, gossip, false},
		{protoTCP, or(cfg.ClusterPort, 2377), false},
		{protoUDP, or(cfg.WireGuardPort, 51820), false},
	}
	var out []clusterPort
	for _, p := range all {
		if p.port == 0 {
			continue // no encrypted VXLAN port
		}
		dup := false
		for i, q := range out {
			if q.proto == p.proto && q.port == p.port {
				out[i].anywhere = q.anywhere || p.anywhere
				dup = true
			}
		}
		if !dup {
			out = append(out, p)
		}
	}
	return out
}

// fromBridge matches a packet that entered through a container network's
// bridge (the set of every network's bridge).
func fromBridge(rs *ruleset) []expr.Any { return iifIn(rs, setBridges) }

// fromOverlay matches a packet that entered through a network's device
// towards the other nodes (VXLAN, or WireGuard for an encrypted network):
// what another node's containers send to this node's addresses in their
// network, unmasqueraded. The agents never talk through these devices.
func fromOverlay(rs *ruleset) []expr.Any { return iifIn(rs, setOverlayDevs) }

// iifIn matches a packet whose input device is in the ifname set name.
func iifIn(rs *ruleset, name string) []expr.Any {
	s := rs.set(name).set
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: regAddr},
		&expr.Lookup{SourceRegister: regAddr, SetName: s.Name, SetID: s.ID},
	}
}

// compileMeshReturn marks the connections another node's routing mesh
// forwards here with the client's own address, so that their replies go
// back through that node (see README.md, "Keeping the client's address"):
//
//   - a new connection arriving through a network's VXLAN device from an
//     address outside every network (the client, left unmasqueraded by the
//     ingress node) gets a conntrack mark made of the last four bytes of
//     the inner frame's source MAC, which is the ingress node's VTEP MAC
//     of that network (derived from its node ID, so it identifies the node
//     and survives restarts);
//   - a packet of such a connection coming back from the network's bridge
//     (the backend's reply) carries that mark as its packet mark, and the
//     overlay's policy rule `fwmark M iif BRIDGE lookup M` routes it to the
//     ingress node over the VXLAN device, where conntrack undoes the DNAT.
//
// Only the overlay knows which marks belong to live peers: a mark without
// a rule (the ingress node died) falls through to the main table.
func compileMeshReturn(rs *ruleset, nets []Network) {
	accept := nftables.ChainPolicyAccept
	c := rs.addChain(&nftables.Chain{Name: chainMeshMark, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityMangle, Policy: &accept})
	for _, n := range nets {
		if n.Routed {
			continue // masqueraded instead (Network.Routed)
		}
		rs.addRule(c, concat(
			ifname(expr.MetaKeyIIFNAME, n.VXLAN),
			outsideNets(nets),
			inNet(16, n.Subnet),
			ctStateNew(),
			[]expr.Any{
				// Source MAC bytes 2-5: Ethernet destination (6) + 2.
				&expr.Payload{DestRegister: regAddr, Base: expr.PayloadBaseLLHeader, Offset: 8, Len: 4},
				&expr.Counter{},
				&expr.Ct{Key: expr.CtKeyMARK, Register: regAddr, SourceRegister: true},
			},
		)...)
		rs.addRule(c, concat(
			ifname(expr.MetaKeyIIFNAME, n.Bridge),
			[]expr.Any{
				&expr.Ct{Key: expr.CtKeyMARK, Register: regAddr},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: regAddr, Data: make([]byte, 4)},
				&expr.Meta{Key: expr.MetaKeyMARK, Register: regAddr, SourceRegister: true},
			},
		)...)
	}
}

// outsideNets matches a source address outside every container network.
func outsideNets(nets []Network) []expr.Any {
	var out []expr.Any
	for _, n := range nets {
		out = append(out, notInNet(12, n.Subnet)...)
	}
	return out
}

// compileForwardFilter keeps networks apart and closes them to the
// outside. In order:
//
//   - replies of connections already let through pass;
//   - containers of internal networks reach their own network only
//     (before the next rule: a published port of their own node, DNATed,
//     led to another network's containers);
//   - DNATed connections pass: VIPs are only DNATed for sources on their
//     network (prerouting), and published ports are the way in from
//     anywhere;
//   - a container reaches its own network (this node's bridge, or other
//     nodes through the network's VXLAN device), and a packet from a VXLAN
//     device passes when it stays inside that device's network;
//   - anything else to a container network or a VIP range is dropped:
//     another network's containers and VIPs, and the LAN (a host with a
//     route to 10.42.0.0/16 via this node reaches nothing but published
//     ports);
//   - containers reach none of the cluster's own ports (clusterPorts):
//     VXLAN towards no address at all, the agents' ports and WireGuard not
//     on the peers. Their egress leaves masqueraded to this node's address,
//     which the peers trust as a node: a container's VXLAN would be taken
//     as this node's and decapsulated into any network there;
//   - containers of other networks reach the world (masqueraded in
//     postrouting), other nodes' published ports included.
func compileForwardFilter(cfg Config, rs *ruleset, nets []Network, peerPorts []int) {
	policy := nftables.ChainPolicyAccept
	fwd := rs.addChain(&nftables.Chain{Name: chainFilterForward, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &policy})
	rs.addRule(fwd, concat(ctStateEstablished(), []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}})...)
	// Before DNATed connections pass: a container of an internal network
	// calling its own node's published port (on any address of the node)
	// was DNATed to that service's containers on another network and let
	// through, out of a network that has no way out.
	for _, n := range nets {
		if n.Internal {
			rs.addRule(fwd, concat(ifname(expr.MetaKeyIIFNAME, n.Bridge), notInNet(16, n.Subnet),
				[]expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}})...)
		}
	}
	rs.addRule(fwd, concat(ctStatusDNAT(), []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}})...)
	for _, n := range nets {
		rs.addRule(fwd, concat(ifname(expr.MetaKeyIIFNAME, n.Bridge), inNet(16, n.Subnet),
			[]expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}})...)
		rs.addRule(fwd, concat(ifname(expr.MetaKeyIIFNAME, n.VXLAN), inNet(12, n.Subnet), inNet(16, n.Subnet),
			[]expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}})...)
		// The routing mesh of another node: the client's own address
		// (outside every network) to a container of the device's network.
		rs.addRule(fwd, concat(ifname(expr.MetaKeyIIFNAME, n.VXLAN), outsideNets(nets), inNet(16, n.Subnet),
			[]expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}})...)
	}
	for _, n := range nets {
		for _, p := range []*net.IPNet{n.Subnet, n.VIPs} {
			if p != nil {
				rs.addRule(fwd, concat(inNet(16, p), []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}})...)
			}
		}
	}
	var peers []expr.Any
	if s := rs.set(setVXLANPeers); s != nil {
		peers = []expr.Any{loadAddr(16), &expr.Lookup{SourceRegister: regAddr, SetName: s.set.Name, SetID: s.set.ID}}
	}
	for _, p := range clusterPorts(cfg) {
		r := concat(fromBridge(rs), matchL4(p.proto), matchDport(p.port))
		if !p.anywhere {
			// Without State.Peers the other nodes are unknown: closed
			// towards every address.
			r = concat(r, peers)
		}
		rs.addRule(fwd, concat(r, []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}})...)
	}
	for _, p := range peerOnlyPorts(cfg, peerPorts) {
		rs.addRule(fwd, concat(fromBridge(rs), matchL4(p.proto), matchDport(p.port), peers,
			[]expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}})...)
	}
}

// peerOnlyPorts lists the peers' advertised ports (State.PeerPorts), TCP
// and UDP each, that clusterPorts(cfg) does not already close towards the
// peers, each once, in order.
func peerOnlyPorts(cfg Config, peerPorts []int) []clusterPort {
	closed := clusterPorts(cfg)
	var out []clusterPort
	for _, port := range peerPorts {
		if port <= 0 || port > 65535 {
			continue
		}
		for _, proto := range []byte{protoTCP, protoUDP} {
			p := clusterPort{proto: proto, port: port}
			if slices.ContainsFunc(closed, func(q clusterPort) bool { return q.proto == p.proto && q.port == p.port }) ||
				slices.Contains(out, p) {
				continue
			}
			out = append(out, p)
		}
	}
	return out
}

// compileInputFilter guards what the node itself serves: the cluster's
// ports not to containers (with networks: "a container cannot touch its
// agent", whichever of the node's addresses it calls, its own node's
// containers through their bridges, the other nodes' through the overlay
// devices), VXLAN only from
// peers (st.Peers), the embedded DNS server only for containers (their
// bridges) and the node (loopback), never the LAN, so it is no open
// resolver, and nothing but that DNS to an internal network's containers.
// Everything else (the agent's ports for the LAN and the other
// nodes among it) is left alone.
func compileInputFilter(cfg Config, rs *ruleset, st State, nets []Network) {
	filtered := len(st.Networks) > 0
	if st.Peers == nil && st.DNS == nil && !filtered {
		return
	}
	policy := nftables.ChainPolicyAccept
	in := rs.addChain(&nftables.Chain{Name: chainFilterInput, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &policy})
	dropV := []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}}
	acceptV := []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}
	if filtered {
		for _, p := range clusterPorts(cfg) {
			rs.addRule(in, concat(fromBridge(rs), matchL4(p.proto), matchDport(p.port), dropV)...)
		}
		// The agent's ports from the other nodes' containers too: they
		// reach this node's addresses in their networks (the bridge's,
		// the VXLAN device's) through the overlay, unmasqueraded, where
		// an agent listening on every address (--listen-addr 0.0.0.0)
		// answered them. VXLAN is left to the rules below (peers only;
		// the encrypted networks' port through WireGuard only).
		for _, p := range clusterPorts(cfg) {
			if !p.anywhere {
				rs.addRule(in, concat(fromOverlay(rs), matchL4(p.proto), matchDport(p.port), dropV)...)
			}
		}
	}
	if st.Peers != nil {
		port := cfg.VXLANPort
		if port == 0 {
			port = 4789
		}
		s := rs.set(setVXLANPeers).set
		rs.addRule(in, concat(matchL4(protoUDP), matchDport(port), []expr.Any{
			loadAddr(12),
			&expr.Lookup{SourceRegister: regAddr, SetName: s.Name, SetID: s.ID, Invert: true},
		}, dropV)...)
		if cfg.EncryptedVXLANPort != 0 {
			// Encrypted networks: their VXLAN travels inside WireGuard
			// only. The same packet arriving on the underlay is an
			// injection (or a leak) and goes no further.
			rs.addRule(in, concat(matchL4(protoUDP), matchDport(cfg.EncryptedVXLANPort),
				ifnameNot(expr.MetaKeyIIFNAME, cfg.WireGuardName), dropV)...)
		}
	}
	if dns := st.DNS.To4(); dns != nil {
		for _, proto := range []byte{protoUDP, protoTCP} {
			dnsPort := concat(matchAddr(16, dns), matchL4(proto), matchDport(53))
			rs.addRule(in, concat(dnsPort, ifname(expr.MetaKeyIIFNAME, "lo"), acceptV)...)
			for _, n := range nets {
				rs.addRule(in, concat(dnsPort, ifname(expr.MetaKeyIIFNAME, n.Bridge), acceptV)...)
			}
			rs.addRule(in, concat(dnsPort, dropV)...)
		}
	}
	// Internal networks reach nothing of the node but its DNS (accepted
	// above): a container there called any service listening on the
	// node's addresses (an sshd, a metrics port bound off loopback), its
	// own gateway first, and the network's containers on other nodes
	// reached this node's address in the network through the VXLAN
	// device. Swarm's internal overlays have no way to the host at all.
	// Matched by source (the guard binds a container port to its
	// address, and VXLAN comes only from peers); the node's own traffic
	// to itself (lo) is not a container's; replies to what the node
	// opened pass.
	for _, n := range nets {
		if !filtered || !n.Internal {
			continue
		}
		from := concat(ifnameNot(expr.MetaKeyIIFNAME, "lo"), inNet(12, n.Subnet))
		rs.addRule(in, concat(from, ctStateEstablished(), acceptV)...)
		rs.addRule(in, concat(from, dropV)...)
	}
}

// objectNames gives every service a unique, printable name for its chains
// and maps (service names are user input).
func objectNames(svcs []Service) map[string]string {
	out := make(map[string]string, len(svcs))
	used := map[string]bool{}
	for i, s := range svcs {
		n := strings.Map(func(r rune) rune {
			if r == '-' || r == '_' || r == '.' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
				return r
			}
			return '_'
		}, s.Name)
		if len(n) > maxObjectNameSize {
			n = n[:maxObjectNameSize]
		}
		if used[n] {
			n = fmt.Sprintf("%s~%d", n, i)
		}
		used[n] = true
		out[s.Name] = n
	}
	return out
}

func concat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func jump(chain string) *expr.Verdict { return &expr.Verdict{Kind: expr.VerdictJump, Chain: chain} }
func goTo(chain string) *expr.Verdict { return &expr.Verdict{Kind: expr.VerdictGoto, Chain: chain} }

// loadAddr loads the IPv4 source (offset 12) or destination (16) address.
func loadAddr(offset uint32) *expr.Payload {
	return &expr.Payload{DestRegister: regAddr, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4}
}

func matchAddr(offset uint32, ip net.IP) []expr.Any {
	return []expr.Any{loadAddr(offset), &expr.Cmp{Op: expr.CmpOpEq, Register: regAddr, Data: ip.To4()}}
}

func notInNet(offset uint32, n *net.IPNet) []expr.Any { return netMatch(offset, n, expr.CmpOpNeq) }
func inNet(offset uint32, n *net.IPNet) []expr.Any    { return netMatch(offset, n, expr.CmpOpEq) }

func netMatch(offset uint32, n *net.IPNet, op expr.CmpOp) []expr.Any {
	mask := net.IP(n.Mask).To4()
	if mask == nil { // a 16-byte mask of an IPv4 network
		mask = net.IP(n.Mask[len(n.Mask)-4:])
	}
	return []expr.Any{
		loadAddr(offset),
		&expr.Bitwise{SourceRegister: regAddr, DestRegister: regAddr, Len: 4, Mask: []byte(mask), Xor: make([]byte, 4)},
		&expr.Cmp{Op: op, Register: regAddr, Data: n.IP.Mask(n.Mask).To4()},
	}
}

func matchL4(proto byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: regAddr},
		&expr.Cmp{Op: expr.CmpOpEq, Register: regAddr, Data: []byte{proto}},
	}
}

// matchDport matches the TCP/UDP destination port; it must follow matchL4.
func matchDport(port int) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: regAddr, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: regAddr, Data: binaryutil.BigEndian.PutUint16(uint16(port))},
	}
}

func ifname(key expr.MetaKey, name string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: regAddr},
		&expr.Cmp{Op: expr.CmpOpEq, Register: regAddr, Data: ifnameBytes(name)},
	}
}

// ifnameBytes is name as meta iifname/oifname loads it: NUL-padded to
// IFNAMSIZ.
func ifnameBytes(name string) []byte {
	data := make([]byte, ifNameLen)
	copy(data, name)
	return data
}

func ifnameNot(key expr.MetaKey, name string) []expr.Any {
	m := ifname(key, name)
	m[1].(*expr.Cmp).Op = expr.CmpOpNeq
	return m
}

// ctStateEstablished is `ct state established,related`.
func ctStateEstablished() []expr.Any { return ctAnyBit(expr.CtKeySTATE, ctStateEstablishedRelated) }

// ctStateNew is `ct state new`.
func ctStateNew() []expr.Any { return ctAnyBit(expr.CtKeySTATE, ctStateNewBit) }

// ctStatusDNAT is `ct status dnat`.
func ctStatusDNAT() []expr.Any { return ctAnyBit(expr.CtKeySTATUS, ipsDstNAT) }

// ctAnyBit matches when the conntrack field key has any bit of mask set.
func ctAnyBit(key expr.CtKey, mask uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: regAddr, Key: key},
		&expr.Bitwise{SourceRegister: regAddr, DestRegister: regAddr, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(mask), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: regAddr, Data: make([]byte, 4)},
	}
}

// dnatMap is `dnat to numgen random mod n map @m [: port]`. The modulus and
// the map are built from the same backend list in the same transaction: a
// key without an element would mean no DNAT at all (recipe §6).
func dnatMap(m *nftables.Set, n uint32, port int) []expr.Any {
	out := []expr.Any{
		&expr.Numgen{Register: regAddr, Modulus: n, Type: unix.NFT_NG_RANDOM},
		&expr.Lookup{SourceRegister: regAddr, DestRegister: regAddr, IsDestRegSet: true, SetName: m.Name, SetID: m.ID},
	}
	nat := &expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: regAddr}
	if port != 0 {
		out = append(out, &expr.Immediate{Register: regPort, Data: binaryutil.BigEndian.PutUint16(uint16(port))})
		nat.RegProtoMin = regPort
	}
	return append(out, nat)
}

func rejectTCP() []expr.Any {
	return []expr.Any{&expr.Counter{}, &expr.Reject{Type: unix.NFT_REJECT_TCP_RST}}
}

func rejectICMP() []expr.Any {
	return []expr.Any{&expr.Counter{}, &expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: icmpPortUnreach}}
}
