package api

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
)

var cluster16 = netip.MustParsePrefix("10.42.0.0/16")

func TestNeedsAllocatedShares(t *testing.T) {
	for _, tc := range []struct {
		subnet, cluster string
		want            bool
	}{
		{"10.50.0.0/16", "10.42.0.0/16", false},
		{"10.50.0.0/19", "10.42.0.0/16", false}, // a /28 each of 256 nodes
		{"10.50.0.0/20", "10.42.0.0/16", true},
		{"172.28.0.0/24", "10.42.0.0/16", true},
		{"172.28.0.0/23", "10.42.0.0/20", false}, // 16 nodes: /23 is enough
		{"172.28.0.0/24", "10.42.0.0/20", true},
	} {
		got := NeedsAllocatedShares(netip.MustParsePrefix(tc.subnet), netip.MustParsePrefix(tc.cluster))
		if got != tc.want {
			t.Errorf("NeedsAllocatedShares(%s, %s) = %v, want %v", tc.subnet, tc.cluster, got, tc.want)
		}
	}
}

func TestShareSlots(t *testing.T) {
	for _, tc := range []struct {
		subnet      string
		bits        int
		n           int
		first, last string
	}{
		{"172.28.0.0/24", 28, 8, "172.28.0.0/28", "172.28.0.112/28"},
		{"172.28.0.0/22", 28, 32, "172.28.0.0/28", "172.28.1.240/28"},
		{"172.28.0.0/26", 28, 2, "172.28.0.0/28", "172.28.0.16/28"},
		{"172.28.0.0/27", 28, 1, "172.28.0.0/28", "172.28.0.0/28"},
		{"172.28.0.0/28", 28, 0, "", ""}, // lower half smaller than a share
		{"fd00::/64", 28, 0, "", ""},
	} {
		got := ShareSlots(netip.MustParsePrefix(tc.subnet), tc.bits)
		if len(got) != tc.n {
			t.Errorf("ShareSlots(%s, %d): %d shares, want %d", tc.subnet, tc.bits, len(got), tc.n)
			continue
		}
		if tc.n > 0 && (got[0].String() != tc.first || got[len(got)-1].String() != tc.last) {
			t.Errorf("ShareSlots(%s, %d) = %v…%v, want %s…%s", tc.subnet, tc.bits, got[0], got[len(got)-1], tc.first, tc.last)
		}
		if tc.n == 0 {
			continue
		}
		first, _ := NetworkVIPRange(netip.MustParsePrefix(tc.subnet))
		for _, s := range got {
			if s.Contains(first) {
				t.Errorf("share %s holds the first VIP %s", s, first)
			}
		}
	}
}

func TestFreeShare(t *testing.T) {
	sub := netip.MustParsePrefix("172.28.0.0/26")
	for _, tc := range []struct {
		name string
		held map[string]string
		want string // "" = none free
	}{
		{"none held", nil, "172.28.0.0/28"},
		{"first held", map[string]string{"a": "172.28.0.0/28"}, "172.28.0.16/28"},
		{"gap reused", map[string]string{"b": "172.28.0.16/28"}, "172.28.0.0/28"},
		{"full", map[string]string{"a": "172.28.0.0/28", "b": "172.28.0.16/28"}, ""},
	} {
		got, ok := FreeShare(sub, AllocatedShareBits, tc.held)
		if (tc.want == "") == ok || (ok && got.String() != tc.want) {
			t.Errorf("%s: FreeShare = %v, %v; want %q", tc.name, got, ok, tc.want)
		}
	}
}

func TestNetworkShare(t *testing.T) {
	node5 := netip.MustParsePrefix("10.42.5.0/24")
	big := &Network{Name: "big", Subnet: "10.50.0.0/16"}
	small := &Network{Name: "small", Subnet: "172.28.0.0/24", ShareBits: 28,
		Shares: map[string]string{"n5": "172.28.0.32/28", "bad": "172.29.0.0/28"}}
	for _, tc := range []struct {
		name string
		n    *Network
		node string
		want string
		err  error
	}{
		{"index-derived", big, "n5", "10.50.2.128/25", nil},
		{"allocated", small, "n5", "172.28.0.32/28", nil},
		{"allocated, none", small, "n6", "", ErrNoShare},
		{"allocated, outside", small, "bad", "", nil},
	} {
		got, err := NetworkShare(tc.n, cluster16, tc.node, node5)
		switch {
		case tc.want != "" && (err != nil || got.String() != tc.want):
			t.Errorf("%s: %v, %v; want %s", tc.name, got, err, tc.want)
		case tc.want == "" && err == nil:
			t.Errorf("%s: %v, want an error", tc.name, got)
		case tc.err != nil && !errors.Is(err, tc.err):
			t.Errorf("%s: %v, want %v", tc.name, err, tc.err)
		}
	}
	// The index-derived share is NodeShare's, as before.
	if want, _ := NodeShare(netip.MustParsePrefix(big.Subnet), cluster16, node5); fmt.Sprint(want) != "10.50.2.128/25" {
		t.Errorf("NodeShare = %v", want)
	}
}
