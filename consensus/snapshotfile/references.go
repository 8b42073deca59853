package snapshotfile

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
)

// What a restore checks across rows and tables (checkDesired calls these
// with its problem list). The file is installed without a command, so the
// state machine's guarantees across rows hold after a restore only if they
// are checked here: that a network a service names exists, that subnets
// overlap neither each other nor the cluster's ranges, that VNIs are
// unique, and that no two rows of a table share an ID (a second row with
// an ID replaced the first silently when the store loaded the file; a
// second secret or config of a name made which one a task mounted a
// matter of chance). A break there reaches the data plane — two bridges routing one
// subnet, two networks on one VXLAN ID, a service whose tasks join a
// network no node can set up — so the file is refused, naming the row,
// and nothing changes. Tasks of services the file lacks are dropped with
// a count instead (RestorePlan.OrphanTasks): nothing would ever run or
// remove them. Volumes are not checked: they are each node's own, made by
// name when a task first mounts them.

// tunnelPrefix is the WireGuard tunnel range (node/authz tunnelCIDR,
// overlay/wireguard DefaultTunnelCIDR): every node keeps an address there,
// so a network inside it would lose its address to the tunnel's.
var tunnelPrefix = netip.MustParsePrefix("100.64.0.0/16")

// checkNetworkRanges refuses network subnets and VNIs the state machine
// (CreateNetwork) or the leader (authz.CheckNetworkOnLeader) would not
// take, against the ranges of the running cluster cc, which a restore
// keeps.
func checkNetworkRanges(d *consensus.SnapshotData, cc *consensus.ClusterState, bad func(string, ...any)) {
	type taken struct {
		p    netip.Prefix
		what string
	}
	var used []taken
	cluster := netip.MustParsePrefix("10.42.0.0/16")
	for _, r := range []struct{ cidr, what string }{{cc.ClusterCIDR, "the cluster's node range"}, {cc.VIPCIDR, "the cluster's VIP range"}} {
		if p, err := netip.ParsePrefix(r.cidr); err == nil {
			used = append(used, taken{p.Masked(), fmt.Sprintf("%s %s", r.what, p.Masked())})
			if r.cidr == cc.ClusterCIDR {
				cluster = p
			}
		}
	}
	used = append(used, taken{tunnelPrefix, fmt.Sprintf("the WireGuard tunnel range %s", tunnelPrefix)})
	vnis := map[int]string{}
	for _, n := range d.Networks {
		what := fmt.Sprintf("network %q (ID %q)", n.Name, n.ID)
		p, err := netip.ParsePrefix(strings.TrimSpace(n.Subnet))
		switch {
		case err != nil || !p.Addr().Is4():
			bad("%s: subnet %q is not an IPv4 prefix", what, n.Subnet)
		case p != p.Masked():
			bad("%s: subnet %s has host bits set", what, p)
		case n.ShareBits == 0 && api.NeedsAllocatedShares(p, cluster):
			bad("%s: subnet %s is smaller than a /%d and its node shares are not allocated (share_bits)", what, p, api.MaxNetworkBits(cluster.Bits()))
		case n.ShareBits != 0 && !api.NeedsAllocatedShares(p, cluster):
			bad("%s: subnet %s is large enough for index-derived node shares, yet share_bits is %d", what, p, n.ShareBits)
		case n.ShareBits != 0 && (n.ShareBits != api.AllocatedShareBits || p.Bits() > api.MaxAllocatedNetworkBits):
			bad("%s: share_bits %d of subnet %s (want %d, on a /%d or larger)", what, n.ShareBits, p, api.AllocatedShareBits, api.MaxAllocatedNetworkBits)
		case checkShares(n, p, what, bad):
			// refused: checkShares said why
		default:
			overlaps := false
			for _, t := range used {
				if t.p.Overlaps(p) {
					bad("%s: subnet %s overlaps %s", what, p, t.what)
					overlaps = true
					break
				}
			}
			if !overlaps {
				used = append(used, taken{p, fmt.Sprintf("network %q's subnet %s", n.Name, p)})
			}
		}
		switch {
		case n.VNI < 1 || n.VNI > 1<<24-1 || n.VNI == api.DefaultVNI:
			bad("%s: VNI %d (want 1-16777215, not %d)", what, n.VNI, api.DefaultVNI)
		case vnis[n.VNI] != "":
			bad("%s: VNI %d taken by network %q", what, n.VNI, vnis[n.VNI])
		default:
			vnis[n.VNI] = n.Name
		}
	}
}

