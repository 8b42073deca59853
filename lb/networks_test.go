package lb

import (
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/shoal-org/shoal/api"
)

var (
	fwd = nftables.ChainHookForward
	in  = nftables.ChainHookInput
)

func cidr(s string) *net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return n
}

// netState is a node (index 1) with three networks: default, front and
// the internal back; api is on front and back.
func netState() State {
	return State{
		Networks: []Network{
			{Name: "default", Subnet: cidr("10.42.0.0/16"), VIPs: cidr("10.43.0.0/16"), Bridge: "shoal0", VXLAN: "shoal.vx"},
			{Name: "front", Subnet: cidr("10.50.0.0/16"), Bridge: "shb1093", VXLAN: "shv1093"},
			{Name: "back", Subnet: cidr("10.51.0.0/16"), Bridge: "shb1094", VXLAN: "shv1094", Internal: true},
		},
		Services: []Service{
			{Name: "web", Network: "default", VIP: net.ParseIP("10.43.0.10"), Backends: backends("10.42.1.2", "10.42.2.2"),
				Ports: []api.PortConfig{{Published: 8080, Target: 80, Protocol: "tcp"}}},
			{Name: "api", Network: "front", VIP: net.ParseIP("10.50.128.1"), Backends: backends("10.50.0.130", "10.50.1.5")},
			{Name: "api@back", Network: "back", VIP: net.ParseIP("10.51.128.1"), Backends: backends("10.51.0.130")},
			{Name: "idle", Network: "front", VIP: net.ParseIP("10.50.128.9")},
		},
		Peers: ips("10.213.1.12", "10.213.1.13"),
		DNS:   net.ParseIP("10.42.1.1"),
	}
}

