package netloop

// Service traffic: the node's view of every service (VIP, published ports,
// running and healthy backends) goes to the load balancer (one nftables
// transaction per change) and the embedded DNS. Backends on nodes that
// gossip declares dead are dropped at once, before the leader has even
// written the node down in Raft.

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/shoal-org/shoal/lb"
	"github.com/shoal-org/shoal/lb/dns"
	"github.com/shoal-org/shoal/node/metrics"
	"github.com/shoal-org/shoal/node/netplan"
)

// balancer is what serviceTraffic asks of the load balancer (*lb.LB).
type balancer interface {
	Set(lb.State) error
	Intact() (bool, error)
	Close() error
}

// serviceTraffic owns the node's load balancer and DNS server.
type serviceTraffic struct {
	lb       balancer
	dns      *dns.Server
	bridgeIP net.IP // where the DNS server listens
	last     lb.State
	// synced: a Set went through; before it Intact has nothing to check.
	synced bool
	wg     sync.WaitGroup

	// ambiguous are the DNS names last reported as differing only in case.
	ambiguous []string
}

// startTraffic creates the load balancer and starts the DNS server on the
// bridge address. It returns nil when the load balancer cannot be set up
// (the node then runs without service VIPs and published ports).
func (l *Loop) startTraffic(ctx context.Context, bridgeIP net.IP) *serviceTraffic {
	cfg := lb.DefaultConfig()
	cfg.Logger = l.log.With("sub", "lb")
	// The node's own ports, closed to its containers (lb: a container
	// cannot touch its agent); fixed at the node's admission.
	if n, err := l.cfg.Store.Node(l.cfg.NodeID); err == nil {
		if n.ClusterPort > 0 {
			cfg.ClusterPort = n.ClusterPort
		}
		if n.GossipPort > 0 {
			cfg.GossipPort = n.GossipPort
		}
	}
	if c := l.cfg.Store.Cluster(); c != nil && c.ClusterCIDR != "" {
		if _, cidr, err := net.ParseCIDR(c.ClusterCIDR); err == nil {
			cfg.ClusterCIDR = cidr
		}
	}
	lbh, err := lb.New(cfg)
	if err != nil {
		l.log.Error("load balancer unavailable: services get no VIP or published ports on this node", "err", err)
		return nil
	}
	st := &serviceTraffic{lb: lbh, bridgeIP: bridgeIP}
	ups, search, err := dns.UpstreamsFromResolvConf("/etc/resolv.conf")
	if err != nil {
		l.log.Warn("DNS: no upstream servers", "err", err)
	}
	st.dns = dns.New(dns.Config{
		Addr:      net.JoinHostPort(bridgeIP.String(), "53"),
		Upstreams: ups,
		Search:    search,
		Logger:    l.log.With("sub", "dns"),
	})
	st.wg.Add(1)
	go func() {
		defer st.wg.Done()
		runDNS(ctx, st.dns, l.log, dnsRetryMin, dnsRetryMax)
	}()
	return st
}

// How long runDNS waits before it starts a failed DNS server again: at
// first, and at most (the wait doubles after each failure).
const (
	dnsRetryMin = time.Second
	dnsRetryMax = 30 * time.Second
)

// dnsRunner is the DNS server as runDNS runs it (*dns.Server).
type dnsRunner interface {
	Run(ctx context.Context) error
}

// runDNS runs the DNS server until ctx ends, starting it again after
// retry (doubling up to retryMax) whenever it stops with an error: it
// cannot bind the bridge address (not there for a moment while the
// overlay re-creates a bridge someone deleted, or port 53 of it taken by
// another resolver that binds every address), or a server's socket fails.
// Before, the first error stopped it for the agent's life, and every
// container of the node resolved nothing, since its resolv.conf names only
// this server.
func runDNS(ctx context.Context, srv dnsRunner, log *slog.Logger, retry, retryMax time.Duration) {
	for {
		err := srv.Run(ctx)
		if ctx.Err() != nil {
			return
		}
		log.Warn("DNS server stopped; starting it again", "err", err, "in", retry)
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry):
		}
		retry = min(2*retry, retryMax)
	}
}

// sync pushes the current services to the load balancer and DNS when they
// changed since the last push.
//
// A state the data plane cannot fully program (two services publishing one
// port, say, from a log written before the state machine refused that) is
// programmed minus the conflicting parts — the older service keeps what it
// had — and reported once per change; it is not retried, since only a
// change of the state can resolve it. Any other failure is retried.
//
// check asks whether the kernel still holds the rules; without it (no
// deletion announced since the last check, nftwatch.go) they are taken to
// be there. It asks whether the state changed or not: the load balancer
// changes its table in place, and a chain someone else deleted would stay
// deleted under a change that does not touch it; Intact finding the table
// changed makes the next Set replace it whole.
func (st *serviceTraffic) sync(l *Loop, ns netplan.State, check bool) {
	defer metrics.ObserveSince(l.cfg.Metrics.LBSyncDuration, time.Now())
	// Everything up to ns.Index is in ns: once it is programmed, the load
	// balancer has synced through that index.
	idx := ns.Index
	state, views, sources := netplan.Traffic(ns, l.cfg.Members.AliveSet(), l.cfg.NodeID)
	state.DNS = st.bridgeIP
	if amb := st.dns.SetViews(views, sources); !slices.Equal(amb, st.ambiguous) {
		if len(amb) > 0 {
			l.log.Error("DNS: service names differ only in case; each answers for its exact spelling only", "names", amb)
		}
		st.ambiguous = amb
	}
	changed := !reflect.DeepEqual(state, st.last)
	if check && st.synced {
		// Someone else may have deleted rules (`nft flush ruleset`: an
		// nftables service restarted, a firewall reloaded): nothing else
		// would program them again before the next change of a service,
		// and until then the node had no VIPs, published ports or network
		// isolation.
		if intact, err := st.lb.Intact(); err != nil || !intact {
			l.log.Warn("load balancer rules removed or changed by someone else; programming them again", "err", err)
			changed = true
		}
	}
	if !changed {
		l.cfg.Members.SetLBIndex(idx, false) // gossiped only if a drain asks
		return
	}
	err := st.lb.Set(state)
	switch {
	case err == nil:
	case errors.Is(err, lb.ErrInvalidState):
		l.log.Error("load balancer: conflicting service state; the conflicting parts are left out, everything else is programmed",
			"err", err)
	default:
		l.log.Warn("load balancer sync failed; will retry", "err", err)
		st.last = lb.State{} // force a full resync next time
		return
	}
	st.last, st.synced = state, true
	l.cfg.Members.SetLBIndex(idx, true)
}

func (st *serviceTraffic) close() {
	st.wg.Wait()
	_ = st.lb.Close() // rules stay: traffic keeps flowing across restarts
}
