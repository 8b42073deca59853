package lb

import (
	"errors"
	"net"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/shoal-org/shoal/api"
)

var (
	pre  = nftables.ChainHookPrerouting
	out  = nftables.ChainHookOutput
	post = nftables.ChainHookPostrouting
)

func testState() State {
	return State{Services: []Service{
		{
			Name:     "web",
			VIP:      net.ParseIP("10.43.0.10"),
			Ports:    []api.PortConfig{{Published: 8080, Target: 80, Protocol: "tcp"}},
			Backends: backends("10.42.1.2", "10.42.1.3", "10.42.2.2"),
		},
		{
			Name:     "dns",
			VIP:      net.ParseIP("10.43.0.11"),
			Ports:    []api.PortConfig{{Published: 5353, Target: 53, Protocol: "udp"}},
			Backends: backends("10.42.3.7"),
		},
		{
			Name:  "down",
			VIP:   net.ParseIP("10.43.0.12"),
			Ports: []api.PortConfig{{Published: 9090, Target: 90}, {Published: 9091, Target: 91, Protocol: "udp"}},
		},
		{
			Name:     "novip",
			Ports:    []api.PortConfig{{Published: 7070, Target: 70}},
			Backends: backends("10.42.2.9"),
		},
	}}
}

func TestRulesetTrace(t *testing.T) {
	webAll := []string{"10.42.1.2", "10.42.1.3", "10.42.2.2"}
	accept := []string{"accept"}
	cases := []struct {
		name    string
		nodeIPs []net.IP
		p       packet
		want    []string
	}{
		// Service VIPs, every port, port kept.
		{"container to VIP:80", nil, packet{hook: pre, iif: "shoal0", saddr: "10.42.1.2", daddr: "10.43.0.10", proto: protoTCP, dport: 80}, dnats(0, webAll...)},
		{"container to VIP:5432", nil, packet{hook: pre, iif: "shoal0", saddr: "10.42.1.5", daddr: "10.43.0.10", proto: protoTCP, dport: 5432}, dnats(0, webAll...)},
		{"VIP udp", nil, packet{hook: pre, iif: "shoal0", saddr: "10.42.1.5", daddr: "10.43.0.11", proto: protoUDP, dport: 53}, dnats(0, "10.42.3.7")},
		{"host to VIP", nil, packet{hook: out, saddr: "10.42.1.1", daddr: "10.43.0.10", proto: protoTCP, dport: 80}, dnats(0, webAll...)},
		{"other VIP untouched", nil, packet{hook: pre, iif: "shoal0", saddr: "10.42.1.5", daddr: "10.43.0.99", proto: protoTCP, dport: 80}, accept},

		// Published ports: every local address, target port.
		{"external to published", nil, packet{hook: pre, iif: "eth0", saddr: "10.232.1.2", daddr: "10.232.1.1", local: true, proto: protoTCP, dport: 8080}, dnats(80, webAll...)},
		{"published udp", nil, packet{hook: pre, iif: "eth0", saddr: "10.232.1.2", daddr: "10.232.1.1", local: true, proto: protoUDP, dport: 5353}, dnats(53, "10.42.3.7")},
		{"published tcp port with udp proto", nil, packet{hook: pre, iif: "eth0", saddr: "10.232.1.2", daddr: "10.232.1.1", local: true, proto: protoUDP, dport: 8080}, accept},
		{"published port, not a local address", nil, packet{hook: pre, iif: "eth0", saddr: "10.232.1.2", daddr: "10.232.9.9", proto: protoTCP, dport: 8080}, accept},
		{"unpublished port", nil, packet{hook: pre, iif: "eth0", saddr: "10.232.1.2", daddr: "10.232.1.1", local: true, proto: protoTCP, dport: 8081}, accept},
		{"service without VIP", nil, packet{hook: pre, iif: "eth0", saddr: "10.232.1.2", daddr: "10.232.1.1", local: true, proto: protoTCP, dport: 7070}, dnats(70, "10.42.2.9")},
		{"host to own published port", nil, packet{hook: out, saddr: "10.232.1.1", daddr: "10.232.1.1", local: true, proto: protoTCP, dport: 8080}, dnats(80, webAll...)},
		{"host to loopback published port", nil, packet{hook: out, saddr: "127.0.0.1", daddr: "127.0.0.1", local: true, proto: protoTCP, dport: 8080}, accept},
		{"node IPs given: listed", ips("10.232.1.1"), packet{hook: pre, iif: "eth0", saddr: "10.232.1.2", daddr: "10.232.1.1", local: true, proto: protoTCP, dport: 8080}, dnats(80, webAll...)},
		{"node IPs given: other local", ips("10.232.1.1"), packet{hook: pre, iif: "shoal0", saddr: "10.42.1.3", daddr: "10.42.1.1", local: true, proto: protoTCP, dport: 8080}, accept},

		// No backends: refused, not blackholed.
		{"VIP without backends tcp", nil, packet{hook: pre, iif: "shoal0", saddr: "10.42.1.5", daddr: "10.43.0.12", proto: protoTCP, dport: 90}, []string{"reset"}},
		{"VIP without backends udp", nil, packet{hook: pre, iif: "shoal0", saddr: "10.42.1.5", daddr: "10.43.0.12", proto: protoUDP, dport: 90}, []string{"unreachable"}},
		{"host to VIP without backends", nil, packet{hook: out, saddr: "10.42.1.1", daddr: "10.43.0.12", proto: protoTCP, dport: 90}, []string{"reset"}},
		{"published without backends tcp", nil, packet{hook: pre, iif: "eth0", saddr: "10.232.1.2", daddr: "10.232.1.1", local: true, proto: protoTCP, dport: 9090}, []string{"reset"}},
		{"published without backends udp", nil, packet{hook: pre, iif: "eth0", saddr: "10.232.1.2", daddr: "10.232.1.1", local: true, proto: protoUDP, dport: 9091}, []string{"unreachable"}},
		{"published without backends, node IPs", ips("10.232.1.1"), packet{hook: pre, iif: "eth0", saddr: "10.232.1.2", daddr: "10.232.1.1", local: true, proto: protoTCP, dport: 9090}, []string{"reset"}},

		// Source NAT.
		{"same host pair", nil, packet{hook: post, iif: "shoal0", oif: "shoal0", saddr: "10.42.1.2", daddr: "10.42.1.3", dnat: true, proto: protoTCP, dport: 80}, []string{"masquerade"}},
		{"hairpin", nil, packet{hook: post, iif: "shoal0", oif: "shoal0", saddr: "10.42.1.2", daddr: "10.42.1.2", dnat: true, proto: protoTCP, dport: 80}, []string{"masquerade"}},
		{"plain bridge traffic", nil, packet{hook: post, iif: "shoal0", oif: "shoal0", saddr: "10.42.1.2", daddr: "10.42.1.3", proto: protoTCP, dport: 80}, accept},
		{"ingress to remote backend keeps client IP (the backend's node routes the reply back)", nil, packet{hook: post, iif: "eth0", oif: "shoal.vx", saddr: "10.232.1.2", daddr: "10.42.2.2", dnat: true, proto: protoTCP, dport: 80}, accept},
		{"ingress to local backend keeps client IP", nil, packet{hook: post, iif: "eth0", oif: "shoal0", saddr: "10.232.1.2", daddr: "10.42.1.2", dnat: true, proto: protoTCP, dport: 80}, accept},
		{"container to outside", nil, packet{hook: post, iif: "shoal0", oif: "eth0", saddr: "10.42.1.2", daddr: "192.0.2.7", proto: protoTCP, dport: 443}, []string{"masquerade"}},
		{"container to remote container", nil, packet{hook: post, iif: "shoal0", oif: "shoal.vx", saddr: "10.42.1.2", daddr: "10.42.2.2", proto: protoTCP, dport: 80}, accept},
		{"container VIP to remote backend keeps IP", nil, packet{hook: post, iif: "shoal0", oif: "shoal.vx", saddr: "10.42.1.2", daddr: "10.42.2.2", dnat: true, proto: protoTCP, dport: 80}, accept},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.NodeIPs = tc.nodeIPs
			tr := tracer{t: t, rs: compile(cfg, testState())}
			if got := tr.trace(tc.p); !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestRulesetMeshMasquerade: the old routing mesh (for clusters with
// agents that lack the return rules) masquerades remote backends again and
// marks nothing.
func TestRulesetMeshMasquerade(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MeshMasquerade = true
	tr := tracer{t: t, rs: compile(cfg, testState())}
	p := packet{hook: post, iif: "eth0", oif: "shoal.vx", saddr: "10.232.1.2", daddr: "10.42.2.2", dnat: true, proto: protoTCP, dport: 80}
	if got := tr.trace(p); !slices.Equal(got, []string{"masquerade"}) {
		t.Fatalf("ingress to a remote backend: got %v", got)
	}
	p = packet{hook: pre, iif: "shoal.vx", saddr: "10.232.1.2", daddr: "10.42.1.2", proto: protoTCP, dport: 80, srcMAC: "02:11:22:33:44:55"}
	if got := tr.trace(p); !slices.Equal(got, []string{"accept"}) {
		t.Fatalf("mesh connection from another node: got %v", got)
	}
	if rs := compile(cfg, testState()); rs.chain(chainMeshMark) != nil {
		t.Fatalf("chain %s compiled with MeshMasquerade", chainMeshMark)
	}
}

func TestRulesetEgressMasqueradeOff(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MasqueradeEgress = false
	tr := tracer{t: t, rs: compile(cfg, testState())}
	p := packet{hook: post, iif: "shoal0", oif: "eth0", saddr: "10.42.1.2", daddr: "192.0.2.7", proto: protoTCP, dport: 443}
	if got := tr.trace(p); !slices.Equal(got, []string{"accept"}) {
		t.Fatalf("got %v", got)
	}
}

// TestRulesetBackendChanges checks that a removed backend is no longer a
// destination and that modulus and map always agree (the tracer fails on
// a numgen value without a map element).
func TestRulesetBackendChanges(t *testing.T) {
	vip := packet{hook: pre, iif: "shoal0", saddr: "10.42.1.9", daddr: "10.43.0.10", proto: protoTCP, dport: 80}
	sets := [][]string{
		{"10.42.1.2", "10.42.1.3", "10.42.2.2"},
		{"10.42.1.2", "10.42.2.2"},
		{"10.42.2.2"},
		{"10.42.1.2", "10.42.1.3", "10.42.2.2", "10.42.3.2", "10.42.3.3"},
	}
	for _, addrs := range sets {
		st := State{Services: []Service{{Name: "web", VIP: net.ParseIP("10.43.0.10"), Backends: backends(addrs...)}}}
		tr := tracer{t: t, rs: compile(DefaultConfig(), st)}
		if got, want := tr.trace(vip), dnats(0, addrs...); !slices.Equal(got, want) {
			t.Fatalf("backends %v: got %v, want %v", addrs, got, want)
		}
	}
}

// TestRulesetObjects checks what the kernel needs from the batch: unique
// names, sets with batch IDs, every rule in a chain of the table.
func TestRulesetObjects(t *testing.T) {
	st := testState()
	st.Services = append(st.Services,
		Service{Name: "a b", VIP: net.ParseIP("10.43.1.1"), Backends: backends("10.42.1.20")},
		Service{Name: "a_b", VIP: net.ParseIP("10.43.1.2"), Backends: backends("10.42.1.21")},
	)
	cfg := DefaultConfig()
	cfg.NodeIPs = ips("10.232.1.1", "10.232.1.1")
	rs := compile(cfg, st)
	chains := map[string]bool{}
	for _, c := range rs.chains {
		if chains[c.Name] {
			t.Fatalf("chain %s twice", c.Name)
		}
		chains[c.Name] = true
	}
	ids := map[uint32]bool{}
	for _, s := range rs.sets {
		if s.set.ID == 0 || ids[s.set.ID] {
			t.Fatalf("set %s has id %d", s.set.Name, s.set.ID)
		}
		ids[s.set.ID] = true
		if s.set.IsMap && len(s.elems) == 0 {
			t.Fatalf("empty map %s", s.set.Name)
		}
	}
	if s := rs.set(setNodeIPs); s == nil || len(s.elems) != 1 {
		t.Fatalf("node IP set not deduplicated: %+v", s)
	}
	for _, r := range rs.rules {
		if !chains[r.Chain.Name] {
			t.Fatalf("rule in unknown chain %s", r.Chain.Name)
		}
	}
	if rs.chain("svc-a_b") == nil || rs.chain("svc-a_b~5") == nil {
		t.Fatalf("colliding service names not disambiguated: %v", chains)
	}
}

func TestStateResolve(t *testing.T) {
	ok := testState()
	if got, errs := ok.resolve(); len(errs) != 0 || !reflect.DeepEqual(got, ok) {
		t.Fatalf("valid state: %v\n got  %+v\n want %+v", errs, got, ok)
	}
	svc := func(mod func(*Service)) State {
		s := Service{Name: "x", VIP: net.ParseIP("10.43.0.1"), Ports: []api.PortConfig{{Published: 80, Target: 80}}, Backends: backends("10.42.1.2")}
		mod(&s)
		return State{Services: []Service{s}}
	}
	port80 := []api.PortConfig{{Published: 80, Target: 80}}
	cases := []struct {
		name string
		st   State
		want State // what gets programmed
		msg  string
	}{
		{"no name", svc(func(s *Service) { s.Name = "" }), State{Services: []Service{}}, "has no name"},
		{"v6 VIP", svc(func(s *Service) { s.VIP = net.ParseIP("fd00::1") }),
			State{Services: []Service{{Name: "x", Ports: port80, Backends: backends("10.42.1.2")}}}, "not IPv4: served without a VIP"},
		{"bad protocol", svc(func(s *Service) { s.Ports[0].Protocol = "sctp" }),
			State{Services: []Service{{Name: "x", VIP: net.ParseIP("10.43.0.1"), Backends: backends("10.42.1.2")}}}, `protocol "sctp"`},
		{"port 0", svc(func(s *Service) { s.Ports[0].Target = 0 }),
			State{Services: []Service{{Name: "x", VIP: net.ParseIP("10.43.0.1"), Backends: backends("10.42.1.2")}}}, "80:0 out of range"},
		{"v6 backend", svc(func(s *Service) { s.Backends = append(s.Backends, Backend{IP: net.ParseIP("fd00::2")}) }),
			State{Services: []Service{{Name: "x", VIP: net.ParseIP("10.43.0.1"), Ports: port80, Backends: backends("10.42.1.2")}}}, "backend fd00::2"},
		{"dup published in one service", svc(func(s *Service) {
			s.Ports = append(s.Ports, api.PortConfig{Published: 80, Target: 81, Protocol: "tcp"})
		}), State{Services: []Service{{Name: "x", VIP: net.ParseIP("10.43.0.1"), Ports: port80, Backends: backends("10.42.1.2")}}}, "publishes tcp/80 twice"},
		{"dup name", State{Services: []Service{{Name: "a", VIP: net.ParseIP("10.43.0.1")}, {Name: "a", VIP: net.ParseIP("10.43.0.2")}}},
			State{Services: []Service{{Name: "a", VIP: net.ParseIP("10.43.0.1")}}}, "appears twice"},
		{"dup VIP", State{Services: []Service{{Name: "a", VIP: net.ParseIP("10.43.0.1")}, {Name: "b", VIP: net.ParseIP("10.43.0.1"), Ports: port80}}},
			State{Services: []Service{{Name: "a", VIP: net.ParseIP("10.43.0.1")}, {Name: "b", Ports: port80}}}, "a keeps it, b is served without a VIP"},
		{"dup published port", State{Services: []Service{{Name: "b", Ports: port80}, {Name: "a", VIP: net.ParseIP("10.43.0.1"), Ports: port80}}},
			State{Services: []Service{{Name: "b", Ports: port80}, {Name: "a", VIP: net.ParseIP("10.43.0.1")}}}, "b and a both publish tcp/80: b keeps it"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, errs := tc.st.resolve()
			if len(errs) != 1 || !errors.Is(errs[0], ErrInvalidState) || !strings.Contains(errs[0].Error(), tc.msg) {
				t.Fatalf("errors %v, want one ErrInvalidState containing %q", errs, tc.msg)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("programmed\n %+v\nwant\n %+v", got, tc.want)
			}
			again, errs2 := tc.st.resolve()
			if !reflect.DeepEqual(again, got) || len(errs2) != 1 || errs2[0].Error() != errs[0].Error() {
				t.Fatal("resolve is not deterministic")
			}
		})
	}
	udpAndTCP := svc(func(s *Service) {
		s.Ports = append(s.Ports, api.PortConfig{Published: 80, Target: 80, Protocol: "udp"})
	})
	if _, errs := udpAndTCP.resolve(); len(errs) != 0 {
		t.Errorf("tcp and udp on one port: %v", errs)
	}
}

// TestConflictingStateStillCompiles is issue 14's wedge: two services
// publishing one port (an impossible state an older log may hold) used to
// make every Set fail, so nothing changed in nftables any more. Now the
// earlier service keeps the port, the later one keeps its VIP, and every
// other service — including one added after the conflict — is programmed.
func TestConflictingStateStillCompiles(t *testing.T) {
	st := State{Services: []Service{
		{Name: "web-a", VIP: net.ParseIP("10.43.0.2"), Ports: []api.PortConfig{{Published: 8080, Target: 80, Protocol: "tcp"}}, Backends: backends("10.42.1.2")},
		{Name: "web-b", VIP: net.ParseIP("10.43.0.3"), Ports: []api.PortConfig{{Published: 8080, Target: 80, Protocol: "tcp"}}, Backends: backends("10.42.2.2")},
		{Name: "later", VIP: net.ParseIP("10.43.0.4"), Ports: []api.PortConfig{{Published: 9090, Target: 90, Protocol: "tcp"}}, Backends: backends("10.42.3.2", "10.42.3.3")},
	}}
	resolved, errs := st.resolve()
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "web-a and web-b both publish tcp/8080: web-a keeps it") {
		t.Fatalf("conflict report = %v", errs)
	}
	tr := tracer{t: t, rs: compile(DefaultConfig(), resolved)}
	ext := func(port uint16) packet {
		return packet{hook: pre, iif: "eth0", saddr: "10.232.1.2", daddr: "10.232.1.1", local: true, proto: protoTCP, dport: port}
	}
	vip := func(addr string) packet {
		return packet{hook: pre, iif: "shoal0", saddr: "10.42.1.9", daddr: addr, proto: protoTCP, dport: 80}
	}
	for _, tc := range []struct {
		name string
		p    packet
		want []string
	}{
		{"the new service's published port", ext(9090), dnats(90, "10.42.3.2", "10.42.3.3")},
		{"the new service's VIP", vip("10.43.0.4"), dnats(0, "10.42.3.2", "10.42.3.3")},
		{"the contested port goes to the earlier service only", ext(8080), dnats(80, "10.42.1.2")},
		{"the later service keeps its VIP", vip("10.43.0.3"), dnats(0, "10.42.2.2")},
		{"the earlier service's VIP", vip("10.43.0.2"), dnats(0, "10.42.1.2")},
	} {
		if got := tr.trace(tc.p); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default: %v", err)
	}
	for name, mod := range map[string]func(*Config){
		"no table":     func(c *Config) { c.TableName = "" },
		"long bridge":  func(c *Config) { c.BridgeName = "a-very-long-bridge-name" },
		"no vxlan":     func(c *Config) { c.VXLANName = "" },
		"no cluster":   func(c *Config) { c.ClusterCIDR = nil },
		"v6 node addr": func(c *Config) { c.NodeIPs = ips("fd00::1") },
		"gossip port":  func(c *Config) { c.GossipPort = 70000 },
	} {
		c := DefaultConfig()
		mod(&c)
		if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: got %v", name, err)
		}
	}
}

