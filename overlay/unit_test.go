package overlay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/overlay/linkutil"
	"github.com/shoal-org/shoal/overlay/meshreturn"
)

func validConfig(t *testing.T) Config {
	t.Helper()
	c := DefaultConfig()
	c.NodeID = "node-a"
	c.UnderlayIP = netip.MustParseAddr("192.0.2.10")
	c.Subnet = netip.MustParsePrefix("10.42.3.0/24")
	c.StateDir = t.TempDir()
	return c
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string // "" = valid
	}{
		{"default plus required", func(*Config) {}, ""},
		{"explicit MTU", func(c *Config) { c.MTU = 1400 }, ""},
		{"small subnet", func(c *Config) { c.Subnet = netip.MustParsePrefix("10.42.3.4/30") }, ""},
		{"missing node ID", func(c *Config) { c.NodeID = "" }, "NodeID"},
		{"missing underlay", func(c *Config) { c.UnderlayIP = netip.Addr{} }, "UnderlayIP"},
		{"IPv6 underlay", func(c *Config) { c.UnderlayIP = netip.MustParseAddr("2001:db8::1") }, "UnderlayIP"},
		{"underlay inside cluster CIDR", func(c *Config) { c.UnderlayIP = netip.MustParseAddr("10.42.9.9") }, "inside ClusterCIDR"},
		{"missing subnet", func(c *Config) { c.Subnet = netip.Prefix{} }, "Subnet"},
		{"subnet host bits", func(c *Config) { c.Subnet = netip.MustParsePrefix("10.42.3.1/24") }, "host bits"},
		{"subnet outside cluster", func(c *Config) { c.Subnet = netip.MustParsePrefix("10.43.3.0/24") }, "not inside ClusterCIDR"},
		{"subnet larger than cluster", func(c *Config) { c.Subnet = netip.MustParsePrefix("10.0.0.0/8") }, "not inside ClusterCIDR"},
		{"subnet too small", func(c *Config) { c.Subnet = netip.MustParsePrefix("10.42.3.0/31") }, "too small"},
		{"cluster CIDR not masked", func(c *Config) { c.ClusterCIDR = netip.MustParsePrefix("10.42.0.1/16") }, "ClusterCIDR"},
		{"long bridge name", func(c *Config) { c.BridgeName = "abcdefghijklmnop" }, "BridgeName"},
		{"bridge name with slash", func(c *Config) { c.BridgeName = "a/b" }, "BridgeName"},
		{"empty VXLAN name", func(c *Config) { c.VXLANName = "" }, "VXLANName"},
		{"same names", func(c *Config) { c.VXLANName = c.BridgeName }, "must differ"},
		{"VNI zero", func(c *Config) { c.VNI = 0 }, "VNI"},
		{"VNI too big", func(c *Config) { c.VNI = 1 << 24 }, "VNI"},
		{"port zero", func(c *Config) { c.Port = 0 }, "Port"},
		{"MTU too small", func(c *Config) { c.MTU = 100 }, "MTU"},
		{"relative state dir", func(c *Config) { c.StateDir = "state" }, "StateDir"},
		{"relative netns", func(c *Config) { c.NetNS = "netns/x" }, "NetNS"},
		{"negative resync", func(c *Config) { c.ResyncInterval = -1 }, "ResyncInterval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig(t)
			tt.mutate(&c)
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate = %v, want ErrInvalidConfig mentioning %q", err, tt.wantErr)
			}
		})
	}
}

func TestDefaultNamesFit(t *testing.T) {
	c := DefaultConfig()
	for _, n := range []string{c.BridgeName, c.VXLANName} {
		if err := linkutil.CheckIfName(n); err != nil {
			t.Error(err)
		}
	}
}

