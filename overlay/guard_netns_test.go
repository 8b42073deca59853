package overlay

// The anti-spoofing table (overlay/guard) on real kernels, driven by the
// overlay (root): forged ARP and forged sources from a container are
// dropped at its bridge port, and what containers legitimately send still
// gets through (same node, across nodes, the gateway, a VIP that leads
// back to the sender, the routing mesh's client-address path), across
// Setup, agent restarts and Detach.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/lb"
	"github.com/shoal-org/shoal/overlay/guard"
	"github.com/shoal-org/shoal/overlay/linkutil"
)

// inNSPath runs fn on a thread inside the namespace at path.
func inNSPath(t *testing.T, path string, fn func() error) {
	t.Helper()
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if err := linkutil.DoInNS(ns, fn); err != nil {
		t.Fatal(err)
	}
}

// sendFrames writes raw Ethernet frames on ifName inside the namespace at
// path, as a container with CAP_NET_RAW (Docker's default set) can.
func sendFrames(t *testing.T, path, ifName string, frames ...[]byte) {
	t.Helper()
	inNSPath(t, path, func() error {
		ifi, err := net.InterfaceByName(ifName)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for _, f := range frames {
			sa := &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6}
			copy(sa.Addr[:], f[:6])
			if err := unix.Sendto(fd, f, 0, sa); err != nil {
				return fmt.Errorf("send frame: %w", err)
			}
		}
		return nil
	})
}

// The frames a container sends (overlay/guard/trace_test.go builds the
// same to trace them through the compiled table).

// ethFrame is an Ethernet header and payload.
func ethFrame(dst, src net.HardwareAddr, etherType uint16, payload []byte) []byte {
	f := append(append(append([]byte{}, dst...), src...), byte(etherType>>8), byte(etherType))
	return append(f, payload...)
}

// ipv4UDP is an IPv4 header and a UDP datagram (no UDP checksum).
func ipv4UDP(src, dst netip.Addr, dport uint16, payload []byte) []byte {
	udp := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(udp[0:], 40000)
	binary.BigEndian.PutUint16(udp[2:], dport)
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
	copy(udp[8:], payload)
	ip := make([]byte, 20)
	ip[0], ip[8], ip[9] = 0x45, 64, unix.IPPROTO_UDP
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(udp)))
	s4, d4 := src.As4(), dst.As4()
	copy(ip[12:], s4[:])
	copy(ip[16:], d4[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	return append(ip, udp...)
}

// arpPacket is an Ethernet/IPv4 ARP packet.
func arpPacket(op uint16, sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr) []byte {
	p := []byte{0, 1, 8, 0, 6, 4, byte(op >> 8), byte(op)}
	s4, t4 := spa.As4(), tpa.As4()
	p = append(append(p, sha...), s4[:]...)
	return append(append(p, tha...), t4[:]...)
}

var (
	broadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	zeroMAC      = net.HardwareAddr{0, 0, 0, 0, 0, 0}
)

const (
	etherTypeIPv4 = 0x0800
	etherTypeARP  = 0x0806
)

// listenUDP opens a UDP socket on addr inside the namespace at path,
// closed at cleanup.
func listenUDP(t *testing.T, path, addr string) net.PacketConn {
	t.Helper()
	var pc net.PacketConn
	inNSPath(t, path, func() error {
		var err error
		pc, err = net.ListenPacket("udp4", addr)
		return err
	})
	t.Cleanup(func() { pc.Close() })
	return pc
}

// received returns the payloads pc receives within d.
func received(pc net.PacketConn, d time.Duration) []string {
	var got []string
	buf := make([]byte, 2048)
	_ = pc.SetReadDeadline(time.Now().Add(d))
	for {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			slices.Sort(got)
			return slices.Compact(got)
		}
		got = append(got, string(buf[:n]))
	}
}

