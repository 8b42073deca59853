package fsm

// Networks. A network is a name, a subnet and a VXLAN VNI; every node
// derives its share of the subnet (api.NodeShare), or, on a network too
// small for that, is given one (shares.go), and services get one VIP
// per network from the subnet's upper half (api.NetworkVIPRange). The
// default network (api.DefaultNetwork) is not in the table: it is the
// cluster CIDR with VNI api.DefaultVNI, exists in every cluster (also in
// logs written before networks were objects) and its VIPs come from the
// cluster's VIP range, as they always did (consensus/network.go).
//
// What the state machine guarantees, whatever the API checked against its
// replica: network names are unique (and never "default"), subnets overlap
// neither each other nor the cluster or VIP range, VNIs are unique, a
// network a service names exists, and a network stays while a service
// names it.

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/alloc"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

func applyCreateNetwork(w *consensus.WriteTxn, c command.CreateNetwork) (any, error) {
	n := consensus.CloneNetwork(&c.Network)
	if n.ID == "" || n.Name == "" {
		return nil, fmt.Errorf("create network: ID and name are required: %w", consensus.ErrInvalid)
	}
	if p := api.NetworkNameProblem(n.Name); p != "" {
		return nil, fmt.Errorf("create network: name %q: %s: %w", n.Name, p, consensus.ErrInvalid)
	}
	if strings.EqualFold(n.Name, api.DefaultNetwork) {
		return nil, fmt.Errorf("create network: the name %s is reserved for the cluster's default network: %w", n.Name, consensus.ErrNameTaken)
	}
	if consensus.First[api.Network](w, consensus.TableNetworks, consensus.IndexID, n.ID) != nil {
		return nil, fmt.Errorf("create network %s: ID %s: %w", n.Name, n.ID, consensus.ErrExists)
	}
	cl, err := w.Cluster()
	if err != nil {
		return nil, fmt.Errorf("create network %s: %w", n.Name, err)
	}
	nets := consensus.All[api.Network](w, consensus.TableNetworks, consensus.IndexID)
	for _, o := range nets {
		if strings.EqualFold(o.Name, n.Name) {
			return nil, fmt.Errorf("create network: a network named %s exists (%s): %w", o.Name, o.ID, consensus.ErrNameTaken)
		}
	}
	taken := []netip.Prefix{}
	for _, s := range []string{cl.ClusterCIDR, cl.VIPCIDR} {
		if p, err := netip.ParsePrefix(s); err == nil {
			taken = append(taken, p.Masked())
		}
	}
	for _, o := range nets {
		if p, err := netip.ParsePrefix(o.Subnet); err == nil {
			taken = append(taken, p.Masked())
		}
	}
	cluster := netip.MustParsePrefix("10.42.0.0/16")
	if p, err := netip.ParsePrefix(cl.ClusterCIDR); err == nil {
		cluster = p
	}
	if n.Subnet == "" {
		if n.ShareBits != 0 || len(n.Shares) > 0 {
			return nil, fmt.Errorf("create network %s: share_bits or shares without a subnet: %w", n.Name, consensus.ErrInvalid)
		}
		sub, err := alloc.NetworkSubnet(taken)
		if err != nil {
			return nil, fmt.Errorf("create network %s: %w", n.Name, err)
		}
		n.Subnet = sub.String()
	} else {
		p, err := netip.ParsePrefix(strings.TrimSpace(n.Subnet))
		switch {
		case err != nil || !p.Addr().Is4():
			return nil, fmt.Errorf("create network %s: subnet %q is not an IPv4 prefix: %w", n.Name, n.Subnet, consensus.ErrInvalid)
		case p != p.Masked():
			return nil, fmt.Errorf("create network %s: subnet %s has host bits set (did you mean %s?): %w", n.Name, p, p.Masked(), consensus.ErrInvalid)
		}
		if err := checkNetworkShares(n, p, cluster); err != nil {
			return nil, err
		}
		for _, t := range taken {
			if t.Overlaps(p) {
				return nil, fmt.Errorf("create network %s: subnet %s overlaps %s: %w", n.Name, p, describePrefix(cl, nets, t), consensus.ErrInUse)
			}
		}
		n.Subnet = p.String()
	}
	switch {
	case n.VNI == 0:
		n.VNI = alloc.VNI(nets)
	case n.VNI < 1 || n.VNI > 1<<24-1 || n.VNI == api.DefaultVNI:
		return nil, fmt.Errorf("create network %s: VNI %d (want 1-16777215, not %d): %w", n.Name, n.VNI, api.DefaultVNI, consensus.ErrInvalid)
	default:
		for _, o := range nets {
			if o.VNI == n.VNI {
				return nil, fmt.Errorf("create network %s: VNI %d is taken by network %s: %w", n.Name, n.VNI, o.Name, consensus.ErrInUse)
			}
		}
	}
	n.Version = w.Index()
	if err := w.Insert(consensus.TableNetworks, n); err != nil {
		return nil, err
	}
	return consensus.CloneNetwork(n), nil
}