// checkShares refuses the allocated shares of network n (subnet p) that
// are not shares of its lower half (api.ShareSlots) or that two nodes
// hold; it reports whether it found any.
func checkShares(n *api.Network, p netip.Prefix, what string, bad func(string, ...any)) bool {
	slots := map[string]bool{}
	for _, s := range api.ShareSlots(p, n.ShareBits) {
		slots[s.String()] = true
	}
	holder := map[string]string{}
	found := false
	nodes := slices.Sorted(maps.Keys(n.Shares))
	for _, id := range nodes {
		s := n.Shares[id]
		switch {
		case !slots[s]:
			bad("%s: node %s's share %q is not a /%d of the lower half of %s", what, id, s, n.ShareBits, p)
			found = true
		case holder[s] != "":
			bad("%s: share %s held by nodes %s and %s", what, s, holder[s], id)
			found = true
		default:
			holder[s] = id
		}
	}
	return found
}

// checkRows refuses rows with an ID another row of their table has,
// secrets or configs of one name, and node rows a member would take
// labels or an availability from that UpdateNode refuses. A row without an ID or name the store
// refuses itself when it loads the plan (consensus/raftnode checks that
// before raft sees it); a second one loaded silently.
func checkRows(d *consensus.SnapshotData, bad func(string, ...any)) {
	type row struct{ id, name, what string }
	table := func(kind string, rows []row, named bool) {
		ids := map[string]bool{}
		names := map[string]string{}
		for _, r := range rows {
			if r.id != "" && ids[r.id] {
				bad("%s: ID listed twice", r.what)
			}
			ids[r.id] = true
			if !named || r.name == "" {
				continue
			}
			if names[r.name] != "" {
				bad("%s: name taken by %s %s", r.what, kind, names[r.name])
			} else {
				names[r.name] = r.id
			}
		}
	}
	var rows []row
	for _, s := range d.Secrets {
		rows = append(rows, row{s.ID, s.Name, fmt.Sprintf("secret %q (ID %q)", s.Name, s.ID)})
	}
	table("secret", rows, true)
	rows = rows[:0]
	for _, c := range d.Configs {
		rows = append(rows, row{c.ID, c.Name, fmt.Sprintf("config %q (ID %q)", c.Name, c.ID)})
	}
	table("config", rows, true)
	rows = rows[:0]
	for _, t := range d.Tasks {
		rows = append(rows, row{id: t.ID, what: fmt.Sprintf("task %q (ID %q)", t.Name, t.ID)})
		if _, ok := api.TaskStateOrder[t.State]; !ok && t.State != "" {
			// As UpsertTasks refuses it: a state no rule orders.
			bad("task %q (ID %q): state %q", t.Name, t.ID, t.State)
		}
	}
	table("task", rows, false)
	rows = rows[:0]
	for _, img := range d.Images {
		rows = append(rows, row{id: img.ID, what: fmt.Sprintf("image %q", img.ID)})
	}
	table("image", rows, false)
	rows = rows[:0]
	for _, n := range d.Nodes {
		rows = append(rows, row{id: n.ID, what: fmt.Sprintf("node %q (ID %q)", n.Hostname, n.ID)})
	}
	table("node", rows, false)
	checkNodeRows(d, bad)
}

// checkNodeRows refuses what a restore would copy onto a member from a
// node row of the file (PlanRestore: labels and availability) where the
// state machine's UpdateNode refuses it: an availability other than
// active, pause or drain, an empty label key. The placement took an
// unknown availability for none of the three.
func checkNodeRows(d *consensus.SnapshotData, bad func(string, ...any)) {
	for _, n := range d.Nodes {
		what := fmt.Sprintf("node %q (ID %q)", n.Hostname, n.ID)
		switch n.Availability {
		case "", api.AvailabilityActive, api.AvailabilityPause, api.AvailabilityDrain:
		default:
			bad("%s: availability %q (want active, pause or drain)", what, n.Availability)
		}
		if _, ok := n.Labels[""]; ok {
			bad("%s: an empty label key", what)
		}
	}
}

// checkReferences refuses services that name networks, secrets or
// configs the file does not hold, or a network twice: the state machine
// never lets a service name a missing network, and a task whose secret or
// config is missing fails on every node, for good.
func checkReferences(d *consensus.SnapshotData, bad func(string, ...any)) {
	networks, secrets, configs := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, n := range d.Networks {
		networks[n.Name] = true
	}
	for _, s := range d.Secrets {
		secrets[s.Name] = true
	}
	for _, c := range d.Configs {
		configs[c.Name] = true
	}
	for _, s := range d.Services {
		what := fmt.Sprintf("service %q (ID %q)", s.Name, s.ID)
		seen := map[string]bool{}
		for _, name := range api.SpecNetworks(s.Spec) {
			switch {
			case seen[name]:
				bad("%s: network %q listed twice", what, name)
			case name != api.DefaultNetwork && !networks[name]:
				bad("%s: network %q is not in the file", what, name)
			}
			seen[name] = true
		}
		for _, r := range s.Spec.Secrets {
			if !secrets[r.Source] {
				bad("%s: secret %q is not in the file", what, r.Source)
			}
		}
		for _, r := range s.Spec.Configs {
			if !configs[r.Source] {
				bad("%s: config %q is not in the file", what, r.Source)
			}
		}
	}
}