// serveTCP answers every connection to addr inside the namespace at path
// with "NAME saw REMOTE-IP" and closes it; the listener goes at cleanup.
func serveTCP(t *testing.T, path, addr, name string) {
	t.Helper()
	var l net.Listener
	inNSPath(t, path, func() error {
		var err error
		l, err = net.Listen("tcp4", addr)
		return err
	})
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			_, _ = fmt.Fprintf(c, "%s saw %s", name, host)
			c.Close()
		}
	}()
}

// getTCP connects to addr from the namespace at path and returns what the
// server wrote, retrying for a few seconds (neighbour resolution, a fresh
// rule set).
func getTCP(t *testing.T, path, addr string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var body []byte
		ns, err := netns.GetFromPath(path)
		if err != nil {
			t.Fatal(err)
		}
		err = linkutil.DoInNS(ns, func() error {
			c, err := net.DialTimeout("tcp4", addr, 2*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			body, err = io.ReadAll(c)
			return err
		})
		ns.Close()
		if err == nil {
			return string(body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("TCP to %s from %s: %v", addr, path, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// guardDump is what a host's guard table holds: the port names, the
// address entries ("port mac ip"; the ARP set must agree) and the packets
// its drop counter saw. exists is false without the table. readGuard
// reads the sets and chains by the names overlay/guard/README.md gives.
type guardDump struct {
	exists bool
	ports  []string
	addrs  []string
	drops  uint64
	rules  int
}

func readGuard(t *testing.T, h *testHost) guardDump {
	t.Helper()
	ns, err := netns.GetFromPath(h.nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		t.Fatal(err)
	}
	name := guard.TableName(h.cfg.BridgeName)
	if _, err := c.ListTableOfFamily(name, nftables.TableFamilyBridge); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return guardDump{}
		}
		t.Fatalf("list table %s: %v", name, err)
	}
	d := guardDump{exists: true}
	tbl := &nftables.Table{Family: nftables.TableFamilyBridge, Name: name}
	portSet, ipSet, arpSet := &nftables.Set{Table: tbl, Name: "ports"}, &nftables.Set{Table: tbl, Name: "ip-src"}, &nftables.Set{Table: tbl, Name: "arp-src"}
	trim := func(b []byte) string { return strings.TrimRight(string(b), "\x00") }
	elems := func(s *nftables.Set) []nftables.SetElement {
		es, err := c.GetSetElements(s)
		if err != nil {
			t.Fatalf("elements of %s: %v", s.Name, err)
		}
		return es
	}
	for _, e := range elems(portSet) {
		d.ports = append(d.ports, trim(e.Key))
	}
	for _, e := range elems(ipSet) {
		k := e.Key
		ip, _ := netip.AddrFromSlice(k[24:28])
		d.addrs = append(d.addrs, fmt.Sprintf("%s %s %s", trim(k[:16]), net.HardwareAddr(k[16:22]), ip))
	}
	var arps []string
	for _, e := range elems(arpSet) {
		k := e.Key
		ip, _ := netip.AddrFromSlice(k[32:36])
		if !slices.Equal(k[16:22], k[24:30]) {
			t.Errorf("arp-src element with two MACs: %x", k)
		}
		arps = append(arps, fmt.Sprintf("%s %s %s", trim(k[:16]), net.HardwareAddr(k[16:22]), ip))
	}
	slices.Sort(d.ports)
	slices.Sort(d.addrs)
	slices.Sort(arps)
	if !slices.Equal(d.addrs, arps) {
		t.Errorf("ip-src %v and arp-src %v differ", d.addrs, arps)
	}
	for _, ch := range []string{"prerouting", "from-container"} {
		rules, err := c.GetRules(tbl, &nftables.Chain{Table: tbl, Name: ch})
		if err != nil {
			t.Fatalf("rules of %s: %v", ch, err)
		}
		d.rules += len(rules)
		for _, r := range rules {
			for _, e := range r.Exprs {
				if ctr, ok := e.(*expr.Counter); ok {
					d.drops += ctr.Packets
				}
			}
		}
	}
	return d
}

// guardEntry is how readGuard shows a container's address entry.
func guardEntry(id, ip string) string {
	a := netip.MustParseAddr(ip)
	return fmt.Sprintf("%s %s %s", VethName(id), containerMAC(a), a)
}

// neighMAC returns the MAC of ip in the neighbour table of namespace ns
// ("" without an entry).
func neighMAC(t *testing.T, ns, ip string) string {
	t.Helper()
	f := strings.Fields(sh(t, "ip", "-n", ns, "neigh", "show", ip))
	if i := slices.Index(f, "lladdr"); i >= 0 && i+1 < len(f) {
		return f[i+1]
	}
	return ""
}

// attachAll attaches containers (id → namespace path) to h and detaches
// them at cleanup; it returns their addresses.
func attachAll(t *testing.T, h *testHost, ids ...string) (paths, ips map[string]string, names map[string]string) {
	t.Helper()
	paths, ips, names = map[string]string{}, map[string]string{}, map[string]string{}
	for _, id := range ids {
		name, path := newNetns(t, id)
		paths[id], names[id] = path, name
		t.Cleanup(func() { _ = h.ov.Detach(t.Context(), id, path) })
		ip, err := h.ov.Attach(t.Context(), id, path)
		if err != nil {
			t.Fatalf("attach %s: %v", id, err)
		}
		ips[id] = ip
	}
	return paths, ips, names
}

// TestGuardStopsARPSpoofing is audit a4 F14 as a regression test: c1, with
// CAP_NET_RAW, tells the node that c2's address is at c1's MAC, tells c2
// that the gateway is, and announces c2's address as its own to everyone
// (gratuitous ARP). The neighbour entries must not move. Before the guard
// the node's entry for c2 took c1's MAC at the first reply.
func TestGuardStopsARPSpoofing(t *testing.T) {
	requireNetAdmin(t)
	a := newHosts(t, 1)[0]
	a.start(t, t)
	paths, ips, names := attachAll(t, a, "c1", "c2")
	ip1, ip2 := netip.MustParseAddr(ips["c1"]), netip.MustParseAddr(ips["c2"])
	gw := netip.MustParseAddr(a.ov.BridgeIP().String())
	mac1, mac2, brMAC := containerMAC(ip1), containerMAC(ip2), a.ov.bridgeMAC
	// No lock time: an entry may change at once (the kernel's default 1 s
	// only delays the attack).
	sh(t, "ip", "netns", "exec", a.ns, "sysctl", "-qw", "net.ipv4.neigh."+a.cfg.BridgeName+".locktime=0")
	sh(t, "ip", "netns", "exec", names["c2"], "sysctl", "-qw", "net.ipv4.neigh.eth0.locktime=0")
	ping(t, a.ns, ip2.String())       // the node learns c2
	ping(t, names["c2"], gw.String()) // c2 learns the gateway
	if got := neighMAC(t, a.ns, ip2.String()); got != mac2.String() {
		t.Fatalf("node's entry for c2 before the attack: %q, want %s", got, mac2)
	}
	before := readGuard(t, a).drops

	forged := [][]byte{
		ethFrame(brMAC, mac1, etherTypeARP, arpPacket(2, mac1, ip2, brMAC, gw)),                     // to the node: c2 is at mac1
		ethFrame(mac2, mac1, etherTypeARP, arpPacket(2, mac1, gw, mac2, ip2)),                       // to c2: the gateway is at mac1
		ethFrame(broadcastMAC, mac1, etherTypeARP, arpPacket(1, mac1, ip2, zeroMAC, ip2)),           // gratuitous: c2 is at mac1
		ethFrame(broadcastMAC, mac2, etherTypeARP, arpPacket(1, mac1, gw, zeroMAC, gw)),             // with c2's Ethernet source
		ethFrame(brMAC, mac1, etherTypeARP, arpPacket(2, mac1, netip.IPv4Unspecified(), brMAC, gw)), // a probe's 0.0.0.0
	}
	for range 3 {
		sendFrames(t, paths["c1"], "eth0", forged...)
	}
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if got := neighMAC(t, a.ns, ip2.String()); got != mac2.String() {
			t.Fatalf("the node's neighbour entry for c2 (%s) is %q after c1's forged ARP, want %s", ip2, got, mac2)
		}
		if got := neighMAC(t, names["c2"], gw.String()); got != brMAC.String() {
			t.Fatalf("c2's neighbour entry for the gateway %s is %q after c1's forged ARP, want %s", gw, got, brMAC)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if d := readGuard(t, a).drops - before; d < uint64(len(forged)) {
		t.Errorf("the guard dropped %d frames, want at least %d (the forged ones did not reach it?)", d, len(forged))
	}
	// c1's own ARP still works: it reaches c2 and the gateway.
	ping(t, names["c1"], ip2.String())
	ping(t, names["c1"], gw.String())
	ping(t, a.ns, ip2.String())
}

// TestGuardStopsForgedSources: c1 sends UDP datagrams to c3 on its own
// node and to c4 on another, each with a source that is not its own (c2's
// address, the gateway's, 0.0.0.0, an outside address, or its own
// address behind c2's MAC) and one that is. Only the last arrives.
// Before the guard, all but 0.0.0.0 (a martian to every receiver) did.
func TestGuardStopsForgedSources(t *testing.T) {
	requireNetAdmin(t)
	hosts := newHosts(t, 2)
	a, b := hosts[0], hosts[1]
	a.start(t, t)
	b.start(t, t)
	for _, h := range hosts {
		if err := h.ov.SetPeers(peersOf(hosts)); err != nil {
			t.Fatal(err)
		}
	}
	paths, ips, names := attachAll(t, a, "c1", "c2", "c3")
	pathsB, ipsB, _ := attachAll(t, b, "c4")
	rc3 := listenUDP(t, paths["c3"], ":9999")
	rc4 := listenUDP(t, pathsB["c4"], ":9999")
	ping(t, names["c1"], ips["c3"]) // neighbours and the path across nodes are up
	ping(t, names["c1"], ipsB["c4"])

	ip1, ip2 := netip.MustParseAddr(ips["c1"]), netip.MustParseAddr(ips["c2"])
	ip3, ip4 := netip.MustParseAddr(ips["c3"]), netip.MustParseAddr(ipsB["c4"])
	mac1, mac2, mac3 := containerMAC(ip1), containerMAC(ip2), containerMAC(ip3)
	gw := netip.MustParseAddr(a.ov.BridgeIP().String())
	brMAC := a.ov.bridgeMAC
	type variant struct {
		name string
		src  netip.Addr
		mac  net.HardwareAddr
	}
	variants := []variant{
		{"own", ip1, mac1},
		{"as-c2", ip2, mac1},
		{"as-gateway", gw, mac1},
		{"zero", netip.IPv4Unspecified(), mac1},
		{"outside", netip.MustParseAddr("192.0.2.7"), mac1},
		{"c2-mac", ip1, mac2},
		{"as-c2-fully", ip2, mac2},
	}
	var frames [][]byte
	for _, v := range variants {
		frames = append(frames,
			ethFrame(mac3, v.mac, etherTypeIPv4, ipv4UDP(v.src, ip3, 9999, []byte(v.name))),  // same bridge
			ethFrame(brMAC, v.mac, etherTypeIPv4, ipv4UDP(v.src, ip4, 9999, []byte(v.name)))) // routed to node 2
	}
	for range 3 {
		sendFrames(t, paths["c1"], "eth0", frames...)
	}
	for _, r := range []struct {
		who string
		pc  net.PacketConn
	}{{"c3 (same node)", rc3}, {"c4 (other node)", rc4}} {
		if got := received(r.pc, 1500*time.Millisecond); !slices.Equal(got, []string{"own"}) {
			t.Errorf("%s received %q from c1, want only [own]: a container passed as another", r.who, got)
		}
	}

	// A VLAN tag hides nothing: a tagged frame is dropped even with c1's
	// own MAC and address inside (nft reads the tag as the ether type).
	before := readGuard(t, a).drops
	tagged := append([]byte{0, 5, etherTypeIPv4 >> 8, etherTypeIPv4 & 0xff}, ipv4UDP(ip1, ip3, 9999, []byte("tagged"))...)
	sendFrames(t, paths["c1"], "eth0", ethFrame(mac3, mac1, 0x8100, tagged), ethFrame(mac3, mac1, 0x8100, tagged))
	eventually(t, 5*time.Second, func() error {
		if d := readGuard(t, a).drops - before; d < 2 {
			return fmt.Errorf("the guard dropped %d of 2 VLAN-tagged frames", d)
		}
		return nil
	})
}

// TestGuardDropsIPv6: containers are IPv4 only, so their ports carry no
// IPv6: c1 cannot reach c2's link-local address (nor the node's, past the
// load balancer's IPv4 filters). Before the guard it could.
func TestGuardDropsIPv6(t *testing.T) {
	requireNetAdmin(t)
	a := newHosts(t, 1)[0]
	a.start(t, t)
	_, _, names := attachAll(t, a, "c1", "c2")
	linkLocal := func(ns string) string {
		out := sh(t, "ip", "-n", ns, "-6", "addr", "show", "dev", "eth0", "scope", "link")
		f := strings.Fields(out)
		if i := slices.Index(f, "inet6"); i >= 0 && !strings.Contains(out, "tentative") {
			addr, _, _ := strings.Cut(f[i+1], "/")
			return addr
		}
		return ""
	}
	var ll2 string
	eventually(t, 10*time.Second, func() error {
		ll2 = linkLocal(names["c2"])
		if ll2 == "" || linkLocal(names["c1"]) == "" {
			return errors.New("link-local addresses not ready (DAD)")
		}
		return nil
	})
	for range 3 {
		if err := exec.Command("ip", "netns", "exec", names["c1"], "/bin/busybox", "ping6", "-c1", "-W1", "-I", "eth0", ll2).Run(); err == nil {
			t.Fatalf("c1 reached c2's link-local address %s over IPv6", ll2)
		}
	}
}

// TestGuardKeepsLegitTraffic: with the guard in place, containers still
// reach each other on one node and across nodes (ping and TCP), the
// gateway and a UDP service on it (the DNS path), a VIP on their own node
// including their own (hairpin: out through the gateway, DNATed to
// themselves, masqueraded, back through their port), and the routing mesh
// still shows a remote backend the outside client's address (its replies
// leave it with its own address and go back through the ingress node).
func TestGuardKeepsLegitTraffic(t *testing.T) {
	requireNetAdmin(t)
	hosts := newHosts(t, 2)
	a, b := hosts[0], hosts[1]
	a.start(t, t)
	b.start(t, t)
	for _, h := range hosts {
		if err := h.ov.SetPeers(peersOf(hosts)); err != nil {
			t.Fatal(err)
		}
	}
	paths, ips, names := attachAll(t, a, "c1", "c2")
	pathsB, ipsB, namesB := attachAll(t, b, "c3")
	gw := a.ov.BridgeIP().String()
	for id, path := range map[string]string{"c1": paths["c1"], "c2": paths["c2"]} {
		serveTCP(t, path, ":8080", id)
	}
	serveTCP(t, pathsB["c3"], ":8080", "c3")

	ping(t, names["c1"], ips["c2"])
	ping(t, names["c1"], gw)
	ping(t, names["c1"], ipsB["c3"])
	ping(t, namesB["c3"], ips["c1"])
	if got := getTCP(t, paths["c1"], ips["c2"]+":8080"); got != "c2 saw "+ips["c1"] {
		t.Errorf("same node TCP: %q", got)
	}
	if got := getTCP(t, paths["c1"], ipsB["c3"]+":8080"); got != "c3 saw "+ips["c1"] {
		t.Errorf("cross node TCP: %q", got)
	}
	if got := getTCP(t, pathsB["c3"], ips["c2"]+":8080"); got != "c2 saw "+ipsB["c3"] {
		t.Errorf("cross node TCP, other way: %q", got)
	}

	// A UDP service on the bridge address (where the embedded DNS listens).
	dns := listenUDP(t, a.nsPath, gw+":53")
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := dns.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = dns.WriteTo(append([]byte("answer:"), buf[:n]...), from)
		}
	}()
	inNSPath(t, paths["c1"], func() error {
		c, err := net.Dial("udp4", gw+":53")
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, 512)
		for range 10 {
			_, _ = c.Write([]byte("query"))
			_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			if n, err := c.Read(buf); err == nil && string(buf[:n]) == "answer:query" {
				return nil
			}
		}
		return errors.New("no answer from the UDP service on the bridge address")
	})

	// The load balancers as the agent programs them (flat rule set):
	// service "self" on node 1 has c1 as its only backend; "web" is
	// published on 8081 and served by c3 on node 2.
	vip, webVIP := net.ParseIP("10.43.0.10"), net.ParseIP("10.43.0.11")
	web := func(local bool) lb.Service {
		return lb.Service{Name: "web", VIP: webVIP,
			Ports:    []api.PortConfig{{Published: 8081, Target: 8080, Protocol: "tcp"}},
			Backends: []lb.Backend{{IP: net.ParseIP(ipsB["c3"]), Local: local}}}
	}
	for _, h := range []struct {
		host *testHost
		st   lb.State
	}{
		{a, lb.State{Services: []lb.Service{{Name: "self", VIP: vip, Backends: []lb.Backend{{IP: net.ParseIP(ips["c1"]), Local: true}}}, web(false)}}},
		{b, lb.State{Services: []lb.Service{web(true)}}},
	} {
		cfg := lb.DefaultConfig()
		cfg.NetNSPath = h.host.nsPath
		l, err := lb.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.Teardown() })
		if err := l.Set(h.st); err != nil {
			t.Fatal(err)
		}
	}
	// Hairpin: c1 to its own VIP. The node masquerades it to the gateway.
	if got := getTCP(t, paths["c1"], vip.String()+":8080"); got != "c1 saw "+gw {
		t.Errorf("hairpin to the own VIP: %q, want %q", got, "c1 saw "+gw)
	}
	if got := getTCP(t, paths["c2"], vip.String()+":8080"); got != "c1 saw "+gw {
		t.Errorf("same node VIP: %q, want %q", got, "c1 saw "+gw)
	}
	// The routing mesh from a LAN host through node 1 to c3 on node 2.
	lanNS, lanPath := newNetns(t, "lan")
	sh(t, "ip", "link", "add", "gdlan0", "netns", lanNS, "type", "veth", "peer", "name", "gdlan1", "netns", a.sw)
	sh(t, "ip", "-n", a.sw, "link", "set", "gdlan1", "master", "br0", "up")
	sh(t, "ip", "-n", lanNS, "addr", "add", "10.231.1.99/24", "dev", "gdlan0")
	sh(t, "ip", "-n", lanNS, "link", "set", "gdlan0", "up")
	if got := getTCP(t, lanPath, a.cfg.UnderlayIP.String()+":8081"); got != "c3 saw 10.231.1.99" {
		t.Errorf("routing mesh to a remote backend: %q, want %q", got, "c3 saw 10.231.1.99")
	}
	for _, h := range hosts {
		if d := readGuard(t, h); !d.exists {
			t.Errorf("%s has no guard table", h.cfg.NodeID)
		}
	}
}