// A node of the cluster calling another node's published port (a health
// check, a client on the node) is masqueraded towards a remote backend: if
// the backend runs on the caller's own node, its reply would otherwise go
// straight to the caller's local address, skipping this node's un-DNAT, and
// the caller would reset it (one connection in N failed). Outside clients
// keep their address; without State.Peers nothing changes.
func TestRulesetMeshFromPeerNode(t *testing.T) {
	accept := []string{"accept"}
	peer := "10.232.1.3"
	fromPeer := packet{hook: post, iif: "eth0", oif: "shoal.vx", saddr: peer, daddr: "10.42.2.2", dnat: true, proto: protoTCP, dport: 80}
	fromOutside := fromPeer
	fromOutside.saddr = "10.232.1.2"
	toLocal := fromPeer
	toLocal.oif, toLocal.daddr = "shoal0", "10.42.1.2"
	st := testState()
	st.Peers = ips(peer)
	for _, tc := range []struct {
		name string
		st   State
		p    packet
		want []string
	}{
		{"peer node to a remote backend: masqueraded", st, fromPeer, []string{"masquerade"}},
		{"outside client to a remote backend: kept", st, fromOutside, accept},
		{"peer node to a local backend: kept (the reply passes here)", st, toLocal, accept},
		{"peers unknown: kept", testState(), fromPeer, accept},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := tracer{t: t, rs: compile(DefaultConfig(), tc.st)}
			if got := tr.trace(tc.p); !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}
