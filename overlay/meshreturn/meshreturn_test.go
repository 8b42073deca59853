package meshreturn

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"
)

// TestRoutes: one return path per peer, its mark (and table) the
// last four bytes of the peer's VTEP MAC as the lb's rule loads them;
// marks that are reserved tables or shared by two peers are left out and
// reported.
func TestRoutes(t *testing.T) {
	mac := func(s string) net.HardwareAddr {
		m, err := net.ParseMAC(s)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	peer := func(id, subnet, m string) Peer {
		return Peer{NodeID: id, MAC: mac(m), Gw: netip.MustParsePrefix(subnet).Addr()}
	}
	if got, want := Mark(mac("02:00:0a:0b:0c:0d")), binary.NativeEndian.Uint32([]byte{0x0a, 0x0b, 0x0c, 0x0d}); got != want {
		t.Fatalf("Mark = %#x, want %#x", got, want)
	}
	if got := Mark(net.HardwareAddr{2, 0, 0x0a, 0x0b, 0x0c}); got != 0 {
		t.Fatalf("Mark of a 5-byte address = %#x, want 0", got)
	}
	for _, tc := range []struct {
		name     string
		peers    []Peer
		want     []route
		wantErrs int
	}{
		{"none", nil, nil, 0},
		{"two peers, sorted by mark", []Peer{
			peer("b", "10.42.3.0/24", "02:00:00:00:00:09"), peer("a", "10.42.2.0/24", "02:00:00:00:00:08")},
			[]route{
				{Mark: Mark(mac("02:00:00:00:00:08")), Gw: netip.MustParseAddr("10.42.2.0"), NodeID: "a"},
				{Mark: Mark(mac("02:00:00:00:00:09")), Gw: netip.MustParseAddr("10.42.3.0"), NodeID: "b"},
			}, 0},
		{"a reserved table", []Peer{peer("a", "10.42.2.0/24", "02:00:00:00:00:00")}, nil, 1},
		{"two peers on one mark: the first keeps it", []Peer{
			peer("a", "10.42.2.0/24", "02:01:00:00:00:08"), peer("b", "10.42.3.0/24", "02:02:00:00:00:08")},
			[]route{{Mark: Mark(mac("02:01:00:00:00:08")), Gw: netip.MustParseAddr("10.42.2.0"), NodeID: "a"}}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, errs := routes(tc.peers)
			if !slices.Equal(got, tc.want) || len(errs) != tc.wantErrs {
				t.Fatalf("got %+v %v, want %+v and %d errors", got, errs, tc.want, tc.wantErrs)
			}
		})
	}
}

// TestDefaultGateways: only onlink default routes count as a return path
// in place, by table.
func TestDefaultGateways(t *testing.T) {
	gw := net.ParseIP("10.42.4.0")
	onlink := int(netlink.FLAG_ONLINK)
	got := defaultGateways([]netlink.Route{
		{Table: 300, Gw: gw, Flags: onlink},
		{Table: 301, Gw: gw, Flags: onlink, Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}},
		{Table: 302, Gw: gw}, // not onlink
		{Table: 303, Gw: gw, Flags: onlink, Dst: &net.IPNet{IP: net.ParseIP("10.42.4.0").To4(), Mask: net.CIDRMask(24, 32)}}, // not a default
		{Table: 304, Flags: onlink}, // no gateway
	})
	want := map[uint32]netip.Addr{300: netip.MustParseAddr("10.42.4.0"), 301: netip.MustParseAddr("10.42.4.0")}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}
