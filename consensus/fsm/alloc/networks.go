package alloc

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
)

// NetworkPool is where subnets of networks created without --subnet come
// from: the first free /16 of 10.44.0.0–10.99.255.255.
var NetworkPool = netip.MustParsePrefix("10.44.0.0/16")

// networkPoolSize is how many /16s the pool spans from NetworkPool.
const networkPoolSize = 56

// NetworkSubnet returns the first /16 of the pool that overlaps
// nothing taken.
func NetworkSubnet(taken []netip.Prefix) (netip.Prefix, error) {
	base := ip4ToUint(NetworkPool.Addr())
	for i := uint32(0); i < networkPoolSize; i++ {
		cand := netip.PrefixFrom(uintToIP4(base+i<<16), 16)
		if !slices.ContainsFunc(taken, cand.Overlaps) {
			return cand, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("network subnets of the pool %s/%d×%d: %w", NetworkPool.Addr(), 16, networkPoolSize, consensus.ErrExhausted)
}

// VNI returns the lowest VNI above api.DefaultVNI no network holds.
func VNI(nets []*api.Network) int {
	used := map[int]bool{}
	for _, o := range nets {
		used[o.VNI] = true
	}
	v := api.DefaultVNI + 1
	for used[v] {
		v++
	}
	return v
}

// NetworkVIP returns the lowest free VIP of a network (the upper half
// of its subnet) that no other service than self holds.
func NetworkVIP(w *consensus.WriteTxn, network string, subnet netip.Prefix, self string) (string, error) {
	used := map[string]bool{}
	for _, o := range consensus.All[api.Service](w, consensus.TableServices, consensus.IndexID) {
		if o.ID != self && o.VIPs[network] != "" {
			used[o.VIPs[network]] = true
		}
	}
	lo, hi := api.NetworkVIPRange(subnet)
	for a := lo; a.IsValid() && a.Compare(hi) <= 0; a = a.Next() {
		if !used[a.String()] {
			return a.String(), nil
		}
	}
	return "", fmt.Errorf("VIPs of network %s: %w", network, consensus.ErrExhausted)
}
