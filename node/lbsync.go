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
	"reflect"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/lb"
)

// serviceTraffic owns the node's load balancer and DNS server.
type serviceTraffic struct {
	lb   *lb.LB
	dns  *lb.DNS
	last lb.State
	wg   sync.WaitGroup

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
	st := &serviceTraffic{lb: l}
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
func (st *serviceTraffic) sync(a *Agent, cl *cluster) {
	defer observeSince(a.obs.m().lbSyncDuration, time.Now())
	state, records := a.trafficState(cl)
	if amb := st.dns.Set(records); !slices.Equal(amb, st.ambiguous) {
		if len(amb) > 0 {
			a.log.Error("DNS: service names differ only in case; each answers for its exact spelling only", "names", amb)
		}
		st.ambiguous = amb
	}
	if reflect.DeepEqual(state, st.last) {
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
}

func (st *serviceTraffic) close() {
	st.wg.Wait()
	_ = st.lb.Close() // rules stay: traffic keeps flowing across restarts
}

// trafficState computes the load balancer state and DNS records from the
// replica and gossip's view of which nodes are alive.
func (a *Agent) trafficState(cl *cluster) (lb.State, lb.Records) {
	alive := cl.members.aliveSet()
	records := lb.Records{}
	var state lb.State
	svcs := cl.store.Services()
	// Oldest first: on a conflict the load balancer keeps the earlier one's
	// claim (lb.State), so a service that slipped in later never steals it.
	sort.Slice(svcs, func(i, j int) bool {
		if !svcs[i].CreatedAt.Equal(svcs[j].CreatedAt) {
			return svcs[i].CreatedAt.Before(svcs[j].CreatedAt)
		}
		return svcs[i].ID < svcs[j].ID
	})
	for _, s := range svcs {
		var backends []lb.Backend
		var taskIPs []net.IP
		for _, t := range cl.store.TasksByService(s.ID) {
			if t.DesiredState != api.TaskRunning || !servesTraffic(t) {
				continue // told to stop: out of every node's backends before it stops (drainStops)
			}
			if _, ok := alive[t.NodeID]; !ok && t.NodeID != a.id.NodeID {
				continue // its node is dead for gossip: drop it now
			}
			ip := net.ParseIP(t.IP)
			if ip == nil {
				continue
			}
			backends = append(backends, lb.Backend{IP: ip, Local: t.NodeID == a.id.NodeID})
			taskIPs = append(taskIPs, ip)
		}
		sort.Slice(backends, func(i, j int) bool { return backends[i].IP.String() < backends[j].IP.String() })
		vip := net.ParseIP(s.VIP)
		if vip == nil && len(s.Spec.Ports) == 0 {
			continue
		}
		state.Services = append(state.Services, lb.Service{Name: s.Name, VIP: vip, Ports: s.Spec.Ports, Backends: backends})
		if vip != nil {
			records[s.Name] = []net.IP{vip}
		}
		records["tasks."+s.Name] = taskIPs
	}
	return state, records
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