// describePrefix names what holds prefix t, for a refusal.
func describePrefix(cl *consensus.ClusterState, nets []*api.Network, t netip.Prefix) string {
	switch t.String() {
	case cl.ClusterCIDR:
		return "the cluster CIDR " + t.String()
	case cl.VIPCIDR:
		return "the VIP range " + t.String()
	}
	for _, o := range nets {
		if o.Subnet == t.String() {
			return "network " + o.Name + " (" + t.String() + ")"
		}
	}
	return t.String()
}

func applyDeleteNetwork(w *consensus.WriteTxn, c command.DeleteNetwork) (any, error) {
	if c.ID == api.DefaultNetwork {
		return nil, fmt.Errorf("remove network %s: the default network cannot be removed: %w", c.ID, consensus.ErrInvalid)
	}
	n := consensus.First[api.Network](w, consensus.TableNetworks, consensus.IndexID, c.ID)
	if n == nil {
		return nil, fmt.Errorf("remove network %s: %w", c.ID, consensus.ErrNotFound)
	}
	var users []string
	for _, s := range consensus.All[api.Service](w, consensus.TableServices, consensus.IndexID) {
		if slices.Contains(s.Spec.Networks, n.Name) {
			users = append(users, s.Name)
		}
	}
	if len(users) > 0 {
		sort.Strings(users)
		return nil, fmt.Errorf("remove network %s: used by service %s: %w", n.Name, strings.Join(users, ", "), consensus.ErrInUse)
	}
	if len(n.RunContainers) > 0 {
		var held []string
		for _, node := range slices.Sorted(maps.Keys(n.RunContainers)) {
			host := api.ShortID(node)
			if nd := consensus.First[api.Node](w, consensus.TableNodes, consensus.IndexID, node); nd != nil && nd.Hostname != "" {
				host = nd.Hostname
			}
			for _, name := range n.RunContainers[node] {
				held = append(held, fmt.Sprintf("container %s on node %s", name, host))
			}
		}
		return nil, fmt.Errorf("remove network %s: network %s has active endpoints (%s): remove them first (`shoal rm -f` on their node): %w",
			n.Name, n.Name, strings.Join(held, ", "), consensus.ErrInUse)
	}
	return nil, w.Delete(consensus.TableNetworks, n)
}

// Bounds of one node's record of its run containers on a network
// (applySetRunAttachments).
const (
	maxRunContainers    = 4096
	maxRunContainerName = 255
)

// applySetRunAttachments replaces node c.NodeID's `shoal run` containers
// on every stored network with those of c.Networks (network ID → names),
// networks in ID order, names sorted: deterministic. IDs of networks not
// stored are ignored (a network removed before the node wrote).
func applySetRunAttachments(w *consensus.WriteTxn, c command.SetRunAttachments) (any, error) {
	if consensus.First[api.Node](w, consensus.TableNodes, consensus.IndexID, c.NodeID) == nil {
		return nil, fmt.Errorf("record run containers of node %s: %w", c.NodeID, consensus.ErrNotFound)
	}
	// A node writes its own set, but a node is not trusted with the
	// state's size: names are a container's (bounded), and no node runs
	// more containers on one network than this, so a hostile node cannot
	// bloat every member's state through it.
	for id, names := range c.Networks {
		if len(names) > maxRunContainers {
			return nil, fmt.Errorf("record run containers of node %s: %d containers on network %s, at most %d: %w",
				c.NodeID, len(names), id, maxRunContainers, consensus.ErrInvalid)
		}
		for _, name := range names {
			if len(name) > maxRunContainerName {
				return nil, fmt.Errorf("record run containers of node %s: container name of %d bytes: want at most %d: %w",
					c.NodeID, len(name), maxRunContainerName, consensus.ErrInvalid)
			}
		}
	}
	return nil, setRunContainers(w, c.NodeID, c.Networks)
}

