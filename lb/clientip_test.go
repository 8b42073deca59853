package lb

import (
	"encoding/binary"
	"fmt"
	"net"
	"slices"
	"testing"

	"github.com/shoal-org/shoal/api"
)

// clientIPState is node 1 of netState plus a service "edge" publishing
// 9000 in host mode with one task here and one on node 2, a service
// "far" publishing 9001 in host mode with its only task on node 2, and a
// service "mesh" on the ingress mesh with one local and one remote task;
// "sec" is an encrypted network (its VXLAN runs inside WireGuard).
func clientIPState() State {
	st := netState()
	st.Networks = append(st.Networks, Network{Name: "sec", Subnet: cidr("10.52.0.0/16"), Bridge: "shb1095", VXLAN: "shv1095"},
		Network{Name: "wg", Subnet: cidr("10.62.0.0/16"), Bridge: "shb2000", VXLAN: "shoal.wg", Routed: true})
	local := func(addrs ...string) []Backend {
		b := backends(addrs...)
		b[0].Local = true
		return b
	}
	st.Services = append(st.Services,
		Service{Name: "edge", Network: "default", VIP: net.ParseIP("10.43.0.20"), Backends: local("10.42.1.7", "10.42.2.7"),
			Ports: []api.PortConfig{{Published: 9000, Target: 80, Protocol: "tcp", Mode: api.PublishHost}}},
		Service{Name: "far", Network: "default", VIP: net.ParseIP("10.43.0.21"), Backends: backends("10.42.2.8"),
			Ports: []api.PortConfig{{Published: 9001, Target: 80, Protocol: "tcp", Mode: api.PublishHost}}},
		Service{Name: "mesh", Network: "sec", VIP: net.ParseIP("10.52.128.1"), Backends: local("10.52.0.130", "10.52.1.5"),
			Ports: []api.PortConfig{{Published: 9002, Target: 80, Protocol: "tcp"}}},
		Service{Name: "wgmesh", Network: "wg", VIP: net.ParseIP("10.62.128.1"), Backends: local("10.62.0.130", "10.62.1.5"),
			Ports: []api.PortConfig{{Published: 9004, Target: 80, Protocol: "tcp"}}},
		Service{Name: "gone", Network: "default", VIP: net.ParseIP("10.43.0.22"),
			Ports: []api.PortConfig{{Published: 9003, Target: 80, Protocol: "tcp", Mode: api.PublishHost}}},
	)
	return st
}

