package lb

// A tiny nftables interpreter: it runs packets through the expressions
// compile produced (the very objects apply sends to the kernel), so the
// table tests check behaviour — where a packet is DNATed, masqueraded or
// rejected — instead of rule text. kube-proxy's nftables tests do the same.

import (
	"bytes"
	"fmt"
	"net"
	"sort"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

type packet struct {
	hook         *nftables.ChainHook
	iif, oif     string
	saddr, daddr string
	proto        byte
	dport        uint16
	local        bool   // fib daddr type local
	dnat         bool   // ct status dnat (postrouting, forward)
	established  bool   // ct state established,related (a reply or a known flow)
	srcMAC       string // the Ethernet source of the frame (ether saddr)
	ctmark       uint32 // the connection's conntrack mark before the hook
}

// verdict is what the table did to a packet at one hook.
type verdict struct {
	kind string // accept, drop, dnat, masquerade, reset, unreachable
	addr string // dnat target
	port uint16 // dnat port, 0 = unchanged
	// ctmark and mark are the conntrack and packet marks the hook set (0 =
	// none set).
	ctmark, mark uint32
}

func (v verdict) String() string {
	s := v.kind
	switch {
	case v.kind == "dnat" && v.port != 0:
		s = fmt.Sprintf("dnat %s:%d", v.addr, v.port)
	case v.kind == "dnat":
		s = "dnat " + v.addr
	}
	if v.ctmark != 0 {
		s += fmt.Sprintf(" ctmark=%#x", v.ctmark)
	}
	if v.mark != 0 {
		s += fmt.Sprintf(" mark=%#x", v.mark)
	}
	return s
}

type tracer struct {
	t  *testing.T
	rs *ruleset
	fx *effects // marks set so far during one hook
}

// effects are what the rules of one hook set on the packet and its
// connection, kept across the hook's base chains.
type effects struct {
	ctmark, mark uint32
	ctmarkSet    bool
}

// trace returns every distinct verdict the hook can reach (numgen random
// is enumerated), sorted.
func (tr tracer) trace(p packet) []string {
	tr.t.Helper()
	seen := map[string]bool{}
	for rnd := uint32(0); rnd < 64; rnd++ {
		seen[tr.hook(p, rnd).String()] = true
	}
	out := make([]string, 0, len(seen))
	for v := range seen {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

// hook runs the base chains of p.hook in priority order, as the kernel does.
func (tr tracer) hook(p packet, rnd uint32) verdict {
	var bases []*nftables.Chain
	for _, c := range tr.rs.chains {
		if c.Hooknum != nil && *c.Hooknum == *p.hook {
			bases = append(bases, c)
		}
	}
	sort.SliceStable(bases, func(i, j int) bool { return *bases[i].Priority < *bases[j].Priority })
	tr.fx = &effects{}
	marked := func(v verdict) verdict {
		if tr.fx.ctmarkSet {
			v.ctmark = tr.fx.ctmark
		}
		v.mark = tr.fx.mark
		return v
	}
	for _, c := range bases {
		if v, final := tr.chain(c.Name, p, rnd, 0); final && v.kind != "accept" {
			return marked(v)
		}
	}
	return marked(verdict{kind: "accept"})
}

func (tr tracer) chain(name string, p packet, rnd uint32, depth int) (verdict, bool) {
	tr.t.Helper()
	if depth > 8 {
		tr.t.Fatalf("chain loop at %s", name)
	}
	if tr.rs.chain(name) == nil {
		tr.t.Fatalf("jump to missing chain %q", name)
	}
	for _, r := range tr.rs.rules {
		if r.Chain.Name != name {
			continue
		}
		if r.Table != tr.rs.table {
			tr.t.Fatalf("rule in chain %s not in our table", name)
		}
		if v, final, ret := tr.rule(r, p, rnd, depth); final {
			return v, true
		} else if ret {
			return verdict{}, false
		}
	}
	return verdict{}, false
}

// rule evaluates one rule: final means a verdict was reached, ret means a
// return verdict; neither means go on with the next rule.
func (tr tracer) rule(r *nftables.Rule, p packet, rnd uint32, depth int) (v verdict, final, ret bool) {
	tr.t.Helper()
	regs := map[uint32][]byte{}
	for _, e := range r.Exprs {
		switch e := e.(type) {
		case *expr.Counter:
		case *expr.Payload:
			switch {
			case e.Base == expr.PayloadBaseNetworkHeader && e.Offset == 12 && e.Len == 4:
				regs[e.DestRegister] = net.ParseIP(p.saddr).To4()
			case e.Base == expr.PayloadBaseNetworkHeader && e.Offset == 16 && e.Len == 4:
				regs[e.DestRegister] = net.ParseIP(p.daddr).To4()
			case e.Base == expr.PayloadBaseLLHeader && e.Offset >= 6 && e.Offset+e.Len <= 12:
				mac, err := net.ParseMAC(p.srcMAC)
				if err != nil {
					tr.t.Fatalf("rule reads the source MAC of a packet without one (%q)", p.srcMAC)
				}
				regs[e.DestRegister] = append([]byte(nil), mac[e.Offset-6:e.Offset-6+e.Len]...)
			case e.Base == expr.PayloadBaseTransportHeader && e.Offset == 2 && e.Len == 2:
				if p.proto != protoTCP && p.proto != protoUDP {
					tr.t.Fatalf("rule reads a port of protocol %d without an l4proto match", p.proto)
				}
				regs[e.DestRegister] = binaryutil.BigEndian.PutUint16(p.dport)
			default:
				tr.t.Fatalf("unsupported payload %+v", e)
			}
		case *expr.Meta:
			if e.SourceRegister {
				if e.Key != expr.MetaKeyMARK {
					tr.t.Fatalf("unsupported meta set %v", e.Key)
				}
				tr.fx.mark = binaryutil.NativeEndian.Uint32(regs[e.Register][:4])
				continue
			}
			switch e.Key {
			case expr.MetaKeyL4PROTO:
				regs[e.Register] = []byte{p.proto}
			case expr.MetaKeyIIFNAME, expr.MetaKeyOIFNAME:
				name := p.iif
				if e.Key == expr.MetaKeyOIFNAME {
					name = p.oif
				}
				b := make([]byte, unix.IFNAMSIZ)
				copy(b, name)
				regs[e.Register] = b
			default:
				tr.t.Fatalf("unsupported meta %v", e.Key)
			}
		case *expr.Fib:
			if !e.ResultADDRTYPE || !e.FlagDADDR {
				tr.t.Fatalf("unsupported fib %+v", e)
			}
			typ := uint32(1) // RTN_UNICAST
			if p.local {
				typ = rtnLocal
			}
			regs[e.Register] = binaryutil.NativeEndian.PutUint32(typ)
		case *expr.Ct:
			if e.SourceRegister {
				if e.Key != expr.CtKeyMARK {
					tr.t.Fatalf("unsupported ct set %v", e.Key)
				}
				tr.fx.ctmark, tr.fx.ctmarkSet = binaryutil.NativeEndian.Uint32(regs[e.Register][:4]), true
				continue
			}
			var st uint32
			switch e.Key {
			case expr.CtKeyMARK:
				st = p.ctmark
				if tr.fx.ctmarkSet {
					st = tr.fx.ctmark
				}
			case expr.CtKeySTATUS:
				if p.dnat {
					st = ipsDstNAT
				}
			case expr.CtKeySTATE:
				st = 0x8 // new
				if p.established {
					st = 0x2
				}
			default:
				tr.t.Fatalf("unsupported ct key %v", e.Key)
			}
			regs[e.Register] = binaryutil.NativeEndian.PutUint32(st)
		case *expr.Bitwise:
			in := regs[e.SourceRegister]
			out := make([]byte, e.Len)
			for i := range out {
				out[i] = in[i]&e.Mask[i] ^ e.Xor[i]
			}
			regs[e.DestRegister] = out
		case *expr.Cmp:
			got := regs[e.Register]
			if len(got) < len(e.Data) {
				tr.t.Fatalf("cmp on unset register %d", e.Register)
			}
			eq := bytes.Equal(got[:len(e.Data)], e.Data)
			if (e.Op == expr.CmpOpEq) != eq {
				return verdict{}, false, false
			}
		case *expr.Numgen:
			regs[e.Register] = binaryutil.NativeEndian.PutUint32(rnd % e.Modulus)
		case *expr.Lookup:
			s := tr.rs.set(e.SetName)
			if s == nil || s.set.ID != e.SetID {
				tr.t.Fatalf("lookup of set %q (id %d) that is not in the batch", e.SetName, e.SetID)
			}
			key := regs[e.SourceRegister]
			var hit *nftables.SetElement
			for i := range s.elems {
				if bytes.Equal(s.elems[i].Key, key[:len(s.elems[i].Key)]) {
					hit = &s.elems[i]
				}
			}
			if e.IsDestRegSet {
				if hit == nil {
					tr.t.Fatalf("map %s has no element for key %x: the packet would not be DNATed", e.SetName, key)
				}
				regs[e.DestRegister] = hit.Val
			} else if (hit != nil) == e.Invert {
				return verdict{}, false, false
			}
		case *expr.Immediate:
			regs[e.Register] = e.Data
		case *expr.NAT:
			if e.Type != expr.NATTypeDestNAT {
				tr.t.Fatalf("unexpected nat type %v", e.Type)
			}
			v := verdict{kind: "dnat", addr: net.IP(regs[e.RegAddrMin][:4]).String()}
			if e.RegProtoMin != 0 {
				v.port = uint16(regs[e.RegProtoMin][0])<<8 | uint16(regs[e.RegProtoMin][1])
			}
			return v, true, false
		case *expr.Masq:
			return verdict{kind: "masquerade"}, true, false
		case *expr.Reject:
			switch {
			case e.Type == unix.NFT_REJECT_TCP_RST:
				if p.proto != protoTCP {
					tr.t.Fatalf("tcp reset for protocol %d", p.proto)
				}
				return verdict{kind: "reset"}, true, false
			case e.Type == unix.NFT_REJECT_ICMP_UNREACH && e.Code == icmpPortUnreach:
				return verdict{kind: "unreachable"}, true, false
			}
			tr.t.Fatalf("unsupported reject %+v", e)
		case *expr.Verdict:
			switch e.Kind {
			case expr.VerdictJump:
				if v, final := tr.chain(e.Chain, p, rnd, depth+1); final {
					return v, true, false
				}
				return verdict{}, false, false
			case expr.VerdictGoto:
				v, final := tr.chain(e.Chain, p, rnd, depth+1)
				return v, final, !final
			case expr.VerdictAccept:
				return verdict{kind: "accept"}, true, false
			case expr.VerdictDrop:
				return verdict{kind: "drop"}, true, false
			case expr.VerdictReturn:
				return verdict{}, false, true
			}
			tr.t.Fatalf("unsupported verdict %v", e.Kind)
		default:
			tr.t.Fatalf("unsupported expression %T", e)
		}
	}
	return verdict{}, false, false
}

func ips(s ...string) []net.IP {
	out := make([]net.IP, len(s))
	for i, a := range s {
		out[i] = net.ParseIP(a)
	}
	return out
}

func backends(addrs ...string) []Backend {
	out := make([]Backend, len(addrs))
	for i, a := range addrs {
		out[i] = Backend{IP: net.ParseIP(a), Local: a[:8] == "10.42.1."}
	}
	return out
}

func dnats(port uint16, addrs ...string) []string {
	var out []string
	for _, a := range addrs {
		out = append(out, verdict{kind: "dnat", addr: a, port: port}.String())
	}
	sort.Strings(out)
	return out
}
