package alloc

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
)

func write(t *testing.T) *consensus.WriteTxn {
	t.Helper()
	w := consensus.NewStore().BeginWrite(1)
	t.Cleanup(w.Abort)
	return w
}

// A VIP range skips its first two addresses and its last, hands out the
// rest from the cursor on, wraps, and is exhausted when all are held.
func TestVIP(t *testing.T) {
	w := write(t)
	cl := &consensus.ClusterState{VIPCIDR: "10.43.0.0/29"}
	var got []string
	for i := range 5 {
		v, err := VIP(w, cl)
		if err != nil {
			t.Fatalf("VIP %d: %v", i, err)
		}
		got = append(got, v)
		if err := w.Insert(consensus.TableServices, &api.Service{ID: fmt.Sprint("s", i), Name: fmt.Sprint("s", i), VIP: v}); err != nil {
			t.Fatal(err)
		}
	}
	if want := []string{"10.43.0.2", "10.43.0.3", "10.43.0.4", "10.43.0.5", "10.43.0.6"}; !slices.Equal(got, want) {
		t.Fatalf("VIPs %v, want %v", got, want)
	}
	if _, err := VIP(w, cl); !errors.Is(err, consensus.ErrExhausted) {
		t.Fatalf("full range: %v", err)
	}
	if err := w.Delete(consensus.TableServices, &api.Service{ID: "s1"}); err != nil {
		t.Fatal(err)
	}
	if v, err := VIP(w, cl); err != nil || v != "10.43.0.3" {
		t.Fatalf("after a release: %q %v", v, err)
	}
	if _, err := VIP(w, &consensus.ClusterState{VIPCIDR: "10.43.0.0/30"}); !errors.Is(err, consensus.ErrInvalid) {
		t.Fatalf("a /30: %v", err)
	}
}

// Node subnets are /24s of the cluster CIDR from the cursor on; a node
// keeps none of its own out of the choice, and no CIDR means no subnet.
func TestNodeSubnet(t *testing.T) {
	w := write(t)
	cl := &consensus.ClusterState{ClusterCIDR: "10.42.0.0/23", NextSubnet: 1}
	if err := w.Insert(consensus.TableNodes, &api.Node{ID: "n1", Subnet: "10.42.1.0/24"}); err != nil {
		t.Fatal(err)
	}
	if s, err := NodeSubnet(w, cl, "n2"); err != nil || s != "10.42.0.0/24" || cl.NextSubnet != 1 {
		t.Fatalf("got %q %v, cursor %d", s, err, cl.NextSubnet)
	}
	if s, err := NodeSubnet(w, cl, "n1"); err != nil || s != "10.42.1.0/24" {
		t.Fatalf("n1's own subnet: %q %v", s, err)
	}
	if err := w.Insert(consensus.TableNodes, &api.Node{ID: "n2", Subnet: "10.42.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	if _, err := NodeSubnet(w, cl, "n3"); !errors.Is(err, consensus.ErrExhausted) {
		t.Fatalf("full CIDR: %v", err)
	}
	if s, err := NodeSubnet(w, &consensus.ClusterState{}, "n3"); err != nil || s != "" {
		t.Fatalf("no CIDR: %q %v", s, err)
	}
}

func TestNetworkSubnetAndVNI(t *testing.T) {
	taken := []netip.Prefix{netip.MustParsePrefix("10.44.0.0/16"), netip.MustParsePrefix("10.45.128.0/17")}
	if p, err := NetworkSubnet(taken); err != nil || p.String() != "10.46.0.0/16" {
		t.Fatalf("got %v %v", p, err)
	}
	if _, err := NetworkSubnet([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}); !errors.Is(err, consensus.ErrExhausted) {
		t.Fatalf("pool taken: %v", err)
	}
	nets := []*api.Network{{VNI: api.DefaultVNI + 1}, {VNI: api.DefaultVNI + 3}}
	if v := VNI(nets); v != api.DefaultVNI+2 {
		t.Fatalf("VNI %d", v)
	}
}
