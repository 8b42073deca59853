package node

// Service traffic: the node's view of every service (VIP, published ports,
// running and healthy backends) goes to the load balancer (one nftables
// transaction per change) and the embedded DNS. Backends on nodes that
// gossip declares dead are dropped at once, before the leader has even
// written the node down in Raft.

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/lb"
	"github.com/shoal-org/shoal/node/metrics"
)

// serviceTraffic owns the node's load balancer and DNS server.
type serviceTraffic struct {
	lb       *lb.LB
	dns      *lb.DNS
	bridgeIP net.IP // where the DNS server listens
	last     lb.State
	wg       sync.WaitGroup

	// ambiguous are the DNS names last reported as differing only in case.
	ambiguous []string
}

// startTraffic creates the load balancer and starts the DNS server on the
// bridge address. It returns nil when the load balancer cannot be set up
// (the node then runs without service VIPs and published ports).
func (a *Agent) startTraffic(ctx context.Context, cl *cluster, bridgeIP net.IP) *serviceTraffic {
	cfg := lb.DefaultConfig()
	cfg.Logger = a.log.With("sub", "lb")
	if c := cl.store.Cluster(); c != nil && c.ClusterCIDR != "" {
		if _, cidr, err := net.ParseCIDR(c.ClusterCIDR); err == nil {
			cfg.ClusterCIDR = cidr
		}
	}
	l, err := lb.New(cfg)
	if err != nil {
		a.log.Error("load balancer unavailable: services get no VIP or published ports on this node", "err", err)
		return nil
	}
	st := &serviceTraffic{lb: l, bridgeIP: bridgeIP}
	ups, search, err := lb.UpstreamsFromResolvConf("/etc/resolv.conf")
	if err != nil {
		a.log.Warn("DNS: no upstream servers", "err", err)
	}
	st.dns = lb.NewDNS(lb.DNSConfig{
		Addr:      net.JoinHostPort(bridgeIP.String(), "53"),
		Upstreams: ups,
		Search:    search,
		Logger:    a.log.With("sub", "dns"),
	})
	st.wg.Add(1)
	go func() {
		defer st.wg.Done()
		if err := st.dns.Run(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("DNS server stopped", "err", err)
		}
	}()
	return st
}

// sync pushes the current services to the load balancer and DNS when they
// changed since the last push.
//
// A state the data plane cannot fully program (two services publishing one
// port, say, from a log written before the state machine refused that) is
// programmed minus the conflicting parts — the older service keeps what it
// had — and reported once per change; it is not retried, since only a
// change of the state can resolve it. Any other failure is retried.
func (st *serviceTraffic) sync(a *Agent, cl *cluster, ns netState) {
	defer metrics.ObserveSince(a.obs.m().LBSyncDuration, time.Now())
	// Everything up to ns.Index is in ns: once it is programmed, the load
	// balancer has synced through that index.
	idx := ns.Index
	state, views, sources := trafficState(ns, cl.members.AliveSet(), a.id.NodeID)
	state.DNS = st.bridgeIP
	if amb := st.dns.SetViews(views, sources); !slices.Equal(amb, st.ambiguous) {
		if len(amb) > 0 {
			a.log.Error("DNS: service names differ only in case; each answers for its exact spelling only", "names", amb)
		}
		st.ambiguous = amb
	}
	if reflect.DeepEqual(state, st.last) {
		cl.members.SetLBIndex(idx)
		return
	}
	err := st.lb.Set(state)
	switch {
	case err == nil:
	case errors.Is(err, lb.ErrInvalidState):
		a.log.Error("load balancer: conflicting service state; the conflicting parts are left out, everything else is programmed",
			"err", err)
	default:
		a.log.Warn("load balancer sync failed; will retry", "err", err)
		st.last = lb.State{} // force a full resync next time
		return
	}
	st.last = state
	cl.members.SetLBIndex(idx)
}

func (st *serviceTraffic) close() {
	st.wg.Wait()
	_ = st.lb.Close() // rules stay: traffic keeps flowing across restarts
}

// trafficState computes the load balancer state and the DNS views from
// one view of the replica (readNetState), gossip's view of which nodes are
// alive (by node ID) and this node's ID. It is pure: it reads nothing else
// and changes nothing in st. A service on several networks is one
// lb.Service per network (its VIP there and its tasks' addresses there);
// published ports go to its first network.
func trafficState(st netState, alive map[string]memberMeta, self string) (lb.State, map[string]lb.View, map[netip.Addr][]string) {
	var state lb.State
	views := map[string]lb.View{}
	sources := map[netip.Addr][]string{}
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
		ln := lb.Network{Name: n.Name, Subnet: subnet, Bridge: networkBridge(*n), VXLAN: networkVXLAN(*n), Internal: n.Internal, Routed: routedNetwork(*n)}
		if n.Name == api.DefaultNetwork {
			ln.VIPs = vipRange
		}
		state.Networks = append(state.Networks, ln)
		views[n.Name] = lb.View{Subnets: []netip.Prefix{p}, Records: lb.Records{}}
	}
	state.Peers = []net.IP{}
	for _, n := range st.Nodes {
		if ip := net.ParseIP(n.Addr); ip != nil && n.ID != self {
			state.Peers = append(state.Peers, ip)
		}
	}
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
			if t.DesiredState != api.TaskRunning || !servesTraffic(t) {
				continue // told to stop: out of every node's backends before it stops (drainStops)
			}
			if _, ok := alive[t.NodeID]; !ok && t.NodeID != self {
				continue // its node is dead for gossip: drop it now
			}
			tasks = append(tasks, t)
			for _, ip := range taskIPs(t) {
				if addr, err := netip.ParseAddr(ip); err == nil {
					sources[addr] = api.SpecNetworks(t.Spec)
				}
			}
		}
		for i, network := range api.SpecNetworks(s.Spec) {
			var backends []lb.Backend
			var addrs []net.IP
			for _, t := range tasks {
				ip := net.ParseIP(taskIPs(t)[network])
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
			ls := lb.Service{Name: s.Name, Network: network, VIP: vip, Backends: backends}
			if i == 0 {
				ls.Ports = s.Spec.Ports
			} else {
				ls.Name = s.Name + "@" + network
			}
			if vip == nil && len(ls.Ports) == 0 {
				continue
			}
			state.Services = append(state.Services, ls)
			if v, ok := views[network]; ok {
				if vip != nil {
					v.Records[s.Name] = []net.IP{vip}
				}
				v.Records["tasks."+s.Name] = addrs
			}
		}
	}
	return state, views, sources
}

// taskIPs returns a task's address on each of its networks: IPs as
// reported, or IP on its first network (tasks reported before networks).
func taskIPs(t *api.Task) map[string]string {
	if len(t.IPs) > 0 {
		return t.IPs
	}
	if t.IP == "" {
		return nil
	}
	return map[string]string{api.SpecNetworks(t.Spec)[0]: t.IP}
}

// servesTraffic reports whether t, as recorded, can take connections: it
// runs, has an address and, when it has a health check, is healthy. A task
// whose health check has not passed yet gets no traffic (Docker activates a
// task's service binding only once it is healthy): it may not listen yet.
// A task is a backend while it serves traffic and its desired state is
// running; once the leader tells it to stop, every node drops it at once and
// its own node waits a drain period before stopping it (drainStops).
func servesTraffic(t *api.Task) bool {
	return t.State == api.TaskRunning && t.IP != "" && (t.Health == "" || t.Health == api.HealthHealthy)
}
