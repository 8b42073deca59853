package consensus

// Networks. A network is a name, a subnet and a VXLAN VNI; every node
// derives its share of the subnet (api.NetworkShare) and services get one VIP
// per network from the subnet's upper half (api.NetworkVIPRange). The
// default network (api.DefaultNetwork) is not in the table: it is the
// cluster CIDR with VNI api.DefaultVNI, exists in every cluster (also in
// logs written before networks were objects) and its VIPs come from the
// cluster's VIP range, as they always did. This file is the store's side:
// the default network and the reads. What the state machine guarantees of
// networks is in consensus/fsm (networks.go).

import (
	"fmt"
	"strings"

	"github.com/hashicorp/go-memdb"
	"github.com/shoal-org/shoal/api"
)

// defaultNetwork returns the default network of cluster c (nil before
// bootstrap).
func defaultNetwork(c *ClusterState) *api.Network {
	if c == nil {
		return nil
	}
	subnet := c.ClusterCIDR
	if subnet == "" {
		subnet = "10.42.0.0/16"
	}
	return &api.Network{ID: api.DefaultNetwork, Name: api.DefaultNetwork, Subnet: subnet, VNI: api.DefaultVNI, CreatedAt: c.CreatedAt}
}

// Networks returns the default network first, then every network by name.
// It is empty before bootstrap.
func (s *Store) Networks() []*api.Network {
	tx := s.txn()
	var out []*api.Network
	if d := defaultNetwork(getCluster(tx)); d != nil {
		out = append(out, d)
	}
	return append(out, collect(tx, TableNetworks, IndexName, CloneNetwork)...)
}

// ResolveNetwork finds a network by exact name, exact ID or unique ID
// prefix, in that order.
func (s *Store) ResolveNetwork(ref string) (*api.Network, error) {
	tx := s.txn()
	if ref == api.DefaultNetwork {
		if d := defaultNetwork(getCluster(tx)); d != nil {
			return d, nil
		}
		return nil, fmt.Errorf("network %s: %w", ref, ErrNotFound)
	}
	if ref == "" {
		return nil, fmt.Errorf("network %q: %w", ref, ErrNotFound)
	}
	if raw, _ := tx.First(TableNetworks, IndexName, ref); raw != nil {
		return CloneNetwork(raw.(*api.Network)), nil
	}
	if raw, _ := tx.First(TableNetworks, IndexID, ref); raw != nil {
		return CloneNetwork(raw.(*api.Network)), nil
	}
	if n := networkByFoldedName(tx, ref); n != nil {
		return n, nil
	}
	return uniquePrefix(tx, TableNetworks, "network", ref, CloneNetwork)
}

// networkByFoldedName returns the network whose name equals ref but for
// case (the default network included), or nil. The state machine refuses
// a name that differs from another one only in case ("Back" beside
// "back"), so at most one matches: `--network FRONT` means front, and
// answered "not found". It comes after the exact name and ID, before the
// ID prefix: a name, once unique, is the more specific reference.
func networkByFoldedName(tx *memdb.Txn, ref string) *api.Network {
	if strings.EqualFold(ref, api.DefaultNetwork) {
		return defaultNetwork(getCluster(tx))
	}
	it, err := tx.Get(TableNetworks, IndexID)
	if err != nil {
		return nil
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if n := raw.(*api.Network); strings.EqualFold(n.Name, ref) {
			return CloneNetwork(n)
		}
	}
	return nil
}

// networkByName returns a network (default included) inside a transaction.
func networkByName(tx *memdb.Txn, name string) *api.Network {
	if name == api.DefaultNetwork {
		return defaultNetwork(getCluster(tx))
	}
	raw, err := tx.First(TableNetworks, IndexName, name)
	if err != nil || raw == nil {
		return nil
	}
	return raw.(*api.Network)
}