func TestNetworksTrace(t *testing.T) {
	const (
		lan   = "10.213.1.99" // a LAN host with a route to the cluster via this node
		node  = "10.213.1.11"
		cDef  = "10.42.1.3"   // containers on this node, one per network
		cFr   = "10.50.0.131" //
		cBack = "10.51.0.131" //
	)
	accept, drop := []string{"accept"}, []string{"drop"}
	tcp := func(hook *nftables.ChainHook, iif, oif, saddr, daddr string, dport uint16) packet {
		return packet{hook: hook, iif: iif, oif: oif, saddr: saddr, daddr: daddr, proto: protoTCP, dport: dport}
	}
	udp := func(hook *nftables.ChainHook, iif, saddr, daddr string, dport uint16) packet {
		return packet{hook: hook, iif: iif, saddr: saddr, daddr: daddr, proto: protoUDP, dport: dport}
	}
	with := func(p packet, f func(*packet)) packet { f(&p); return p }
	dnated := func(p *packet) { p.dnat = true }
	cases := []struct {
		name string
		p    packet
		want []string
	}{
		// VIPs answer only their network's containers (and the node).
		{"default container to default VIP", tcp(pre, "shoal0", "", cDef, "10.43.0.10", 80), dnats(0, "10.42.1.2", "10.42.2.2")},
		{"front container to default VIP", tcp(pre, "shb1093", "", cFr, "10.43.0.10", 80), accept},
		{"front container to front VIP", tcp(pre, "shb1093", "", cFr, "10.50.128.1", 80), dnats(0, "10.50.0.130", "10.50.1.5")},
		{"default container to front VIP", tcp(pre, "shoal0", "", cDef, "10.50.128.1", 80), accept},
		{"back container to api's back VIP", tcp(pre, "shb1094", "", cBack, "10.51.128.1", 80), dnats(0, "10.51.0.130")},
		{"remote front container via VXLAN to front VIP", tcp(pre, "shv1093", "", "10.50.1.9", "10.50.128.1", 80), dnats(0, "10.50.0.130", "10.50.1.5")},
		{"LAN to default VIP", tcp(pre, "eth0", "", lan, "10.43.0.10", 80), accept},
		{"LAN to front VIP", tcp(pre, "eth0", "", lan, "10.50.128.1", 80), accept},
		{"node to front VIP", tcp(out, "", "", node, "10.50.128.1", 80), dnats(0, "10.50.0.130", "10.50.1.5")},
		{"LAN to published port", with(tcp(pre, "eth0", "", lan, node, 8080), func(p *packet) { p.local = true }), dnats(80, "10.42.1.2", "10.42.2.2")},
		{"front container to VIP without backends", tcp(pre, "shb1093", "", cFr, "10.50.128.9", 80), []string{"reset"}},
		{"LAN to VIP without backends: not even a reset", tcp(pre, "eth0", "", lan, "10.50.128.9", 80), accept},
		{"node to VIP without backends", tcp(out, "", "", node, "10.50.128.9", 80), []string{"reset"}},

		// Networks apart.
		{"front to default container", tcp(fwd, "shb1093", "shoal.vx", cFr, "10.42.2.2", 80), drop},
		{"default to front container", tcp(fwd, "shoal0", "shb1093", cDef, "10.50.0.130", 80), drop},
		{"front to back container", tcp(fwd, "shb1093", "shb1094", cFr, "10.51.0.130", 80), drop},
		{"front to remote front container", tcp(fwd, "shb1093", "shv1093", cFr, "10.50.1.5", 80), accept},
		{"front to local front container", tcp(fwd, "shb1093", "shb1093", cFr, "10.50.0.130", 80), accept},
		{"front to default VIP, not DNATed", tcp(fwd, "shb1093", "eth0", cFr, "10.43.0.10", 80), drop},
		{"front to back VIP, not DNATed", tcp(fwd, "shb1093", "eth0", cFr, "10.51.128.1", 80), drop},
		{"front VIP DNATed to a front backend", with(tcp(fwd, "shb1093", "shv1093", cFr, "10.50.1.5", 80), dnated), accept},
		{"VXLAN inside its network", tcp(fwd, "shv1093", "shb1093", "10.50.1.5", "10.50.0.130", 80), accept},
		{"VXLAN from another network's address", tcp(fwd, "shv1093", "shb1093", "10.42.2.2", "10.50.0.130", 80), drop},
		{"VXLAN of the default network to a front container", tcp(fwd, "shoal.vx", "shb1093", "10.50.1.5", "10.50.0.130", 80), drop},

		// Closed to the outside.
		{"LAN to a container", tcp(fwd, "eth0", "shoal0", lan, "10.42.1.2", 80), drop},
		{"LAN to a front container", tcp(fwd, "eth0", "shb1093", lan, "10.50.0.130", 80), drop},
		{"LAN to a VIP (not DNATed)", tcp(fwd, "eth0", "shoal0", lan, "10.43.0.10", 80), drop},
		{"LAN to a remote container", tcp(fwd, "eth0", "shoal.vx", lan, "10.42.2.2", 80), drop},
		{"LAN through a published port", with(tcp(fwd, "eth0", "shoal0", lan, "10.42.1.2", 80), dnated), accept},
		{"reply to a container's outgoing connection", with(tcp(fwd, "eth0", "shoal0", "192.0.2.7", "10.42.1.2", 4000), func(p *packet) { p.established = true }), accept},
		{"LAN to something else routed by the node", tcp(fwd, "eth0", "eth1", lan, "192.0.2.7", 80), accept},

		// Egress: internal networks have none.
		{"front container to the world", tcp(fwd, "shb1093", "eth0", cFr, "192.0.2.7", 443), accept},
		{"back container to the world", tcp(fwd, "shb1094", "eth0", cBack, "192.0.2.7", 443), drop},
		{"back container to the node's LAN", tcp(fwd, "shb1094", "eth0", cBack, lan, 443), drop},
		{"back to remote back container", tcp(fwd, "shb1094", "shv1094", cBack, "10.51.1.5", 80), accept},
		// Nor through a published port of its own node, DNATed to another
		// network's containers (the web service publishes 8080).
		{"back container to the node's published port", with(tcp(pre, "shb1094", "", cBack, node, 8080), func(p *packet) { p.local = true }), dnats(80, "10.42.1.2", "10.42.2.2")},
		{"back container through a published port to a default container", with(tcp(fwd, "shb1094", "shoal0", cBack, "10.42.1.2", 80), dnated), drop},
		{"back container through a published port to a remote default container", with(tcp(fwd, "shb1094", "shoal.vx", cBack, "10.42.2.2", 80), dnated), drop},
		{"back VIP DNATed to a remote back backend", with(tcp(fwd, "shb1094", "shv1094", cBack, "10.51.1.5", 80), dnated), accept},
		{"back container's reply to a client of its published port", with(tcp(fwd, "shb1094", "eth0", cBack, lan, 4000), func(p *packet) { p.established = true }), accept},
		{"front egress masqueraded", tcp(post, "shb1093", "eth0", cFr, "192.0.2.7", 443), []string{"masquerade"}},
		{"back: no egress masquerade", tcp(post, "shb1094", "eth0", cBack, "192.0.2.7", 443), accept},
		{"front hairpin", with(tcp(post, "shb1093", "shb1093", cFr, cFr, 80), dnated), []string{"masquerade"}},
		{"ingress to a remote front backend keeps the client's address", with(tcp(post, "eth0", "shv1093", lan, "10.50.1.5", 80), dnated), accept},
		{"front VIP to a remote front backend keeps the client", with(tcp(post, "shb1093", "shv1093", cFr, "10.50.1.5", 80), dnated), accept},

		// What the node serves.
		{"VXLAN from a peer", udp(in, "eth0", "10.213.1.12", node, 4789), accept},
		{"VXLAN from a stranger", udp(in, "eth0", lan, node, 4789), drop},
		{"DNS from a default container", udp(in, "shoal0", cDef, "10.42.1.1", 53), accept},
		{"DNS from a back container", udp(in, "shb1094", cBack, "10.42.1.1", 53), accept},
		{"DNS over TCP from a back container", tcp(in, "shb1094", "", cBack, "10.42.1.1", 53), accept},
		{"back container to port 53 of another node address", udp(in, "shb1094", cBack, node, 53), drop},
		{"DNS over TCP from a front container", tcp(in, "shb1093", "", cFr, "10.42.1.1", 53), accept},
		{"DNS from the node", udp(in, "lo", "10.42.1.1", "10.42.1.1", 53), accept},
		{"DNS from the LAN", udp(in, "eth0", lan, "10.42.1.1", 53), drop},
		{"DNS over TCP from the LAN", tcp(in, "eth0", "", lan, "10.42.1.1", 53), drop},
		{"agent cluster port from the LAN", tcp(in, "eth0", "", lan, node, 2377), accept},

		// An internal network reaches nothing of the node but its DNS:
		// not a service on the node's address, not one on its gateway,
		// neither from this node's containers nor from the network's
		// containers on other nodes (through its VXLAN device).
		{"back container to a node service", tcp(in, "shb1094", "", cBack, node, 22), drop},
		{"back container to a node service on its gateway", tcp(in, "shb1094", "", cBack, "10.51.0.1", 9100), drop},
		{"back container to a node UDP service", udp(in, "shb1094", cBack, node, 161), drop},
		{"remote back container to this node's back address", tcp(in, "shv1094", "", "10.51.1.5", "10.51.0.1", 22), drop},
		{"back container's reply to the node", with(tcp(in, "shb1094", "", cBack, node, 40000), func(p *packet) { p.established = true }), accept},
		{"the node to itself from its back address", tcp(in, "lo", "", "10.51.0.1", "10.51.0.1", 22), accept},
		{"front container to a node service", tcp(in, "shb1093", "", cFr, node, 22), accept},
		{"default container to a node service on its gateway", tcp(in, "shoal0", "", cDef, "10.42.1.1", 9100), accept},
		{"gossip from the LAN", udp(in, "eth0", lan, node, 7946), accept},
	}
	resolved, errs := netState().resolve()
	if len(errs) > 0 {
		t.Fatalf("resolve: %v", errs)
	}
	tr := tracer{t: t, rs: compile(DefaultConfig(), resolved)}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr.t = t
			if got := tr.trace(tc.p); !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestNetworksNoFilterWithoutNetworks: a State without networks keeps the
// single flat overlay's rule set (no filter chains at all).
func TestNetworksNoFilterWithoutNetworks(t *testing.T) {
	rs := compile(DefaultConfig(), testState())
	for _, c := range rs.chains {
		if c.Name == chainFilterForward || c.Name == chainFilterInput {
			t.Fatalf("chain %s without networks", c.Name)
		}
	}
}

func TestNetworksResolve(t *testing.T) {
	st := netState()
	st.Networks = append(st.Networks, Network{Name: "front", Subnet: cidr("10.60.0.0/16"), Bridge: "x", VXLAN: "y"})
	st.Services = append(st.Services, Service{Name: "lost", Network: "nowhere", VIP: net.ParseIP("10.60.128.1")})
	got, errs := st.resolve()
	if len(errs) != 2 || !strings.Contains(errs[0].Error(), "network front appears twice") || !strings.Contains(errs[1].Error(), "network nowhere is unknown") {
		t.Fatalf("errors %v", errs)
	}
	if len(got.Networks) != 3 || got.Services[len(got.Services)-1].VIP != nil {
		t.Fatalf("resolved %+v", got)
	}
	// Peers and DNS survive resolve and clone.
	if c := got.clone(); len(c.Peers) != 2 || !c.DNS.Equal(net.ParseIP("10.42.1.1")) || len(c.Networks) != 3 {
		t.Fatalf("clone %+v", c)
	}
}

// TestNetworksVIPInterface: a VIP is balanced for its network's source
// addresses only when they arrive through the network's own devices (its
// bridge, or its VXLAN or WireGuard device from other nodes). A LAN host,
// or a container of another network, sending from an address it made up
// inside the network reached the VIP before, an --internal network's too.
func TestNetworksVIPInterface(t *testing.T) {
	accept := []string{"accept"}
	udp := func(hook *nftables.ChainHook, iif, oif, saddr, daddr string) packet {
		return packet{hook: hook, iif: iif, oif: oif, saddr: saddr, daddr: daddr, proto: protoUDP, dport: 53}
	}
	tcp := func(iif, saddr, daddr string) packet {
		return packet{hook: pre, iif: iif, saddr: saddr, daddr: daddr, proto: protoTCP, dport: 80}
	}
	cases := []struct {
		name string
		p    packet
		want []string
	}{
		// Spoofed sources: not DNATed, and then dropped in forward.
		{"LAN spoofing a back source to the internal back VIP", udp(pre, "eth0", "", "10.51.0.200", "10.51.128.1"), accept},
		{"LAN's spoofed packet to the back VIP dropped in forward", udp(fwd, "eth0", "shb1094", "10.51.0.200", "10.51.128.1"), []string{"drop"}},
		{"default container spoofing a back source to the back VIP", udp(pre, "shoal0", "", "10.51.0.200", "10.51.128.1"), accept},
		{"front VXLAN carrying a back source to the back VIP", udp(pre, "shv1093", "", "10.51.1.77", "10.51.128.1"), accept},
		{"LAN spoofing a default source to the default VIP", tcp("eth0", "10.42.1.3", "10.43.0.10"), accept},
		{"LAN's spoofed packet to the default VIP dropped in forward", udp(fwd, "eth0", "shoal0", "10.42.1.3", "10.43.0.10"), []string{"drop"}},
		{"front container spoofing a default source to the default VIP", tcp("shb1093", "10.42.1.3", "10.43.0.10"), accept},
		{"LAN spoofing a front source to a VIP without backends: no reset", tcp("eth0", "10.50.0.131", "10.50.128.9"), accept},
		{"LAN spoofing a routed network's source to its VIP", tcp("eth0", "10.62.0.131", "10.62.128.1"), accept},
		// The network's own devices.
		{"back container to the back VIP", udp(pre, "shb1094", "", "10.51.0.131", "10.51.128.1"), dnats(0, "10.51.0.130")},
		{"remote back container through back's VXLAN", udp(pre, "shv1094", "", "10.51.1.9", "10.51.128.1"), dnats(0, "10.51.0.130")},
		{"default container to the default VIP", tcp("shoal0", "10.42.1.3", "10.43.0.10"), dnats(0, "10.42.1.2", "10.42.2.2")},
		{"remote default container through shoal.vx", tcp("shoal.vx", "10.42.2.9", "10.43.0.10"), dnats(0, "10.42.1.2", "10.42.2.2")},
		{"front container to a VIP without backends", tcp("shb1093", "10.50.0.131", "10.50.128.9"), []string{"reset"}},
		{"routed network's container to its VIP", tcp("shb2000", "10.62.0.131", "10.62.128.1"), dnats(0, "10.62.0.130", "10.62.1.5")},
		{"routed network's remote container through WireGuard", tcp("shoal.wg", "10.62.1.9", "10.62.128.1"), dnats(0, "10.62.0.130", "10.62.1.5")},
		{"the node itself, any source", packet{hook: out, saddr: "10.213.1.11", daddr: "10.51.128.1", proto: protoUDP, dport: 53}, dnats(0, "10.51.0.130")},
		// Published ports stay open to everyone.
		{"LAN to a published port", packet{hook: pre, iif: "eth0", saddr: "10.213.1.99", daddr: "10.213.1.11", proto: protoTCP, dport: 8080, local: true}, dnats(80, "10.42.1.2", "10.42.2.2")},
	}
	resolved, errs := clientIPState().resolve()
	if len(errs) > 0 {
		t.Fatalf("resolve: %v", errs)
	}
	tr := tracer{t: t, rs: compile(DefaultConfig(), resolved)}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr.t = t
			if got := tr.trace(tc.p); !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestEmbeddedDNSNotPublished: a service publishing port 53 takes it on
// the node's addresses, not on the embedded DNS server's: containers keep
// their resolver. Before, `fib daddr type local` counted the bridge
// address among the published-port addresses, so every container's query
// was DNATed to the service (or refused while it had no backends).
func TestEmbeddedDNSNotPublished(t *testing.T) {
	const (
		bridgeIP = "10.42.1.1"
		node     = "10.213.1.11"
	)
	pk := func(hook *nftables.ChainHook, iif, saddr, daddr string, proto byte) packet {
		return packet{hook: hook, iif: iif, saddr: saddr, daddr: daddr, proto: proto, dport: 53, local: true}
	}
	resolver := dnats(53, "10.42.2.53", "10.42.1.53")
	for _, backs := range [][]Backend{backends("10.42.2.53", "10.42.1.53"), nil} {
		st := netState()
		st.Services = append(st.Services, Service{Name: "pihole", VIP: net.ParseIP("10.43.0.53"), Backends: backs,
			Ports: []api.PortConfig{{Published: 53, Target: 53, Protocol: "udp"}, {Published: 53, Target: 53, Protocol: "tcp"}}})
		resolved, errs := st.resolve()
		if len(errs) > 0 {
			t.Fatalf("resolve: %v", errs)
		}
		tr := tracer{t: t, rs: compile(DefaultConfig(), resolved)}
		published, publishedTCP := resolver, resolver
		if backs == nil {
			published, publishedTCP = []string{"unreachable"}, []string{"reset"}
		}
		for _, tc := range []struct {
			name string
			p    packet
			want []string
		}{
			{"default container to the embedded DNS", pk(pre, "shoal0", "10.42.1.3", bridgeIP, protoUDP), []string{"accept"}},
			{"default container to the embedded DNS over TCP", pk(pre, "shoal0", "10.42.1.3", bridgeIP, protoTCP), []string{"accept"}},
			{"front container to the embedded DNS", pk(pre, "shb1093", "10.50.0.131", bridgeIP, protoUDP), []string{"accept"}},
			{"the node to the embedded DNS", pk(out, "", bridgeIP, bridgeIP, protoUDP), []string{"accept"}},
			{"the LAN to the published port", pk(pre, "eth0", "10.213.1.99", node, protoUDP), published},
			{"the LAN to the published port over TCP", pk(pre, "eth0", "10.213.1.99", node, protoTCP), publishedTCP},
			{"a container to the published port on the node's address", pk(pre, "shoal0", "10.42.1.3", node, protoUDP), published},
		} {
			tr.t = t
			if got := tr.trace(tc.p); !slices.Equal(got, tc.want) {
				t.Errorf("backends %v: %s: got %v, want %v", backs != nil, tc.name, got, tc.want)
			}
		}
	}
}
