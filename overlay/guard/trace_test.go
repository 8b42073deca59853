package guard

// A frame-level nftables interpreter for the guard table: it runs raw
// Ethernet frames through the very expressions compile produces (the
// objects Table.Sync sends to the kernel), with the kernel's register
// layout, so these tests check what the table does to a frame, not its
// text. lb/trace_test.go does the same for packets at the IP hooks.

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// tracer holds a compiled guard table.
type tracer struct {
	rs    *ruleset
	elems map[string][][]byte // set name → element keys
	drops int                 // packets the counter saw
}

func newTracer(rs *ruleset) *tracer {
	keys := func(es []nftables.SetElement) [][]byte {
		var out [][]byte
		for _, e := range es {
			out = append(out, e.Key)
		}
		return out
	}
	return &tracer{rs: rs, elems: map[string][][]byte{
		rs.portSet.Name: keys(rs.portElems),
		rs.ipSet.Name:   keys(rs.ipElems),
		rs.arpSet.Name:  keys(rs.arpElems),
	}}
}

// regOffset is the byte offset of a register in the kernel's register
// file (nft_parse_register: NFT_REG_1..4 are 16 bytes each after the
// verdict, NFT_REG32_00.. are 4 bytes each from the same place).
func regOffset(t *testing.T, reg uint32) int {
	t.Helper()
	switch {
	case reg >= unix.NFT_REG_1 && reg <= unix.NFT_REG_4:
		return int(reg) * 16
	case reg >= unix.NFT_REG32_00 && reg <= unix.NFT_REG32_15:
		return 16 + int(reg-unix.NFT_REG32_00)*4
	}
	t.Fatalf("register %d", reg)
	return 0
}

// frame reports the verdict for a frame entering the bridge from port
// iif: "accept" or "drop".
func (tr *tracer) frame(t *testing.T, iif string, f []byte) string {
	t.Helper()
	if v := tr.chain(t, tr.rs.hook, iif, f); v != "" {
		return v
	}
	return "accept" // the base chain's policy
}

// chain runs the rules of c; "" means the chain ended without a verdict.
func (tr *tracer) chain(t *testing.T, c *nftables.Chain, iif string, f []byte) string {
	t.Helper()
	for _, r := range tr.rs.rules {
		if r.Chain != c {
			continue
		}
		if v := tr.rule(t, r, iif, f); v != "" {
			return v
		}
	}
	return ""
}

func (tr *tracer) rule(t *testing.T, r *nftables.Rule, iif string, f []byte) string {
	t.Helper()
	var regs [16 + 16*4]byte
	store := func(reg uint32, data []byte) {
		off := regOffset(t, reg)
		n := (len(data) + 3) / 4 * 4
		copy(regs[off:off+n], make([]byte, n)) // the kernel zeroes the last word's padding
		copy(regs[off:], data)
	}
	nh := 14
	for _, e := range r.Exprs {
		switch e := e.(type) {
		case *expr.Meta:
			if e.Key != expr.MetaKeyIIFNAME || e.SourceRegister {
				t.Fatalf("meta %v not traced", e.Key)
			}
			store(e.Register, ifNameKey(iif))
		case *expr.Payload:
			base := 0
			switch e.Base {
			case expr.PayloadBaseLLHeader:
			case expr.PayloadBaseNetworkHeader:
				base = nh
			default:
				t.Fatalf("payload base %v not traced", e.Base)
			}
			from, to := base+int(e.Offset), base+int(e.Offset+e.Len)
			if to > len(f) {
				return "" // NFT_BREAK: the frame is too short
			}
			store(e.DestRegister, f[from:to])
		case *expr.Cmp:
			off := regOffset(t, e.Register)
			got := regs[off : off+len(e.Data)]
			if (e.Op == expr.CmpOpEq) != bytes.Equal(got, e.Data) {
				return ""
			}
		case *expr.Lookup:
			var set *nftables.Set
			for _, s := range []*nftables.Set{tr.rs.portSet, tr.rs.ipSet, tr.rs.arpSet} {
				if s.Name == e.SetName {
					set = s
				}
			}
			if set == nil {
				t.Fatalf("lookup in unknown set %s", e.SetName)
			}
			off := regOffset(t, e.SourceRegister)
			key := regs[off : off+int(set.KeyType.Bytes)]
			found := false
			for _, k := range tr.elems[set.Name] {
				if len(k) != int(set.KeyType.Bytes) {
					t.Fatalf("set %s: element of %d bytes, key type has %d", set.Name, len(k), set.KeyType.Bytes)
				}
				found = found || bytes.Equal(k, key)
			}
			if found == e.Invert {
				return ""
			}
		case *expr.Counter:
			tr.drops++
		case *expr.Verdict:
			switch e.Kind {
			case expr.VerdictAccept:
				return "accept"
			case expr.VerdictDrop:
				return "drop"
			case expr.VerdictJump:
				for _, c := range []*nftables.Chain{tr.rs.hook, tr.rs.ports} {
					if c.Name == e.Chain {
						return tr.chain(t, c, iif, f)
					}
				}
				t.Fatalf("jump to unknown chain %s", e.Chain)
			default:
				t.Fatalf("verdict %v not traced", e.Kind)
			}
		default:
			t.Fatalf("expression %T not traced", e)
		}
	}
	return ""
}

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