func TestVTEPMAC(t *testing.T) {
	seen := map[string]string{}
	for i := range 1000 {
		id := fmt.Sprintf("node-%d", i)
		mac := VTEPMAC(id)
		if len(mac) != 6 {
			t.Fatalf("VTEPMAC(%q) = %v: want 6 bytes", id, mac)
		}
		if mac[0]&0x01 != 0 || mac[0]&0x02 == 0 {
			t.Fatalf("VTEPMAC(%q) = %v: want locally administered unicast", id, mac)
		}
		if again := VTEPMAC(id); again.String() != mac.String() {
			t.Fatalf("VTEPMAC(%q) not deterministic: %v then %v", id, mac, again)
		}
		if other, dup := seen[mac.String()]; dup {
			t.Fatalf("VTEPMAC collision between %q and %q", id, other)
		}
		seen[mac.String()] = id
	}
	// A known value pins the derivation: changing it would break every
	// cluster during a rolling upgrade (peers derive each other's MACs).
	if got, want := VTEPMAC("node-a").String(), "ca:9b:7a:e4:44:56"; got != want {
		t.Fatalf("VTEPMAC(node-a) = %s, want %s", got, want)
	}
}

func TestVethName(t *testing.T) {
	tests := []struct{ id, want string }{
		{"0123456789abcdef0123", "sh0123456789"},
		{"abc", "shabc"},
		{"web.1.xyz", ""}, // hashed
		{"", ""},          // hashed
	}
	for _, tt := range tests {
		got := VethName(tt.id)
		if err := linkutil.CheckIfName(got); err != nil {
			t.Errorf("VethName(%q) = %q: %v", tt.id, got, err)
		}
		if tt.want != "" && got != tt.want {
			t.Errorf("VethName(%q) = %q, want %q", tt.id, got, tt.want)
		}
		if got != VethName(tt.id) {
			t.Errorf("VethName(%q) not deterministic", tt.id)
		}
	}
	if VethName("web.1.xyz") == VethName("web.1.xyw") {
		t.Error("hashed names collide")
	}
}

func TestContainerMAC(t *testing.T) {
	got := containerMAC(netip.MustParseAddr("10.42.3.7"))
	if want := (net.HardwareAddr{0x0a, 0x58, 10, 42, 3, 7}); got.String() != want.String() {
		t.Fatalf("containerMAC = %v, want %v", got, want)
	}
}

func TestValidatePeers(t *testing.T) {
	c := validConfig(t) // node-a, 10.42.3.0/24
	o := &Overlay{cfg: c}
	ul := netip.MustParseAddr("192.0.2.20")
	tests := []struct {
		name    string
		peers   []Peer
		want    int // accepted
		wantErr string
	}{
		{"self ignored", []Peer{{NodeID: "node-a", Subnet: c.Subnet, UnderlayIP: c.UnderlayIP}}, 0, ""},
		{"good", []Peer{{NodeID: "b", Subnet: netip.MustParsePrefix("10.42.4.0/24"), UnderlayIP: ul}}, 1, ""},
		{"outside cluster", []Peer{{NodeID: "b", Subnet: netip.MustParsePrefix("10.9.4.0/24"), UnderlayIP: ul}}, 0, "outside"},
		{"overlaps ours", []Peer{{NodeID: "b", Subnet: netip.MustParsePrefix("10.42.0.0/22"), UnderlayIP: ul}}, 0, "overlaps this node"},
		{"overlap between peers", []Peer{
			{NodeID: "b", Subnet: netip.MustParsePrefix("10.42.4.0/24"), UnderlayIP: ul},
			{NodeID: "c", Subnet: netip.MustParsePrefix("10.42.4.0/24"), UnderlayIP: ul},
		}, 1, "overlaps the one of peer b"},
		{"bad underlay", []Peer{{NodeID: "b", Subnet: netip.MustParsePrefix("10.42.4.0/24")}}, 0, "underlay"},
		{"multicast MAC", []Peer{{NodeID: "b", Subnet: netip.MustParsePrefix("10.42.4.0/24"), UnderlayIP: ul,
			VTEPMAC: net.HardwareAddr{1, 0, 0, 0, 0, 1}}}, 0, "unicast"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, errs := o.validatePeers(tt.peers)
			if len(got) != tt.want {
				t.Errorf("accepted %d peers, want %d", len(got), tt.want)
			}
			err := errors.Join(errs...)
			if tt.wantErr == "" && err != nil {
				t.Errorf("unexpected error: %v", err)
			}
			if tt.wantErr != "" && (!errors.Is(err, ErrInvalidPeer) || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("error = %v, want ErrInvalidPeer mentioning %q", err, tt.wantErr)
			}
			for _, p := range got {
				if p.mac.String() != VTEPMAC(p.NodeID).String() || p.gw != p.Subnet.Addr() {
					t.Errorf("peer %s: derived mac %v gw %v", p.NodeID, p.mac, p.gw)
				}
			}
		})
	}
}