// TestGuardRestartAndDetach: Setup again, an agent restart (Close, New,
// Setup on the same state) and a bridge deleted and re-created by Setup
// leave the table as it was (one rule set, one entry per container) and
// still in force; an Attach rebuilds a table
// deleted underneath; Detach takes the container's entries off (its port
// name stays until the next Setup, which drops it); Teardown removes the
// table.
func TestGuardRestartAndDetach(t *testing.T) {
	requireNetAdmin(t)
	a := newHosts(t, 1)[0]
	a.start(t, t)
	paths, ips, names := attachAll(t, a, "c1", "c2")
	want := []string{guardEntry("c1", ips["c1"]), guardEntry("c2", ips["c2"])}
	slices.Sort(want)
	check := func(when string, wantPorts ...string) guardDump {
		t.Helper()
		d := readGuard(t, a)
		slices.Sort(wantPorts)
		if !d.exists || d.rules != 4 || !slices.Equal(d.addrs, want) || !slices.Equal(d.ports, wantPorts) {
			t.Fatalf("%s: table exists=%v rules=%d (want 4)\nentries %q\nwant    %q\nports %q, want %q", when, d.exists, d.rules, d.addrs, want, d.ports, wantPorts)
		}
		return d
	}
	both := []string{VethName("c1"), VethName("c2")}
	check("after attach", both...)
	attack := func(when string) {
		t.Helper()
		ip1, ip2 := netip.MustParseAddr(ips["c1"]), netip.MustParseAddr(ips["c2"])
		gw := netip.MustParseAddr(a.ov.BridgeIP().String())
		before := readGuard(t, a).drops
		sendFrames(t, paths["c1"], "eth0", ethFrame(a.ov.bridgeMAC, containerMAC(ip1), etherTypeARP,
			arpPacket(2, containerMAC(ip1), ip2, a.ov.bridgeMAC, gw)))
		eventually(t, 5*time.Second, func() error {
			if readGuard(t, a).drops == before {
				return fmt.Errorf("%s: the forged ARP reply was not dropped", when)
			}
			return nil
		})
		ping(t, names["c1"], ips["c2"])
	}
	attack("after attach")

	if err := a.ov.Setup(t.Context()); err != nil {
		t.Fatal(err)
	}
	check("after a second Setup", both...)
	if _, err := a.ov.Attach(t.Context(), "c1", paths["c1"]); err != nil {
		t.Fatal(err)
	}
	check("after a second Attach", both...)

	// Agent restart.
	if err := a.ov.Close(); err != nil {
		t.Fatal(err)
	}
	check("after Close", both...)
	a.start(t, t)
	check("after the restart's Setup", both...)
	attack("after the restart")

	// The bridge deleted underneath: Setup re-creates it and puts the
	// veths back; the entries, keyed by name, still hold.
	sh(t, "ip", "-n", a.ns, "link", "del", a.cfg.BridgeName)
	if err := a.ov.Setup(t.Context()); err != nil {
		t.Fatal(err)
	}
	check("after the bridge came back", both...)
	attack("after the bridge came back")

	// The table deleted underneath: the next Attach puts it back whole.
	ns, err := netns.GetFromPath(a.nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		t.Fatal(err)
	}
	c.DelTable(&nftables.Table{Family: nftables.TableFamilyBridge, Name: guard.TableName(a.cfg.BridgeName)})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	morePaths, moreIPs, _ := attachAll(t, a, "c3")
	want = append(want, guardEntry("c3", moreIPs["c3"]))
	slices.Sort(want)
	check("after an Attach without the table", VethName("c1"), VethName("c2"), VethName("c3"))
	attack("after the rebuild")

	// Detach.
	if err := a.ov.Detach(t.Context(), "c3", morePaths["c3"]); err != nil {
		t.Fatal(err)
	}
	want = slices.DeleteFunc(want, func(s string) bool { return strings.HasPrefix(s, VethName("c3")+" ") })
	check("after Detach", VethName("c1"), VethName("c2"), VethName("c3"))
	if err := a.ov.Detach(t.Context(), "c3", morePaths["c3"]); err != nil {
		t.Fatalf("second Detach: %v", err)
	}
	if err := a.ov.Setup(t.Context()); err != nil {
		t.Fatal(err)
	}
	check("after Detach and Setup", both...)

	if err := a.ov.Teardown(); err != nil {
		t.Fatal(err)
	}
	if d := readGuard(t, a); d.exists {
		t.Fatalf("the guard table survived Teardown: %+v", d)
	}
}