// containerMAC is the MAC the overlay gives a container (0a:58 + IP).
func containerMAC(ip netip.Addr) net.HardwareAddr {
	b := ip.As4()
	return net.HardwareAddr{0x0a, 0x58, b[0], b[1], b[2], b[3]}
}

var (
	broadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	zeroMAC      = net.HardwareAddr{0, 0, 0, 0, 0, 0}
)

// TestTrace runs frames from two container ports (and one port the
// overlay does not know) through the compiled table.
func TestTrace(t *testing.T) {
	ip1, ip2 := netip.MustParseAddr("10.42.1.2"), netip.MustParseAddr("10.42.1.3")
	gw := netip.MustParseAddr("10.42.1.1")
	mac1, mac2 := containerMAC(ip1), containerMAC(ip2)
	brMAC := net.HardwareAddr{0x02, 0x42, 0, 0, 0, 1}
	rs := compile(TableName("shoal0"), []Port{
		{IfName: "shc1", MAC: mac1, IP: ip1},
		{IfName: "shc2", MAC: mac2, IP: ip2},
	})
	// A port whose container was detached: in ports, no address entries.
	rs.portElems = append(rs.portElems, nftables.SetElement{Key: ifNameKey("shgone")})
	tr := newTracer(rs)

	udp := func(src netip.Addr) []byte { return ipv4UDP(src, ip2, 53, []byte("x")) }
	vlan := append([]byte{0, 5, 0x08, 0x00}, udp(ip1)...) // 802.1Q tag, then IPv4
	ipv6 := make([]byte, 40)
	ipv6[0] = 0x60
	cases := []struct {
		name, iif string
		frame     []byte
		want      string
	}{
		{"own IPv4", "shc1", ethFrame(mac2, mac1, etherTypeIPv4, udp(ip1)), "accept"},
		{"own IPv4 to the gateway", "shc1", ethFrame(brMAC, mac1, etherTypeIPv4, ipv4UDP(ip1, gw, 53, []byte("q"))), "accept"},
		{"own IPv4 to a VIP (hairpin goes out through the gateway)", "shc1", ethFrame(brMAC, mac1, etherTypeIPv4, ipv4UDP(ip1, netip.MustParseAddr("10.43.0.10"), 80, nil)), "accept"},
		{"the other port's own IPv4", "shc2", ethFrame(mac1, mac2, etherTypeIPv4, ipv4UDP(ip2, ip1, 53, nil)), "accept"},
		{"IPv4 with another container's source", "shc1", ethFrame(mac2, mac1, etherTypeIPv4, udp(ip2)), "drop"},
		{"IPv4 with the gateway's source", "shc1", ethFrame(mac2, mac1, etherTypeIPv4, udp(gw)), "drop"},
		{"IPv4 from 0.0.0.0", "shc1", ethFrame(broadcastMAC, mac1, etherTypeIPv4, udp(netip.IPv4Unspecified())), "drop"},
		{"IPv4 from outside the cluster", "shc1", ethFrame(brMAC, mac1, etherTypeIPv4, udp(netip.MustParseAddr("192.0.2.7"))), "drop"},
		{"own address, another container's MAC", "shc1", ethFrame(brMAC, mac2, etherTypeIPv4, udp(ip1)), "drop"},
		{"another container's MAC and address", "shc1", ethFrame(brMAC, mac2, etherTypeIPv4, udp(ip2)), "drop"},
		{"truncated IPv4", "shc1", ethFrame(brMAC, mac1, etherTypeIPv4, []byte{0x45, 0}), "drop"},
		{"own ARP request", "shc1", ethFrame(broadcastMAC, mac1, etherTypeARP, arpPacket(1, mac1, ip1, zeroMAC, gw)), "accept"},
		{"own ARP reply", "shc1", ethFrame(brMAC, mac1, etherTypeARP, arpPacket(2, mac1, ip1, brMAC, gw)), "accept"},
		{"own gratuitous ARP", "shc1", ethFrame(broadcastMAC, mac1, etherTypeARP, arpPacket(1, mac1, ip1, zeroMAC, ip1)), "accept"},
		{"ARP reply claiming another container's address (audit F14)", "shc1", ethFrame(brMAC, mac1, etherTypeARP, arpPacket(2, mac1, ip2, brMAC, gw)), "drop"},
		{"ARP reply claiming the gateway", "shc1", ethFrame(mac2, mac1, etherTypeARP, arpPacket(2, mac1, gw, mac2, ip2)), "drop"},
		{"ARP with another sender MAC", "shc1", ethFrame(brMAC, mac1, etherTypeARP, arpPacket(2, mac2, ip1, brMAC, gw)), "drop"},
		{"ARP from another Ethernet source", "shc1", ethFrame(brMAC, mac2, etherTypeARP, arpPacket(2, mac1, ip1, brMAC, gw)), "drop"},
		{"ARP probe from 0.0.0.0", "shc1", ethFrame(broadcastMAC, mac1, etherTypeARP, arpPacket(1, mac1, netip.IPv4Unspecified(), zeroMAC, ip2)), "drop"},
		{"ARP of another hardware type", "shc1", ethFrame(brMAC, mac1, etherTypeARP, append([]byte{0, 6}, arpPacket(2, mac1, ip1, brMAC, gw)[2:]...)), "drop"},
		{"IPv6", "shc1", ethFrame(net.HardwareAddr{0x33, 0x33, 0, 0, 0, 2}, mac1, 0x86dd, ipv6), "drop"},
		{"VLAN-tagged IPv4", "shc1", ethFrame(mac2, mac1, 0x8100, vlan), "drop"},
		{"another ether type", "shc1", ethFrame(broadcastMAC, mac1, 0x88cc, make([]byte, 46)), "drop"},
		{"a detached container's port", "shgone", ethFrame(brMAC, mac1, etherTypeIPv4, udp(ip1)), "drop"},
		{"a port the overlay does not know", "eth0", ethFrame(brMAC, mac1, etherTypeIPv4, udp(ip2)), "accept"},
	}
	for _, c := range cases {
		if got := tr.frame(t, c.iif, c.frame); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
	if tr.drops == 0 {
		t.Error("the drop counter saw nothing")
	}
}

// TestElems: the element keys have the lengths of their sets' key
// types and the fields where the rules load them.
func TestElems(t *testing.T) {
	ip := netip.MustParseAddr("10.42.1.9")
	port, ipe, arp := elems(Port{IfName: "shabc", MAC: containerMAC(ip), IP: ip})
	_, ps, is, as := sets("t")
	for _, c := range []struct {
		e nftables.SetElement
		s *nftables.Set
	}{{port, ps}, {ipe, is}, {arp, as}} {
		if len(c.e.Key) != int(c.s.KeyType.Bytes) {
			t.Errorf("%s: key of %d bytes, key type %s has %d", c.s.Name, len(c.e.Key), c.s.KeyType.Name, c.s.KeyType.Bytes)
		}
	}
	want := slices.Concat(ifNameKey("shabc"), []byte{0x0a, 0x58, 10, 42, 1, 9, 0, 0}, []byte{10, 42, 1, 9})
	if !bytes.Equal(ipe.Key, want) {
		t.Errorf("ip-src key = %x, want %x", ipe.Key, want)
	}
}