// TestDiffPeers: the pure half of SetPeers. What it must get right is
// which kernel entries go: only those no desired peer uses any more, so a
// subnet or gateway handed from one peer to another is replaced in place
// and never deleted after the add.
func TestDiffPeers(t *testing.T) {
	o := &Overlay{cfg: validConfig(t)} // node-a, 10.42.3.0/24
	entries := func(peers ...Peer) []peerEntry {
		t.Helper()
		out, errs := o.validatePeers(peers)
		if len(errs) > 0 {
			t.Fatalf("test peers: %v", errors.Join(errs...))
		}
		return out
	}
	peer := func(id, subnet, underlay string) Peer {
		return Peer{NodeID: id, Subnet: netip.MustParsePrefix(subnet), UnderlayIP: netip.MustParseAddr(underlay)}
	}
	b := peer("b", "10.42.4.0/24", "192.0.2.20")
	c := peer("c", "10.42.5.0/24", "192.0.2.30")
	bMoved := peer("b", "10.42.4.0/24", "192.0.2.21")
	bResubnet := peer("b", "10.42.6.0/24", "192.0.2.20")
	dTakesB := peer("d", "10.42.4.0/24", "192.0.2.40")
	bOtherMAC := b
	bOtherMAC.VTEPMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0b}

	type want struct {
		add, update, remove          []string // node IDs
		routes, neighs, fdb, fdbDsts []string
	}
	summary := func(d peerDiff) want {
		var w want
		for _, p := range d.add {
			w.add = append(w.add, p.NodeID)
		}
		for _, p := range d.update {
			w.update = append(w.update, p.NodeID)
		}
		w.remove = d.remove
		for _, r := range d.staleRoutes {
			w.routes = append(w.routes, r.String())
		}
		for _, n := range d.staleNeighs {
			w.neighs = append(w.neighs, n.String())
		}
		for _, p := range d.staleFDB {
			w.fdb = append(w.fdb, p.NodeID)
			w.fdbDsts = append(w.fdbDsts, p.UnderlayIP.String())
		}
		return w
	}
	for _, tt := range []struct {
		name      string
		cur, want []Peer
		diff      want
	}{
		{"nothing to nothing", nil, nil, want{}},
		{"same set", []Peer{b, c}, []Peer{c, b}, want{}},
		{"first peers", nil, []Peer{b, c}, want{add: []string{"b", "c"}}},
		{"a peer added", []Peer{b}, []Peer{b, c}, want{add: []string{"c"}}},
		{"a peer gone: its route, neighbour and FDB entry go", []Peer{b, c}, []Peer{c},
			want{remove: []string{"b"}, routes: []string{"10.42.4.0/24"}, neighs: []string{"10.42.4.0"},
				fdb: []string{"b"}, fdbDsts: []string{"192.0.2.20"}}},
		{"all gone", []Peer{b, c}, nil,
			want{remove: []string{"b", "c"}, routes: []string{"10.42.4.0/24", "10.42.5.0/24"},
				neighs: []string{"10.42.4.0", "10.42.5.0"}, fdb: []string{"b", "c"}, fdbDsts: []string{"192.0.2.20", "192.0.2.30"}}},
		{"new underlay address: FDB entry replaced, nothing deleted", []Peer{b}, []Peer{bMoved},
			want{update: []string{"b"}}},
		{"new subnet: the old route and gateway go, the MAC stays", []Peer{b}, []Peer{bResubnet},
			want{update: []string{"b"}, routes: []string{"10.42.4.0/24"}, neighs: []string{"10.42.4.0"}}},
		{"new MAC: the old FDB entry goes", []Peer{b}, []Peer{bOtherMAC},
			want{update: []string{"b"}, fdb: []string{"b"}, fdbDsts: []string{"192.0.2.20"}}},
		{"a subnet handed to another node: route and gateway replaced, never deleted", []Peer{b, c}, []Peer{c, dTakesB},
			want{add: []string{"d"}, remove: []string{"b"}, fdb: []string{"b"}, fdbDsts: []string{"192.0.2.20"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := diffPeers(entries(tt.cur...), entries(tt.want...))
			if got := summary(d); fmt.Sprint(got) != fmt.Sprint(tt.diff) {
				t.Errorf("diff:\n got %+v\nwant %+v", got, tt.diff)
			}
			if d.empty() != (fmt.Sprint(tt.diff) == fmt.Sprint(want{})) {
				t.Errorf("empty() = %v", d.empty())
			}
			// Applying the diff to cur yields want: the peers kept, updated
			// and added are exactly the desired ones.
			ids := map[string]bool{}
			for _, p := range entries(tt.cur...) {
				ids[p.NodeID] = true
			}
			for _, id := range d.remove {
				delete(ids, id)
			}
			for _, p := range d.add {
				if ids[p.NodeID] {
					t.Errorf("peer %s added twice", p.NodeID)
				}
				ids[p.NodeID] = true
			}
			for _, p := range entries(tt.want...) {
				if !ids[p.NodeID] {
					t.Errorf("desired peer %s missing after the diff", p.NodeID)
				}
				delete(ids, p.NodeID)
			}
			if len(ids) > 0 {
				t.Errorf("peers left that are not desired: %v", ids)
			}
		})
	}
}