// TestAttachRestoresContainerMAC: the guard lets a port carry its
// container's derived MAC only, so Attach, which repairs an attached
// container, sets eth0's MAC back when it drifted (a container with
// CAP_NET_ADMIN, an older agent). Before, the container stayed cut off.
func TestAttachRestoresContainerMAC(t *testing.T) {
	requireNetAdmin(t)
	a := newHosts(t, 1)[0]
	a.start(t, t)
	paths, ips, names := attachAll(t, a, "c1", "c2")
	sh(t, "ip", "-n", names["c1"], "link", "set", "eth0", "address", "02:00:00:00:00:01")
	noPing(t, names["c1"], ips["c2"])
	if _, err := a.ov.Attach(t.Context(), "c1", paths["c1"]); err != nil {
		t.Fatal(err)
	}
	want := containerMAC(netip.MustParseAddr(ips["c1"])).String()
	if got := sh(t, "ip", "-n", names["c1"], "link", "show", "eth0"); !strings.Contains(got, "link/ether "+want) {
		t.Fatalf("eth0 after Attach:\n%s\nwant MAC %s", got, want)
	}
	ping(t, names["c1"], ips["c2"])
}

// TestRepairGuardAfterForeignFlush: a guard table someone else deleted
// (`nft flush ruleset`) is made again, whole, by the next RepairGuard,
// which the network loop runs on every pass; an intact table is left
// alone. Before, only Setup's 30 s resync made it again, and until then a
// container could forge its source address.
func TestRepairGuardAfterForeignFlush(t *testing.T) {
	requireNetAdmin(t)
	a := newHosts(t, 1)[0]
	a.start(t, t)
	_, ips, _ := attachAll(t, a, "c1", "c2")
	want := []string{guardEntry("c1", ips["c1"]), guardEntry("c2", ips["c2"])}
	slices.Sort(want)
	if repaired, err := a.ov.RepairGuard(); err != nil || repaired {
		t.Fatalf("RepairGuard of an intact table: repaired %v, %v", repaired, err)
	}
	sh(t, "ip", "netns", "exec", a.ns, "nft", "flush", "ruleset")
	if d := readGuard(t, a); d.exists {
		t.Fatal("the table survived nft flush ruleset")
	}
	if repaired, err := a.ov.RepairGuard(); err != nil || !repaired {
		t.Fatalf("RepairGuard after a flush: repaired %v, %v", repaired, err)
	}
	d := readGuard(t, a)
	ports := []string{VethName("c1"), VethName("c2")}
	slices.Sort(ports)
	if !d.exists || d.rules != 4 || !slices.Equal(d.addrs, want) || !slices.Equal(d.ports, ports) {
		t.Fatalf("after the repair: table exists=%v rules=%d (want 4)\nentries %q\nwant    %q\nports %q, want %q", d.exists, d.rules, d.addrs, want, d.ports, ports)
	}
	if repaired, err := a.ov.RepairGuard(); err != nil || repaired {
		t.Fatalf("RepairGuard right after a repair: repaired %v, %v", repaired, err)
	}
}
