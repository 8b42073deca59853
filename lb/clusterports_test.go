package lb

import (
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestClusterPortsTrace: containers reach none of the cluster's own ports.
// Their egress leaves masqueraded to the node's underlay address, which
// every peer trusts as a node: VXLAN sent by a container to another node
// used to be decapsulated there into any network (an internal one too),
// with any source address and any inner MAC (a routing-mesh mark of the
// sender's choosing). The agent's ports (gossip, raft/RPC, WireGuard) are
// closed to containers too, on the peers and on their own node, whichever
// of its addresses they call; the LAN, the other nodes, published ports
// and the world on other ports are untouched.
func TestClusterPortsTrace(t *testing.T) {
	const (
		node  = "10.213.1.11"
		peer  = "10.213.1.12"
		lan   = "10.213.1.99"
		world = "203.0.113.5"
		cDef  = "10.42.1.3"
		cFr   = "10.50.0.131"
		cBack = "10.51.0.131"
		cWG   = "10.62.0.131"
	)
	accept, drop := []string{"accept"}, []string{"drop"}
	pk := func(hook, iif, oif, saddr, daddr, proto string, dport uint16) packet {
		p := packet{iif: iif, oif: oif, saddr: saddr, daddr: daddr, dport: dport, proto: protoTCP}
		if proto == "udp" {
			p.proto = protoUDP
		}
		switch hook {
		case "fwd":
			p.hook = fwd
		case "in":
			p.hook = in
		case "post":
			p.hook = post
		default:
			t.Fatalf("hook %s", hook)
		}
		return p
	}
	dnated := func(p packet) packet { p.dnat = true; return p }
	cases := []struct {
		name string
		p    packet
		want []string
	}{
		// VXLAN from a container: to a peer, to any address at all (a
		// peer takes VXLAN on every address it has), and the encrypted
		// networks' inner VXLAN into WireGuard.
		{"default container VXLAN to a peer", pk("fwd", "shoal0", "eth0", cDef, peer, "udp", 4789), drop},
		{"front container VXLAN to a peer", pk("fwd", "shb1093", "eth0", cFr, peer, "udp", 4789), drop},
		{"internal container VXLAN to a peer", pk("fwd", "shb1094", "eth0", cBack, peer, "udp", 4789), drop},
		{"routed-network container VXLAN to a peer", pk("fwd", "shb2000", "eth0", cWG, peer, "udp", 4789), drop},
		{"container VXLAN to another address of a peer", pk("fwd", "shoal0", "eth1", cDef, world, "udp", 4789), drop},
		{"container encrypted VXLAN into WireGuard", pk("fwd", "shoal0", "shoal.wg", cDef, "100.64.0.3", "udp", 4800), drop},
		// The other nodes' agents and WireGuard.
		{"container to a peer's gossip (udp)", pk("fwd", "shoal0", "eth0", cDef, peer, "udp", 7946), drop},
		{"container to a peer's gossip (tcp)", pk("fwd", "shb1093", "eth0", cFr, peer, "tcp", 7946), drop},
		{"container to a peer's cluster port", pk("fwd", "shoal0", "eth0", cDef, peer, "tcp", 2377), drop},
		{"container to a peer's WireGuard", pk("fwd", "shoal0", "eth0", cDef, peer, "udp", 51820), drop},
		// What containers keep.
		{"container to a peer's published port", pk("fwd", "shoal0", "eth0", cDef, peer, "tcp", 8080), accept},
		{"container to the world", pk("fwd", "shoal0", "eth0", cDef, world, "tcp", 443), accept},
		{"container to a WireGuard server of the world", pk("fwd", "shoal0", "eth0", cDef, world, "udp", 51820), accept},
		{"container to port 2377 of the world", pk("fwd", "shoal0", "eth0", cDef, world, "tcp", 2377), accept},
		{"container to a container of its network on port 4789", pk("fwd", "shoal0", "shoal.vx", cDef, "10.42.2.2", "udp", 4789), accept},
		{"container to a VIP on port 7946, DNATed", dnated(pk("fwd", "shoal0", "shoal.vx", cDef, "10.42.2.2", "tcp", 7946)), accept},
		{"egress still masqueraded", pk("post", "shoal0", "eth0", cDef, world, "tcp", 443), []string{"masquerade"}},
		// The node's own agent, on any of its addresses.
		{"container to its node's cluster port", pk("in", "shoal0", "", cDef, node, "tcp", 2377), drop},
		{"container to its node's cluster port on the bridge address", pk("in", "shoal0", "", cDef, "10.42.1.1", "tcp", 2377), drop},
		{"front container to its node's gossip (tcp)", pk("in", "shb1093", "", cFr, node, "tcp", 7946), drop},
		{"container to its node's gossip (udp)", pk("in", "shoal0", "", cDef, node, "udp", 7946), drop},
		{"container to its node's VXLAN port", pk("in", "shoal0", "", cDef, node, "udp", 4789), drop},
		{"container to its node's WireGuard", pk("in", "shb2000", "", cWG, node, "udp", 51820), drop},
		{"container to the embedded DNS", pk("in", "shoal0", "", cDef, "10.42.1.1", "udp", 53), accept},
		{"container to the embedded DNS over TCP", pk("in", "shb1093", "", cFr, "10.42.1.1", "tcp", 53), accept},
		{"the LAN to the node's cluster port", pk("in", "eth0", "", lan, node, "tcp", 2377), accept},
		{"a peer to the node's gossip", pk("in", "eth0", "", peer, node, "udp", 7946), accept},
		{"a peer's VXLAN", pk("in", "eth0", "", peer, node, "udp", 4789), accept},
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

	// The ports are Config's, not the defaults.
	cfg := DefaultConfig()
	cfg.VXLANPort, cfg.GossipPort, cfg.ClusterPort, cfg.WireGuardPort = 4790, 8946, 3377, 51821
	tr = tracer{t: t, rs: compile(cfg, resolved)}
	for _, tc := range []struct {
		name string
		p    packet
		want []string
	}{
		{"VXLAN to the world", pk("fwd", "shoal0", "eth0", cDef, world, "udp", 4790), drop},
		{"a peer's gossip (udp)", pk("fwd", "shoal0", "eth0", cDef, peer, "udp", 8946), drop},
		{"a peer's gossip (tcp)", pk("fwd", "shoal0", "eth0", cDef, peer, "tcp", 8946), drop},
		{"a peer's cluster port", pk("fwd", "shoal0", "eth0", cDef, peer, "tcp", 3377), drop},
		{"a peer's WireGuard", pk("fwd", "shoal0", "eth0", cDef, peer, "udp", 51821), drop},
		{"its node's cluster port", pk("in", "shoal0", "", cDef, node, "tcp", 3377), drop},
		{"its node's VXLAN port", pk("in", "shoal0", "", cDef, node, "udp", 4790), drop},
		{"a peer's port 2377, no cluster port here", pk("fwd", "shoal0", "eth0", cDef, peer, "tcp", 2377), accept},
	} {
		tr.t = t
		if got := tr.trace(tc.p); !slices.Equal(got, tc.want) {
			t.Errorf("configured ports, a container to %s: got %v, want %v", tc.name, got, tc.want)
		}
	}

	// The peers' own ports (State.PeerPorts): a peer whose agent listens
	// elsewhere than this node's (cluster port 2400, gossip 8000) is
	// closed to containers there too; the world on those ports is not.
	withPorts := resolved
	withPorts.PeerPorts = []int{2400, 8000, 2377}
	tr = tracer{t: t, rs: compile(DefaultConfig(), withPorts)}
	for _, tc := range []struct {
		name string
		p    packet
		want []string
	}{
		{"a peer's cluster port 2400", pk("fwd", "shoal0", "eth0", cDef, peer, "tcp", 2400), drop},
		{"a peer's gossip port 8000 (udp)", pk("fwd", "shb1093", "eth0", cFr, peer, "udp", 8000), drop},
		{"a peer's gossip port 8000 (tcp)", pk("fwd", "shoal0", "eth0", cDef, peer, "tcp", 8000), drop},
		{"a peer's cluster port 2377", pk("fwd", "shoal0", "eth0", cDef, peer, "tcp", 2377), drop},
		{"port 2400 of the world", pk("fwd", "shoal0", "eth0", cDef, world, "tcp", 2400), accept},
		{"a peer's published port", pk("fwd", "shoal0", "eth0", cDef, peer, "tcp", 8080), accept},
	} {
		tr.t = t
		if got := tr.trace(tc.p); !slices.Equal(got, tc.want) {
			t.Errorf("peers' own ports, a container to %s: got %v, want %v", tc.name, got, tc.want)
		}
	}
	if got := peerOnlyPorts(DefaultConfig(), []int{2400, 2400, 7946, 0, 70000}); len(got) != 2 {
		t.Errorf("peerOnlyPorts: %+v, want 2400 tcp and udp once (7946 is this node's, 0 and 70000 no ports)", got)
	}

	// Without State.Peers the other nodes are unknown: the agents' ports
	// are closed to containers towards every address.
	st := resolved
	st.Peers = nil
	tr = tracer{t: t, rs: compile(DefaultConfig(), st)}
	if got := tr.trace(pk("fwd", "shoal0", "eth0", cDef, world, "tcp", 2377)); !slices.Equal(got, drop) {
		t.Errorf("without peers, a container to port 2377: got %v, want drop", got)
	}
}

// TestLBContainerClusterPorts, in namespaces: a container's UDP to the
// VXLAN port of the node's neighbour (the "peer" here) never arrives, nor
// its TCP to the peer's cluster port or its own node's; the same from the
// LAN, and the container to other ports, still work.
func TestLBContainerClusterPorts(t *testing.T) {
	l := newLab(t)
	extIP := strings.TrimSuffix(l.nodeIP, ".1") + ".2"
	lb := l.newLB()
	st := l.state(0, 1, 2)
	st.Networks = []Network{{Name: "default", Subnet: cidr("10.42.0.0/16"), VIPs: cidr("10.43.0.0/16"), Bridge: "shoal0", VXLAN: "shoal.vx"}}
	st.Peers = ips(extIP)
	st.DNS = net.ParseIP("10.42.1.1")
	if err := lb.Set(st); err != nil {
		t.Fatal(err)
	}
	nsFile := func(name string) *os.File {
		f, err := os.Open("/var/run/netns/" + name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	clientNS, extNS, nodeNS := nsFile(l.client), nsFile(l.ext), nsFile(l.node)

	// udpArrives sends one datagram from ns to addr, where a listener of
	// the destination's namespace dst waits for it.
	udpArrives := func(from, dst *os.File, addr string) bool {
		t.Helper()
		var pc net.PacketConn
		_, port, _ := net.SplitHostPort(addr)
		if err := runInNS(dst, func() (err error) { pc, err = net.ListenPacket("udp", ":"+port); return err }); err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		var c net.PacketConn
		if err := runInNS(from, func() (err error) { c, err = net.ListenPacket("udp", ":0"); return err }); err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		to, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			_, _ = c.WriteTo([]byte("x"), to)
		}
		_ = pc.SetReadDeadline(time.Now().Add(700 * time.Millisecond))
		_, _, err = pc.ReadFrom(make([]byte, 16))
		return err == nil
	}
	// tcpConnects dials addr from ns, where dst listens.
	tcpConnects := func(from, dst *os.File, addr string) bool {
		t.Helper()
		var ln net.Listener
		_, port, _ := net.SplitHostPort(addr)
		if err := runInNS(dst, func() (err error) { ln, err = net.Listen("tcp", ":"+port); return err }); err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		var c net.Conn
		err := runInNS(from, func() (err error) { c, err = net.DialTimeout("tcp", addr, 700*time.Millisecond); return err })
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	at := func(ip string, port int) string { return net.JoinHostPort(ip, fmt.Sprint(port)) }
	for _, c := range []struct {
		what     string
		ok, want bool
	}{
		{"container: VXLAN to the peer", udpArrives(clientNS, extNS, at(extIP, 4789)), false},
		{"container: the peer's cluster port", tcpConnects(clientNS, extNS, at(extIP, 2377)), false},
		{"container: the peer's gossip (udp)", udpArrives(clientNS, extNS, at(extIP, 7946)), false},
		{"container: its node's cluster port (underlay address)", tcpConnects(clientNS, nodeNS, at(l.nodeIP, 2377)), false},
		{"container: its node's cluster port (bridge address)", tcpConnects(clientNS, nodeNS, at("10.42.1.1", 2377)), false},
		{"container: its node's gossip (udp)", udpArrives(clientNS, nodeNS, at("10.42.1.1", 7946)), false},
		{"container: another UDP port of the peer", udpArrives(clientNS, extNS, at(extIP, 4790)), true},
		{"container: another TCP port of the peer", tcpConnects(clientNS, extNS, at(extIP, 2378)), true},
		{"container: another TCP port of its node", tcpConnects(clientNS, nodeNS, at("10.42.1.1", 2378)), true},
		{"the peer: the node's cluster port", tcpConnects(extNS, nodeNS, at(l.nodeIP, 2377)), true},
		{"the peer: the node's gossip (udp)", udpArrives(extNS, nodeNS, at(l.nodeIP, 7946)), true},
	} {
		if c.ok != c.want {
			t.Errorf("%s: got through %v, want %v", c.what, c.ok, c.want)
		}
	}
}

// TestClusterPortsThroughOverlayTrace: a container of another node reaches
// this node's addresses in its network (the bridge's, the VXLAN device's
// /32) over the overlay, unmasqueraded, so its packets arrive through the
// network's VXLAN device (or, on an encrypted network, the WireGuard
// device), never through a bridge. An agent listening on every address
// (--listen-addr 0.0.0.0) answered them: the other node's forward filter
// lets a container reach its own network, and this node's input filter
// closed the agent's ports to its bridges only. They are closed to the
// overlay devices too; what a remote container keeps is its own network's
// containers and the node's other ports.
func TestClusterPortsThroughOverlayTrace(t *testing.T) {
	const (
		remoteDef = "10.42.2.3"   // a container of another node, default network
		remoteFr  = "10.50.1.5"   // another node's container on "front"
		remoteWG  = "10.62.1.5"   // another node's container on the encrypted "wg"
		bridgeDef = "10.42.1.1"   // this node's bridge address, default network
		vxlanDef  = "10.42.1.0"   // this node's VXLAN address, default network
		bridgeFr  = "10.50.0.129" // this node's bridge address on "front"
		bridgeWG  = "10.62.0.129" // this node's bridge address on "wg"
	)
	accept, drop := []string{"accept"}, []string{"drop"}
	in := func(iif, saddr, daddr string, proto byte, dport uint16) packet {
		return packet{hook: in, iif: iif, saddr: saddr, daddr: daddr, proto: proto, dport: dport}
	}
	resolved, errs := clientIPState().resolve()
	if len(errs) > 0 {
		t.Fatalf("resolve: %v", errs)
	}
	tr := tracer{t: t, rs: compile(DefaultConfig(), resolved)}
	for _, tc := range []struct {
		name string
		p    packet
		want []string
	}{
		{"cluster port on the bridge address, through the VXLAN device", in("shoal.vx", remoteDef, bridgeDef, protoTCP, 2377), drop},
		{"cluster port on the VXLAN address", in("shoal.vx", remoteDef, vxlanDef, protoTCP, 2377), drop},
		{"gossip (tcp) through another network's VXLAN device", in("shv1093", remoteFr, bridgeFr, protoTCP, 7946), drop},
		{"gossip (udp) through another network's VXLAN device", in("shv1093", remoteFr, bridgeFr, protoUDP, 7946), drop},
		{"WireGuard port through the VXLAN device", in("shoal.vx", remoteDef, bridgeDef, protoUDP, 51820), drop},
		{"cluster port through the WireGuard device (encrypted network)", in("shoal.wg", remoteWG, bridgeWG, protoTCP, 2377), drop},
		{"gossip through the WireGuard device (encrypted network)", in("shoal.wg", remoteWG, bridgeWG, protoUDP, 7946), drop},
		// What stays open.
		{"another port of the node through the VXLAN device", in("shoal.vx", remoteDef, bridgeDef, protoTCP, 8080), accept},
		{"a peer's gossip on the underlay", in("eth0", "10.213.1.12", "10.213.1.11", protoUDP, 7946), accept},
		{"a peer's cluster port on the underlay", in("eth0", "10.213.1.12", "10.213.1.11", protoTCP, 2377), accept},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr.t = t
			if got := tr.trace(tc.p); !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}