// heldVIPs are the VIPs a service keeps through a restore, by network, as
// the state machine stores them (consensus/fsm assignNetworks): none for
// a dnsrr service, the default network's (Service.VIP) only while it
// joins the default network, another network's only while it joins that
// one. A record stored before services had networks (VIPs nil) holds
// Service.VIP as the default network's.
func heldVIPs(s *api.Service) map[string]string {
	out := map[string]string{}
	if api.IsDNSRR(s.Spec) {
		return out
	}
	for _, name := range api.SpecNetworks(s.Spec) {
		v := s.VIPs[name]
		if name == api.DefaultNetwork {
			v = s.VIP
		}
		if v != "" {
			out[name] = v
		}
	}
	return out
}

// releaseStrayVIPs gives s the VIPs heldVIPs keeps and no others: a file
// that holds a dnsrr service's VIP, or a VIP on a network the service does
// not join, would keep the address taken for every later allocation.
func releaseStrayVIPs(s *api.Service) {
	if s.VIPs == nil && !api.IsDNSRR(s.Spec) && slices.Contains(api.SpecNetworks(s.Spec), api.DefaultNetwork) {
		return // stored before services had networks: VIP is the default network's
	}
	s.VIPs = heldVIPs(s)
	s.VIP = s.VIPs[api.DefaultNetwork]
}

// checkNetworkVIPs refuses a service's VIP on a (non-default) network
// that the state machine would not have given it: no IPv4 address,
// outside the network's VIP range (api.NetworkVIPRange, what
// alloc.NetworkVIP gives and an update keeps), or another service's on
// the same network. Only the VIPs a restore keeps (heldVIPs) are checked;
// the default network's is checkDesired's.
func checkNetworkVIPs(d *consensus.SnapshotData, bad func(string, ...any)) {
	subnets := map[string]netip.Prefix{}
	for _, n := range d.Networks {
		if p, err := netip.ParsePrefix(n.Subnet); err == nil {
			subnets[n.Name] = p.Masked()
		}
	}
	taken := map[string]string{} // "network VIP": the service holding it
	for _, s := range d.Services {
		held := heldVIPs(s)
		names := make([]string, 0, len(held))
		for name := range held {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			if name == api.DefaultNetwork {
				continue
			}
			what := fmt.Sprintf("service %q (ID %q)", s.Name, s.ID)
			a, err := netip.ParseAddr(strings.TrimSpace(held[name]))
			if err != nil || !a.Is4() {
				bad("%s: VIP %q on network %s is not an IPv4 address", what, held[name], name)
				continue
			}
			if p, ok := subnets[name]; ok {
				if lo, hi := api.NetworkVIPRange(p); a.Compare(lo) < 0 || a.Compare(hi) > 0 {
					bad("%s: VIP %s on network %s is outside its VIP range %s-%s", what, a, name, lo, hi)
					continue
				}
			}
			key := name + " " + a.String()
			if other, ok := taken[key]; ok {
				bad("%s: VIP %s on network %s taken by service %q", what, a, name, other)
				continue
			}
			taken[key] = s.Name
		}
	}
}

// checkAliases refuses the names a service would answer for on a network
// that another service answers for there too, where one of the two is an
// alias (ServiceSpec.NetworkAliases; two service names are checkDesired's):
// the state machine refuses such a create or update (consensus/fsm
// checkAliases), and a restore installs the file without a command. Case
// does not count (DNS names). Names are taken first, then aliases in file
// order, so the message names the later alias.
func checkAliases(d *consensus.SnapshotData, bad func(string, ...any)) {
	type key struct{ network, name string }
	owner := map[key]string{}   // what the name is: `service "web"`, `alias www of service "web"`
	service := map[key]string{} // the ID of the service it belongs to
	for _, s := range d.Services {
		for _, n := range api.SpecNetworks(s.Spec) {
			k := key{n, strings.ToLower(s.Name)}
			if _, ok := owner[k]; !ok {
				owner[k], service[k] = fmt.Sprintf("service %q", s.Name), s.ID
			}
		}
	}
	for _, s := range d.Services {
		networks := make([]string, 0, len(s.Spec.NetworkAliases))
		for n := range s.Spec.NetworkAliases {
			networks = append(networks, n)
		}
		sort.Strings(networks)
		for _, n := range networks {
			for _, a := range s.Spec.NetworkAliases[n] {
				k := key{n, strings.ToLower(a)}
				what := fmt.Sprintf("alias %s of service %q", a, s.Name)
				switch other, ok := owner[k]; {
				case !ok:
					owner[k], service[k] = what, s.ID
				case service[k] != s.ID:
					bad("%s on network %s: the name is taken there by %s", what, n, other)
				}
			}
		}
	}
}