// TestClientIPTrace: which paths keep the client's address. Host mode and
// the mesh do (no masquerade after the DNAT; for a backend on another node
// that node marks the connection with the ingress node's VTEP MAC and
// routes its replies back there); a container calling a published port or
// VIP served by a task on its own bridge does not (without br_netfilter
// the backend would answer it over L2).
func TestClientIPTrace(t *testing.T) {
	const (
		lan  = "10.213.1.99"
		node = "10.213.1.11"
	)
	tcp := func(hook any, iif, oif, saddr, daddr string, dport uint16) packet {
		p := packet{iif: iif, oif: oif, saddr: saddr, daddr: daddr, proto: protoTCP, dport: dport}
		switch hook {
		case "pre":
			p.hook = pre
		case "out":
			p.hook = out
		case "post":
			p.hook = post
		case "fwd":
			p.hook = fwd
		}
		return p
	}
	localDst := func(p packet) packet { p.local = true; return p }
	dnated := func(p packet) packet { p.dnat = true; return p }
	udp := func(iif, saddr string, dport uint16) packet {
		return packet{hook: in, iif: iif, saddr: saddr, daddr: node, proto: protoUDP, dport: dport}
	}
	accept := []string{"accept"}
	const ingressMAC = "02:a1:b2:c3:d4:e5" // the ingress node's VTEP MAC
	vtepMark := binary.NativeEndian.Uint32([]byte{0xb2, 0xc3, 0xd4, 0xe5})
	ingressMark := fmt.Sprintf("ctmark=%#x", vtepMark)
	fromVX := func(p packet) packet { p.srcMAC = ingressMAC; return p }
	ctMarked := func(p packet) packet { p.ctmark, p.established = vtepMark, true; return p }
	established := func(p packet) packet { p.established = true; return p }
	cases := []struct {
		name string
		p    packet
		want []string
	}{
		// Host mode: only the local task, only where one runs.
		{"LAN to host-mode port: local task only", localDst(tcp("pre", "eth0", "", lan, node, 9000)), dnats(80, "10.42.1.7")},
		{"node to its own host-mode port", localDst(tcp("out", "", "", node, node, 9000)), dnats(80, "10.42.1.7")},
		{"LAN to host-mode port without a local task: not published here", localDst(tcp("pre", "eth0", "", lan, node, 9001)), accept},
		{"host-mode port of a service without tasks: not published, not rejected", localDst(tcp("pre", "eth0", "", lan, node, 9003)), accept},
		{"host-mode connection keeps the client's address", dnated(tcp("post", "eth0", "shoal0", lan, "10.42.1.7", 80)), accept},
		{"host-mode connection is let through to the task", dnated(tcp("fwd", "eth0", "shoal0", lan, "10.42.1.7", 80)), accept},
		{"the VIP of a host-mode service still balances over all tasks", tcp("pre", "shoal0", "", "10.42.1.3", "10.43.0.20", 80), dnats(0, "10.42.1.7", "10.42.2.7")},

		// The routing mesh.
		{"LAN to a mesh port: every task", localDst(tcp("pre", "eth0", "", lan, node, 9002)), dnats(80, "10.52.0.130", "10.52.1.5")},
		{"mesh to a local task keeps the client's address", dnated(tcp("post", "eth0", "shb1095", lan, "10.52.0.130", 80)), accept},
		{"mesh to a task on another node keeps the client's address", dnated(tcp("post", "eth0", "shv1095", lan, "10.52.1.5", 80)), accept},
		{"mesh to a task on another node is let through", dnated(tcp("fwd", "eth0", "shv1095", lan, "10.52.1.5", 80)), accept},

		// The backend's node of a mesh connection another node took: the
		// connection is marked with the ingress node's VTEP MAC, let
		// through to the task, and the task's replies carry the mark (the
		// overlay's rule for that mark routes them back to that node).
		{"mesh connection from another node is marked with its VTEP MAC", fromVX(tcp("pre", "shv1095", "", lan, "10.52.0.130", 80)), []string{"accept " + ingressMark}},
		{"mesh connection from another node is let through to the task", fromVX(tcp("fwd", "shv1095", "shb1095", lan, "10.52.0.130", 80)), accept},
		{"the task's reply carries the ingress node's mark", ctMarked(tcp("pre", "shb1095", "", "10.52.0.130", lan, 40000)), []string{fmt.Sprintf("accept mark=%#x", vtepMark)}},
		{"a reply of an unmarked connection is not marked", tcp("pre", "shb1095", "", "10.52.0.130", lan, 40000), accept},
		{"the same on the default network", fromVX(tcp("pre", "shoal.vx", "", lan, "10.42.1.7", 80)), []string{"accept " + ingressMark}},
		{"a known connection is not marked again", established(fromVX(tcp("pre", "shv1095", "", lan, "10.52.0.130", 80))), accept},
		{"traffic between containers over VXLAN is not marked", fromVX(tcp("pre", "shv1095", "", "10.52.1.5", "10.52.0.130", 80)), accept},
		{"another network's address over VXLAN is not marked", fromVX(tcp("pre", "shv1095", "", "10.42.2.2", "10.52.0.130", 80)), accept},
		{"another network's address over VXLAN stays out", fromVX(tcp("fwd", "shv1095", "shb1095", "10.42.2.2", "10.52.0.130", 80)), []string{"drop"}},
		{"an outside address over VXLAN reaches only the device's network", fromVX(tcp("fwd", "shv1095", "shoal0", lan, "10.42.1.7", 80)), []string{"drop"}},
		{"an outside address to the node's bridge from the LAN is not marked", tcp("pre", "eth0", "", lan, "10.52.0.130", 80), accept},
		{"a container to a published port served on its own bridge is masqueraded", dnated(tcp("post", "shb1095", "shb1095", "10.52.0.131", "10.52.0.130", 80)), []string{"masquerade"}},

		// A routed (encrypted) network has no VTEP MAC to mark by: the mesh
		// masquerades to its remote tasks, and marks nothing.
		{"mesh to a task on another node of a routed network is masqueraded", dnated(tcp("post", "eth0", "shoal.wg", lan, "10.62.1.5", 80)), []string{"masquerade"}},
		{"mesh to a local task of a routed network keeps the client's address", dnated(tcp("post", "eth0", "shb2000", lan, "10.62.0.130", 80)), accept},
		{"nothing arriving through WireGuard is marked", fromVX(tcp("pre", "shoal.wg", "", lan, "10.62.0.130", 80)), accept},

		// Encrypted networks: their VXLAN arrives through WireGuard only.
		{"encrypted VXLAN through WireGuard", udp("shoal.wg", "100.64.0.3", 4800), accept},
		{"encrypted VXLAN injected on the underlay by a stranger", udp("eth0", lan, 4800), []string{"drop"}},
		{"encrypted VXLAN injected on the underlay from a peer's address", udp("eth0", "10.213.1.12", 4800), []string{"drop"}},
		{"WireGuard from anywhere (it authenticates itself)", udp("eth0", lan, 51820), accept},
		{"plain VXLAN from a peer still accepted", udp("eth0", "10.213.1.12", 4789), accept},
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

// TestHostModeFollowsLocalTasks: the host-mode rule appears when a task
// lands on the node and goes with it; the ingress ports of the same
// service are untouched.
func TestHostModeFollowsLocalTasks(t *testing.T) {
	st := State{Services: []Service{{Name: "edge", VIP: net.ParseIP("10.43.0.20"),
		Ports: []api.PortConfig{{Published: 9000, Target: 80, Mode: api.PublishHost}, {Published: 9100, Target: 80}}}}}
	p := func(port uint16) packet {
		return packet{hook: pre, iif: "eth0", saddr: "10.213.1.99", daddr: "10.213.1.11", proto: protoTCP, dport: port, local: true}
	}
	for _, tc := range []struct {
		name          string
		backends      []Backend
		host, ingress []string
	}{
		{"no tasks", nil, []string{"accept"}, []string{"reset"}},
		{"remote task only", backends("10.42.2.7"), []string{"accept"}, dnats(80, "10.42.2.7")},
		{"local and remote", []Backend{{IP: net.ParseIP("10.42.1.7"), Local: true}, {IP: net.ParseIP("10.42.2.7")}},
			dnats(80, "10.42.1.7"), dnats(80, "10.42.1.7", "10.42.2.7")},
		{"two local", []Backend{{IP: net.ParseIP("10.42.1.7"), Local: true}, {IP: net.ParseIP("10.42.1.8"), Local: true}},
			dnats(80, "10.42.1.7", "10.42.1.8"), dnats(80, "10.42.1.7", "10.42.1.8")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st.Services[0].Backends = tc.backends
			resolved, errs := st.resolve()
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			tr := tracer{t: t, rs: compile(DefaultConfig(), resolved)}
			if got := tr.trace(p(9000)); !slices.Equal(got, tc.host) {
				t.Errorf("host-mode port: got %v, want %v", got, tc.host)
			}
			if got := tr.trace(p(9100)); !slices.Equal(got, tc.ingress) {
				t.Errorf("ingress port: got %v, want %v", got, tc.ingress)
			}
		})
	}
}

// TestResolveRefusesUnknownPublishMode: a port with an unknown mode is
// left out alone.
func TestResolveRefusesUnknownPublishMode(t *testing.T) {
	st := State{Services: []Service{{Name: "x", Backends: backends("10.42.1.2"),
		Ports: []api.PortConfig{{Published: 1, Target: 1, Mode: "local"}, {Published: 2, Target: 2}}}}}
	got, errs := st.resolve()
	if len(errs) != 1 || len(got.Services[0].Ports) != 1 || got.Services[0].Ports[0].Published != 2 {
		t.Fatalf("resolve: %v %+v", errs, got.Services)
	}
}
