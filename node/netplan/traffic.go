package netplan

// Service traffic: the node's view of every service (VIP, published ports,
// running and healthy backends) as the load balancer and the embedded DNS
// should have it. Backends on nodes that gossip declares dead are left out
// at once, before the leader has even written the node down in Raft.

import (
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/lb"
	"github.com/shoal-org/shoal/lb/dns"
)

// Traffic computes the load balancer state and the DNS views from
// one view of the replica (Read), gossip's view of which nodes are
// alive (by node ID) and this node's ID; a task on a node the replica
// records down is dropped as one on a node gossip calls dead. It is pure: it reads nothing else
// and changes nothing in st. Only alive's keys are read, so it takes any
// set keyed by node ID (the agent passes gossip's alive set as it is) and
// netplan needs no gossip types. A service on several networks is one
// lb.Service per network (its VIP there and its tasks' addresses there);
// published ports go to its first network.
func Traffic[M any](st State, alive map[string]M, self string) (lb.State, map[string]dns.View, map[netip.Addr]dns.Source) {
	var state lb.State
	views := map[string]dns.View{}
	sources := map[netip.Addr]dns.Source{}
	var vipRange *net.IPNet
	if c := st.Cluster; c != nil {
		_, vipRange, _ = net.ParseCIDR(c.VIPCIDR)
	}
	for _, n := range st.Networks {
		_, subnet, err := net.ParseCIDR(n.Subnet)
		p, err2 := netip.ParsePrefix(n.Subnet)
		if err != nil || err2 != nil {
			continue
		}
		ln := lb.Network{Name: n.Name, Subnet: subnet, Bridge: BridgeName(*n), VXLAN: VXLANName(*n), Internal: n.Internal, Routed: Routed(*n)}
		if n.Name == api.DefaultNetwork {
			ln.VIPs = vipRange
		}
		state.Networks = append(state.Networks, ln)
		views[n.Name] = dns.View{Subnets: []netip.Prefix{p}, Records: dns.Records{}, Internal: n.Internal}
	}
	state.Peers = []net.IP{}
	down := map[string]bool{}
	for _, n := range st.DataPathNodes() {
		if n.Status == api.NodeDown {
			down[n.ID] = true
		}
		if ip := net.ParseIP(n.Addr); ip != nil && n.ID != self {
			state.Peers = append(state.Peers, ip)
			// Its agent's ports, closed to containers (lb.State.PeerPorts).
			for _, p := range []int{n.ClusterPort, n.GossipPort} {
				if p > 0 && !slices.Contains(state.PeerPorts, p) {
					state.PeerPorts = append(state.PeerPorts, p)
				}
			}
		}
	}
	slices.Sort(state.PeerPorts) // one rule set for one cluster, whatever the nodes' order
	svcs := slices.Clone(st.Services)
	// Oldest first: on a conflict the load balancer keeps the earlier one's
	// claim (lb.State), so a service that slipped in later never steals it.
	sort.Slice(svcs, func(i, j int) bool {
		if !svcs[i].CreatedAt.Equal(svcs[j].CreatedAt) {
			return svcs[i].CreatedAt.Before(svcs[j].CreatedAt)
		}
		return svcs[i].ID < svcs[j].ID
	})
	for _, s := range svcs {
		var tasks []*api.Task
		for _, t := range st.Tasks[s.ID] {
			if t.DesiredState != api.TaskRunning || !ServesTraffic(t) {
				continue // told to stop: out of every node's backends before it stops (the reconciler's drain)
			}
			if _, ok := alive[t.NodeID]; (!ok || down[t.NodeID]) && t.NodeID != self {
				// Its node is dead for gossip (drop it now, before the
				// leader records it), or the leader marked it down: raft
				// went silent on it (node/leaderloop's silence.go) while
				// gossip still calls it alive.
				continue
			}
			tasks = append(tasks, t)
			for _, ip := range TaskIPs(t) {
				if addr, err := netip.ParseAddr(ip); err == nil {
					domain := hostDomain(api.TaskHostname(t))
					sources[addr] = dns.Source{Networks: api.SpecNetworks(t.Spec), Stack: t.Spec.Labels[api.StackLabel],
						Domain: domain, NameDomain: domain != "" && t.Spec.Hostname == ""}
				}
			}
		}
		for i, network := range api.SpecNetworks(s.Spec) {
			var backends []lb.Backend
			var addrs []net.IP
			for _, t := range tasks {
				ip := net.ParseIP(TaskIPs(t)[network])
				if ip == nil {
					continue
				}
				backends = append(backends, lb.Backend{IP: ip, Local: t.NodeID == self})
				addrs = append(addrs, ip)
			}
			sort.Slice(backends, func(i, j int) bool { return backends[i].IP.String() < backends[j].IP.String() })
			vip := net.ParseIP(s.VIPs[network])
			if network == api.DefaultNetwork && s.VIP != "" {
				vip = net.ParseIP(s.VIP)
			}
			dnsrr := api.IsDNSRR(s.Spec)
			if dnsrr {
				vip = nil // none is allocated; one left in an older record is not used
			}
			if v, ok := views[network]; ok {
				var name []net.IP
				switch {
				case dnsrr:
					name = addrs
				case vip != nil:
					name = []net.IP{vip}
				}
				if name != nil || dnsrr {
					v.Records[s.Name] = name
					for _, a := range s.Spec.NetworkAliases[network] {
						// A name beats an alias, an older service's alias a
						// newer one's: the cluster refuses both clashes,
						// an older state may still hold one.
						if _, taken := v.Records[a]; !taken {
							v.Records[a] = name
						}
					}
				}
				v.Records["tasks."+s.Name] = addrs
				// tasks.ALIAS is the tasks too, as Docker's libnetwork
				// registers it for every service alias; the same
				// precedence as the alias itself.
				for _, a := range s.Spec.NetworkAliases[network] {
					if _, taken := v.Records["tasks."+a]; !taken {
						v.Records["tasks."+a] = addrs
					}
				}
			}
			ls := lb.Service{Name: s.Name, Network: network, VIP: vip, Backends: backends}
			if i == 0 {
				ls.Ports = s.Spec.Ports
				if dnsrr {
					ls.Ports = hostPorts(s.Spec.Ports)
				}
			} else {
				ls.Name = s.Name + "@" + network
			}
			if vip == nil && len(ls.Ports) == 0 {
				continue // dnsrr: no rule at all unless it publishes in host mode
			}
			state.Services = append(state.Services, ls)
		}
	}
	return state, views, sources
}