// setRunContainers sets node id's run containers on every stored network
// to those of byNetwork (nil: none, as for a removed node).
func setRunContainers(w *consensus.WriteTxn, id string, byNetwork map[string][]string) error {
	nets := consensus.All[api.Network](w, consensus.TableNetworks, consensus.IndexID)
	sort.Slice(nets, func(i, j int) bool { return nets[i].ID < nets[j].ID })
	for _, n := range nets {
		names := slices.Compact(slices.Sorted(slices.Values(byNetwork[n.ID])))
		names = slices.DeleteFunc(names, func(s string) bool { return s == "" })
		if slices.Equal(names, n.RunContainers[id]) {
			continue
		}
		nn := consensus.CloneNetwork(n)
		if len(names) == 0 {
			delete(nn.RunContainers, id)
			if len(nn.RunContainers) == 0 {
				nn.RunContainers = nil
			}
		} else {
			if nn.RunContainers == nil {
				nn.RunContainers = map[string][]string{}
			}
			nn.RunContainers[id] = names
		}
		nn.Version = w.Index()
		if err := w.Insert(consensus.TableNetworks, nn); err != nil {
			return err
		}
	}
	return nil
}

// assignNetworks checks the networks of service s (created, or updated from
// old) and sets s.VIPs: one VIP per network, kept from old where the
// service stays on the network, allocated otherwise. The VIP on the default
// network is s.VIP (allocated from the cluster's VIP range); a service that
// is not on the default network has none. cl is stored by the caller when
// changed is true. A dnsrr service (api.IsDNSRR) gets no VIP on any
// network: a switch to dnsrr releases its VIPs (free for the next
// allocation), a switch back allocates new ones.
func assignNetworks(w *consensus.WriteTxn, cl *consensus.ClusterState, s, old *api.Service) (changed bool, err error) {
	names := api.SpecNetworks(s.Spec)
	dnsrr := api.IsDNSRR(s.Spec)
	seen := map[string]bool{}
	vips := map[string]string{}
	for _, name := range names {
		if seen[name] {
			return false, fmt.Errorf("network %s listed twice: %w", name, consensus.ErrInvalid)
		}
		seen[name] = true
		if name == api.DefaultNetwork && dnsrr {
			continue
		}
		if name == api.DefaultNetwork {
			if s.VIP == "" && cl != nil && cl.VIPCIDR != "" {
				vip, err := alloc.VIP(w, cl)
				if err != nil {
					return false, err
				}
				s.VIP, changed = vip, true
			}
			if s.VIP != "" {
				vips[name] = s.VIP
			}
			continue
		}
		n := w.Network(name)
		if n == nil {
			return false, fmt.Errorf("network %s: %w", name, consensus.ErrNotFound)
		}
		subnet, err := netip.ParsePrefix(n.Subnet)
		if err != nil {
			return false, fmt.Errorf("network %s: stored subnet %q: %w", name, n.Subnet, consensus.ErrInvalid)
		}
		if dnsrr {
			continue
		}
		if old != nil {
			if v, err := netip.ParseAddr(old.VIPs[name]); err == nil && subnet.Contains(v) {
				vips[name] = v.String()
				continue
			}
		}
		vip, err := alloc.NetworkVIP(w, name, subnet, s.ID)
		if err != nil {
			return false, err
		}
		vips[name] = vip
	}
	if !seen[api.DefaultNetwork] || dnsrr {
		s.VIP = ""
	}
	s.VIPs = vips
	return changed, nil
}