// TestVTEPMACGivesReturnMark: a derived VTEP MAC names its node's mesh
// connections (overlay/meshreturn) with a usable, non-zero mark.
func TestVTEPMACGivesReturnMark(t *testing.T) {
	if got := meshreturn.Mark(VTEPMAC("n2")); got != binary.NativeEndian.Uint32(VTEPMAC("n2")[2:]) || got == 0 {
		t.Fatalf("meshreturn.Mark(VTEPMAC) = %#x", got)
	}
}

// TestPeerWork: a full pass writes only what the kernel lacks or holds
// differently, and deletes only our leftovers.
func TestPeerWork(t *testing.T) {
	o := &Overlay{cfg: validConfig(t)} // node-a, 10.42.3.0/24
	cluster := o.cfg.ClusterCIDR
	peers, errs := o.validatePeers([]Peer{
		{NodeID: "b", Subnet: netip.MustParsePrefix("10.42.4.0/24"), UnderlayIP: netip.MustParseAddr("192.0.2.20")},
		{NodeID: "c", Subnet: netip.MustParsePrefix("10.42.5.0/24"), UnderlayIP: netip.MustParseAddr("192.0.2.30")},
	})
	if len(errs) > 0 {
		t.Fatal(errors.Join(errs...))
	}
	b, c := peers[0], peers[1]
	route := func(p peerEntry) kernelRoute { return kernelRoute{Dst: p.Subnet, Gw: p.gw, Onlink: true} }
	neigh := func(p peerEntry) kernelNeigh { return kernelNeigh{IP: p.gw, MAC: p.mac.String(), Permanent: true} }
	fdb := func(p peerEntry) kernelNeigh {
		return kernelNeigh{IP: p.UnderlayIP, MAC: p.mac.String(), Permanent: true}
	}
	inPlace := func() kernelPeers {
		return kernelPeers{
			Routes: []kernelRoute{route(b), route(c)},
			Neighs: []kernelNeigh{neigh(b), neigh(c)},
			FDB:    []kernelNeigh{fdb(b), fdb(c)},
		}
	}
	type want struct {
		set                  []string
		routes, neighs, fdbs []int
	}
	for _, tc := range []struct {
		name string
		k    func() kernelPeers
		want want
	}{
		{"all in place: nothing to write", inPlace, want{}},
		{"an empty kernel (a new device): every peer", func() kernelPeers { return kernelPeers{} }, want{set: []string{"b", "c"}}},
		{"a route gone", func() kernelPeers { k := inPlace(); k.Routes = k.Routes[1:]; return k }, want{set: []string{"b"}}},
		{"a route via another gateway", func() kernelPeers {
			k := inPlace()
			k.Routes[1].Gw = netip.MustParseAddr("10.42.9.0")
			return k
		}, want{set: []string{"c"}}},
		{"a route not onlink", func() kernelPeers { k := inPlace(); k.Routes[0].Onlink = false; return k }, want{set: []string{"b"}}},
		{"a neighbour learned, not permanent", func() kernelPeers { k := inPlace(); k.Neighs[0].Permanent = false; return k }, want{set: []string{"b"}}},
		{"a neighbour with another MAC", func() kernelPeers { k := inPlace(); k.Neighs[1].MAC = "02:00:00:00:00:99"; return k }, want{set: []string{"c"}}},
		{"an FDB entry to an old underlay address: set, and the old one deleted", func() kernelPeers {
			k := inPlace()
			k.FDB[0].IP = netip.MustParseAddr("192.0.2.21")
			return k
		}, want{set: []string{"b"}, fdbs: []int{0}}},
		{"a second destination for a peer's MAC: deleted", func() kernelPeers {
			k := inPlace()
			k.FDB = append(k.FDB, kernelNeigh{IP: netip.MustParseAddr("192.0.2.99"), MAC: c.mac.String(), Permanent: true})
			return k
		}, want{set: []string{"c"}, fdbs: []int{2}}},
		{"a gone peer's entries deleted; the kernel's own kept", func() kernelPeers {
			k := inPlace()
			k.Routes = append(k.Routes,
				kernelRoute{Dst: netip.MustParsePrefix("10.42.7.0/24"), Gw: netip.MustParseAddr("10.42.7.0"), Onlink: true}, // gone peer: 2
				kernelRoute{Dst: netip.MustParsePrefix("10.0.0.0/8")},                                                       // outside the cluster range
				kernelRoute{Dst: netip.MustParsePrefix("10.42.0.0/15")},                                                     // wider than the cluster range
				kernelRoute{}) // no destination
			k.Neighs = append(k.Neighs,
				kernelNeigh{IP: netip.MustParseAddr("10.42.7.0"), MAC: "02:00:00:00:00:07", Permanent: true}, // gone peer: 2
				kernelNeigh{IP: netip.MustParseAddr("10.42.8.0"), MAC: "02:00:00:00:00:08"})                  // learned
			k.FDB = append(k.FDB,
				kernelNeigh{IP: netip.MustParseAddr("192.0.2.70"), MAC: "02:00:00:00:00:07", Permanent: true}, // gone peer: 2
				kernelNeigh{IP: netip.MustParseAddr("192.0.2.80")})                                            // not the device's
			return k
		}, want{routes: []int{2}, neighs: []int{2}, fdbs: []int{2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := peerWork(peers, tc.k(), cluster)
			var set []string
			for _, p := range w.set {
				set = append(set, p.NodeID)
			}
			got := want{set: set, routes: w.staleRoutes, neighs: w.staleNeighs, fdbs: w.staleFDB}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