// hostPorts returns the host-mode ports of ports: all a dnsrr service may
// publish (without a VIP the routing mesh has nothing to balance over; the
// leader refuses ingress ports with dnsrr, an older state may hold one).
func hostPorts(ports []api.PortConfig) []api.PortConfig {
	var out []api.PortConfig
	for _, p := range ports {
		if p.Mode == api.PublishHost {
			out = append(out, p)
		}
	}
	return out
}

// TaskIPs returns a task's address on each of its networks: IPs as
// reported, or IP on its first network (tasks reported before networks).
func TaskIPs(t *api.Task) map[string]string {
	if len(t.IPs) > 0 {
		return t.IPs
	}
	if t.IP == "" {
		return nil
	}
	return map[string]string{api.SpecNetworks(t.Spec)[0]: t.IP}
}

// ServesTraffic reports whether t, as recorded, can take connections: it
// runs, has an address and, when it has a health check, is healthy. A task
// whose health check has not passed yet gets no traffic (Docker activates a
// task's service binding only once it is healthy): it may not listen yet.
// A task is a backend while it serves traffic and its desired state is
// running; once the leader tells it to stop, every node drops it at once and
// its own node waits a drain period before stopping it (the reconciler's drain).
func ServesTraffic(t *api.Task) bool {
	return t.State == api.TaskRunning && t.IP != "" && (t.Health == "" || t.Health == api.HealthHealthy)
}

// hostDomain is the domain a task's resolver derives from its hostname
// (api.TaskHostname: its spec's hostname, else the task's name): "3" for
// web.3, "internal" for db.internal, none for app-host.
func hostDomain(hostname string) string {
	_, domain, _ := strings.Cut(hostname, ".")
	return domain
}
