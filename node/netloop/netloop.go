// Package netloop is the loop that programs overlay, balancer and DNS from
// one snapshot: the apply half of node/netplan. It also holds the runtime's
// network (Attacher), which plugs containers into the overlays the loop
// keeps up, and this node's WireGuard key files (wgkeys.go). It never
// imports node: the replica, gossip, the status sink and the logger come in
// through Config.
package netloop

// The node's container networks. Once the leader has given this node its
// /24 (recorded in Raft at join), the overlay of the default network brings
// up the bridge and the VXLAN device, and keeps one route, neighbour and
// FDB entry per peer in step with the state. Every other network (a Raft
// object, consensus/network.go) gets an overlay of its own on every node:
// its own VNI, bridge and VXLAN device, and as node subnet this node's
// share of the network's subnet (api.NetworkShare: derived from the index
// of the node's /24, so no allocation is needed; on a network too small
// for that, the share the state machine gave the node, and no overlay
// until it has one). A network removed from the state is torn down.
//
// Encrypted networks (overlay/wireguard) are routed through WireGuard:
// while the state holds one, the node runs a WireGuard device, publishes
// its public key in its own node record (a node-owned field), and
// configures as WireGuard peers the nodes whose keys it knows, each allowed
// its tunnel address and its shares of the encrypted networks. An
// encrypted network's overlay is a bridge whose peers' shares are routed
// straight into the WireGuard device (overlay.Config.Routed), no VXLAN. A
// node whose key is not known yet (or that was removed) is no WireGuard
// peer, so traffic to it is dropped by WireGuard, never sent in clear, and
// its handshakes go unanswered. Every removal makes the remaining nodes
// rotate their keys (wgkeys.go, netplan.WGRotationNext).
//
// The runtime plugs containers in through netAttacher, which exists from
// agent start: before the node is in a cluster (or before its subnet is
// known) containers get loopback only, as `docker run --network none`
// would. A task's container joins the networks of its spec, one interface
// each (eth0, eth1, ...); the first carries the default route, the others
// route their network's subnet (and, for the default network, the VIP
// range). The reconciler hands the network list over in the context of
// RunContainer (WithNetworks): the runtime's Network interface knows only
// the container ID.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/membership"
	"github.com/shoal-org/shoal/node/metrics"
	"github.com/shoal-org/shoal/node/netplan"
	"github.com/shoal-org/shoal/node/resync"
	"github.com/shoal-org/shoal/overlay"
	"github.com/shoal-org/shoal/overlay/wireguard"
)

// Members is what the network loop asks of gossip (membership.Membership):
// changes of the alive set (a dead node's backends go at once), the alive
// set itself, and where to publish the index the load balancer reflects.
type Members interface {
	Subscribe() (<-chan struct{}, func())
	AliveSet() map[string]membership.Meta
	SetLBIndex(index uint64, changed bool)
}

// Config is what a Loop needs; every field is required. It is not changed
// after New.
type Config struct {
	NodeID        string
	AdvertiseAddr string // the underlay address (VXLAN, WireGuard's MTU)
	// ClusterDir is DATA/cluster: the overlays' state and the WireGuard
	// keys live below it.
	ClusterDir string
	Store      *consensus.Store // the local replica
	Members    Members
	Network    *Attacher // the runtime's network, which the loop fills in
	Metrics    *metrics.Set
	// ReplicaCurrent reports whether the replica at index is past this
	// membership's join floor: before, it may hold this node's record of a
	// previous membership, with another subnet.
	ReplicaCurrent func(index uint64) bool
	// Write proposes a command through the leader (this node's public
	// WireGuard key).
	Write func(ctx context.Context, cmd command.Command) error
	// Synced reports whether the replica has caught up with a leader: only
	// then does "no encrypted network" mean none is left, rather than none
	// replayed yet, and a device an earlier agent left running is stopped.
	Synced func() bool
	// Resync is the agent's resync clock (nil: a ticker of the loop's own).
	Resync *resync.Clock
	Logger *slog.Logger
}

// Loop is one cluster instance's network loop. Make it with New and run it
// with Run, once.
type Loop struct {
	cfg Config
	log *slog.Logger
	net *Attacher

	// WireGuard of the encrypted networks, owned by Run's goroutine
	// (syncNetworks, closeNetworks): nil while no encrypted network exists.
	wg      *wireguard.WireGuard
	wgPeers []wireguard.WGPeer
	wgKeys  *wgKeys // the device's keys on disk (wgkeys.go)
	// wgLeftoverChecked: the device an earlier agent may have left
	// running was looked for once the replica had caught up.
	wgLeftoverChecked bool
}

// New returns the network loop of cfg.
func New(cfg Config) *Loop {
	return &Loop{cfg: cfg, log: cfg.Logger, net: cfg.Network}
}

// netsKey carries a container's network names in a context.
type netsKey struct{}

// WithNetworks returns ctx carrying the networks a container must join, in
// order (the first is its primary network), for Attacher.Attach.
func WithNetworks(ctx context.Context, names []string) context.Context {
	return context.WithValue(ctx, netsKey{}, names)
}

func networksOf(ctx context.Context) []string {
	if v, ok := ctx.Value(netsKey{}).([]string); ok && len(v) > 0 {
		return v
	}
	return []string{api.DefaultNetwork}
}

// ErrNetworkDown: a container names a network whose overlay is not up on
// this node (yet).
var ErrNetworkDown = errors.New("network not set up on this node")

// netOverlay is one non-default network's overlay on this node.
type netOverlay struct {
	net    api.Network
	ov     *overlay.Overlay
	subnet netip.Prefix // the whole network
	share  netip.Prefix // this node's part of it (the bridge's subnet)
	peers  []overlay.Peer
	cancel context.CancelFunc
	done   chan struct{}
}

// Attacher implements runtime.Network over the overlays of the moment. It
// lives as long as the agent (the runtime holds it); each cluster
// instance's Loop fills it in. The zero value is ready: no overlay, so
// containers get loopback only. Safe for concurrent use.
type Attacher struct {
	mu sync.RWMutex
	ov *overlay.Overlay // the default network
	// defaultRoutes are the routes of a container whose default network
	// is not its first: the cluster CIDR and the VIP range.
	defaultRoutes []netip.Prefix
	nets          map[string]*netOverlay // by network name
	// Wait bounds how long Attach waits for a network's overlay to come
	// up (0: networkWait). Set before first use.
	Wait time.Duration

	// wgPublishing: a write of this node's public key is under way. It is
	// the agent's, not a loop's: the write may outlive the loop that
	// started it.
	wgPublishing atomic.Bool
}

// SetDefault sets (or, with nil, clears) the default network's overlay.
func (n *Attacher) SetDefault(ov *overlay.Overlay) {
	n.mu.Lock()
	n.ov = ov
	n.mu.Unlock()
}

// Default returns the default network's overlay, nil while it is not up.
func (n *Attacher) Default() *overlay.Overlay {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.ov
}

// lookup returns the overlay of a network and the routes a non-primary
// interface on it gets.
func (n *Attacher) lookup(name string) (*overlay.Overlay, []netip.Prefix) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if name == api.DefaultNetwork {
		return n.ov, n.defaultRoutes
	}
	if no := n.nets[name]; no != nil {
		return no.ov, []netip.Prefix{no.subnet}
	}
	return nil, nil
}

// networkWait bounds how long Attach waits for a network's overlay. A
// node gets its share of a network with allocated shares in the same
// entry that assigns it the network's first task (or with a `run`
// container's claim), and the loop brings the overlay up as it sees that
// entry, usually well within a second of the task's start: without a wait
// the first task raced the overlay and was rejected.
const networkWait = 10 * time.Second

// await polls for network name's overlay until it is up, ctx ends or
// networkWait passed (nil then).
func (n *Attacher) await(ctx context.Context, name string) (*overlay.Overlay, []netip.Prefix) {
	wait := n.Wait
	if wait <= 0 {
		wait = networkWait
	}
	deadline := time.Now().Add(wait)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return nil, nil
		case <-tick.C:
		}
		if ov, routes := n.lookup(name); ov != nil {
			return ov, routes
		}
	}
	return nil, nil
}

// all returns every overlay (default first), by network name.
func (n *Attacher) all() map[string]*overlay.Overlay {
	n.mu.RLock()
	defer n.mu.RUnlock()
	out := map[string]*overlay.Overlay{}
	if n.ov != nil {
		out[api.DefaultNetwork] = n.ov
	}
	for name, no := range n.nets {
		out[name] = no.ov
	}
	return out
}

// Attach plugs the container into the networks named in ctx (WithNetworks;
// the default network otherwise) and returns its address on the first. A
// container on the default network only gets none while the overlay is not
// up; any other network that is not up is an error (the task is rejected
// and replaced).
func (n *Attacher) Attach(ctx context.Context, containerID, netnsPath string) (string, error) {
	names := networksOf(ctx)
	var first string
	for i, name := range names {
		ov, routes := n.lookup(name)
		if ov == nil && name != api.DefaultNetwork {
			ov, routes = n.await(ctx, name)
		}
		if ov == nil {
			if len(names) == 1 && name == api.DefaultNetwork {
				return "", nil
			}
			err := fmt.Errorf("attach container to network %s: %w", name, ErrNetworkDown)
			return "", errors.Join(err, n.Detach(context.WithoutCancel(ctx), containerID, netnsPath))
		}
		ip, err := ov.AttachWith(ctx, containerID, netnsPath, overlay.AttachOptions{
			IfName: fmt.Sprintf("eth%d", i), Primary: i == 0, Routes: routes})
		if err != nil {
			err = fmt.Errorf("network %s: %w", name, err)
			return "", errors.Join(err, n.Detach(context.WithoutCancel(ctx), containerID, netnsPath))
		}
		if i == 0 {
			first = ip
		}
	}
	return first, nil
}

// Detach releases the container's addresses on every network; unknown
// containers are fine.
func (n *Attacher) Detach(ctx context.Context, containerID, netnsPath string) error {
	var errs []error
	for name, ov := range n.all() {
		if err := ov.Detach(ctx, containerID, netnsPath); err != nil {
			errs = append(errs, fmt.Errorf("network %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// IPs returns the container's address on each network it is attached to.
func (n *Attacher) IPs(containerID string) map[string]string {
	out := map[string]string{}
	for name, ov := range n.all() {
		if ip, ok := ov.AddressOf(containerID); ok {
			out[name] = ip.String()
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// Ready reports whether containers started now get an overlay address.
func (n *Attacher) Ready() bool { return n.Default() != nil }

// Run waits for this node's subnet, sets the overlay up, then keeps its
// peers, the other networks, the load balancer and DNS in step with the
// state and gossip until ctx ends. It returns once the watchers it started
// have stopped; the devices stay (containers keep their network across
// agent restarts).
func (l *Loop) Run(ctx context.Context) {
	ch, cancel := l.cfg.Store.Subscribe()
	defer cancel()
	memberCh, cancelMembers := l.cfg.Members.Subscribe()
	defer cancelMembers()
	var ov *overlay.Overlay
	var lastPeers []overlay.Peer
	var traffic *serviceTraffic
	var runWG sync.WaitGroup
	defer runWG.Wait()
	defer func() {
		if traffic != nil {
			traffic.close()
		}
	}()
	defer l.closeNetworks()
	retry, stopRetry := l.cfg.Resync.Ticks(resync.Period)
	defer stopRetry()
	nft := newNFTWatch()
	runWG.Add(1)
	go func() {
		defer runWG.Done()
		nft.run(ctx, l.log)
	}()
	var passStart time.Time
	// The last pass's nodes, and the nodes that left since (departed.go).
	var lastNodes []*api.Node
	var departed map[string]netplan.Departure
	for {
		passStart = time.Now()
		nftGen, nftCheck := nft.due(passStart)
		// A replica replaying the log toward the join floor may still hold
		// this node's record of a previous membership, with another subnet:
		// an overlay built from it is never rebuilt (node/revocation).
		if ov == nil && l.cfg.ReplicaCurrent(l.cfg.Store.Index()) {
			ov, lastPeers = l.setupOverlay(ctx)
			if ov != nil {
				l.net.SetDefault(ov)
				runWG.Add(1)
				go func() {
					defer runWG.Done()
					if err := ov.Run(ctx); err != nil {
						l.log.Warn("overlay watcher stopped", "err", err)
					}
				}()
			}
		}
		if ov != nil {
			// One view of the state for the whole pass (netplan.Read),
			// with the nodes that left since the last pass still on the
			// data path while they drain.
			ns := netplan.Read(l.cfg.Store)
			departed = netplan.Departures(departed, lastNodes, ns.Nodes, l.cfg.NodeID, passStart, netplan.DepartedKeep)
			lastNodes, ns.Departed = ns.Nodes, netplan.DepartedNodes(departed)
			// Peers change rarely; the overlay repairs drift by itself.
			if peers := netplan.OverlayPeers(ns, l.cfg.NodeID); !reflect.DeepEqual(peers, lastPeers) {
				if err := ov.SetPeers(peers); err != nil {
					l.cfg.Metrics.OverlaySyncErrors.Inc()
					l.log.Warn("overlay peers", "err", err)
				} else {
					lastPeers = peers
				}
			}
			l.syncNetworks(ctx, ns)
			if nftCheck {
				l.repairGuards(ov)
			}
			if traffic == nil {
				traffic = l.startTraffic(ctx, ov.BridgeIP())
			}
			if traffic != nil {
				traffic.sync(l, ns, nftCheck)
			}
			if nftCheck {
				nft.done(nftGen, passStart)
			}
		}
		if traffic == nil {
			// No load balancer here: nothing on this node sends traffic
			// to tasks, so nothing to wait for (drainStops).
			l.cfg.Members.SetLBIndex(l.cfg.Store.Index(), false)
		}
		select {
		case <-ctx.Done():
			return
		case <-memberCh: // a dead node's backends go at once
			continue
		case <-nft.kick: // someone deleted nftables objects: repair at once
			continue
		case <-ch:
		case <-retry:
			continue // a retry is no burst: no need to coalesce (one wake-up, not two)
		}
		if wait := CoalesceWait(time.Since(passStart)); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-memberCh:
			case <-time.After(wait):
			}
		}
	}
}

// coalesceWindow is the shortest time between two passes a state change
// starts.
const coalesceWindow = 50 * time.Millisecond

// CoalesceWait is how long a state change that arrives sinceLastPass after
// the last pass started waits before its pass. State changes come in bursts
// (task reports), and a burst is coalesced: at most one pass per window.
// But the first change after a quiet spell is acted on at once: a stop's
// drain (taskplan.DrainStops) waits for this node's load balancer to sync
// past it, and a trailing-edge wait put a full window into every update's
// stop (issue 10: all-at-once update of 10, drain 80 ms of it).
func CoalesceWait(sinceLastPass time.Duration) time.Duration {
	if sinceLastPass >= coalesceWindow {
		return 0
	}
	return coalesceWindow - sinceLastPass
}

// setupOverlay returns a ready overlay with the peers it holds (nil when
// they still need a SetPeers), or nil while the subnet is unknown or the
// setup failed (the caller retries).
func (l *Loop) setupOverlay(ctx context.Context) (*overlay.Overlay, []overlay.Peer) {
	self, err := l.cfg.Store.Node(l.cfg.NodeID)
	if err != nil || self.Subnet == "" {
		return nil, nil
	}
	c := l.cfg.Store.Cluster()
	if c == nil {
		return nil, nil
	}
	cfg := overlay.DefaultConfig()
	cfg.NodeID = l.cfg.NodeID
	cfg.Logger = l.log.With("sub", "overlay")
	cfg.StateDir = filepath.Join(l.cfg.ClusterDir, "overlay")
	if cfg.UnderlayIP, err = netip.ParseAddr(l.cfg.AdvertiseAddr); err != nil {
		l.log.Error("overlay: advertise address", "err", err)
		return nil, nil
	}
	if cfg.Subnet, err = netip.ParsePrefix(self.Subnet); err != nil {
		l.log.Error("overlay: node subnet", "subnet", self.Subnet, "err", err)
		return nil, nil
	}
	if c.ClusterCIDR != "" {
		if cfg.ClusterCIDR, err = netip.ParsePrefix(c.ClusterCIDR); err != nil {
			l.log.Error("overlay: cluster CIDR", "cidr", c.ClusterCIDR, "err", err)
			return nil, nil
		}
	}
	routes := []netip.Prefix{cfg.ClusterCIDR}
	if p, err := netip.ParsePrefix(c.VIPCIDR); err == nil {
		routes = append(routes, p)
	}
	peers := netplan.OverlayPeers(netplan.Read(l.cfg.Store), l.cfg.NodeID)
	ov, peerErr, err := openOverlay(ctx, cfg, peers)
	if err != nil {
		l.log.Warn("overlay setup failed; retrying", "err", err)
		return nil, nil
	}
	l.net.mu.Lock()
	l.net.defaultRoutes = routes
	l.net.mu.Unlock()
	l.log.Info("overlay up", "subnet", self.Subnet, "bridge_ip", ov.BridgeIP().String())
	if peerErr != nil {
		l.cfg.Metrics.OverlaySyncErrors.Inc()
		l.log.Warn("overlay peers", "err", peerErr)
		peers = nil // the loop's next pass sets them again
	}
	return ov, peers
}

// openOverlay makes the overlay of cfg, gives it peers, then sets it up.
// The peers go first because Setup makes the kernel's entries match the
// peer set the overlay knows: on a fresh Overlay, which knew none, an
// agent restart deleted every peer's route, neighbour, FDB entry and mesh
// return rule the previous agent left, and traffic to the other nodes
// stopped until the loop's next SetPeers (DESIGN.md: restarts must not
// interrupt traffic). Before Setup, SetPeers only records them.
//
// A Setup that failed closes the overlay (err): the caller retries every
// pass, and each try kept a netlink handle open. A Setup that brought the
// devices up but not every peer entry (ErrPartial), or peers that are
// malformed, give the overlay with peerErr: the caller sets the peers
// again on its next pass, as it would have after a Setup without them.
func openOverlay(ctx context.Context, cfg overlay.Config, peers []overlay.Peer) (ov *overlay.Overlay, peerErr, err error) {
	cfg.ResyncTicks = func(d time.Duration) (<-chan time.Time, func()) {
		t := resync.NewTicker(d)
		return t.C, t.Stop
	}
	ov, err = overlay.New(cfg)
	if err != nil {
		return nil, nil, err
	}
	peerErr = ov.SetPeers(peers) // malformed peers are left out, the rest recorded
	if err := ov.Setup(ctx); err != nil {
		if !errors.Is(err, overlay.ErrPartial) {
			_ = ov.Close()
			return nil, nil, err
		}
		peerErr = errors.Join(peerErr, err)
	}
	return ov, peerErr, nil
}

// wgConfig is the device's configuration before its tunnel address: the
// name and socket any device of this node runs under.
func (l *Loop) wgConfig() wireguard.WireGuardConfig {
	cfg := wireguard.DefaultWireGuardConfig()
	cfg.Logger = l.log.With("sub", "wireguard")
	cfg.KeyFile = filepath.Join(l.cfg.ClusterDir, "wireguard", wgKeyFile)
	return cfg
}

// syncWireGuard runs WireGuard while the state holds an encrypted network
// (and stops it when none is left), publishes this node's public key and
// keeps the peers in step. It returns the device, or nil while it is not
// up (the caller skips the encrypted networks until it is).
//
// It also takes this node's key rotation one step further (wgkeys.go):
// removalIndex is the replica's last removal, index what the replica has
// applied (the epoch of a key made now).
func (l *Loop) syncWireGuard(self *api.Node, nodes []*api.Node, cluster, nodeSub netip.Prefix, encrypted []*api.Network, removalIndex, index uint64) *wireguard.WireGuard {
	if len(encrypted) == 0 {
		if l.wg != nil {
			_ = l.wg.Close()
			l.wg, l.wgPeers, l.wgKeys = nil, nil, nil
			l.log.Info("wireguard stopped: no encrypted network left")
		}
		if !l.wgLeftoverChecked && l.cfg.Synced != nil && l.cfg.Synced() {
			// The last encrypted network went while the agent was down: the
			// device it released runs on with no handle to close it.
			if err := wireguard.StopLeftover(l.wgConfig()); err != nil {
				l.log.Warn("wireguard: stopping the device left running", "err", err)
				return nil
			}
			l.wgLeftoverChecked = true
		}
		return nil
	}
	// A device running now is adopted below and closed by its handle.
	l.wgLeftoverChecked = true
	if l.wg != nil {
		select {
		case <-l.wg.Done(): // the device went away: start it again
			l.log.Warn("wireguard device stopped; restarting it")
			_ = l.wg.Close()
			l.wg, l.wgPeers, l.wgKeys = nil, nil, nil
		default:
		}
	}
	if l.wg == nil {
		cfg := l.wgConfig()
		tip, err := wireguard.TunnelAddr(cfg.TunnelCIDR, cluster, nodeSub)
		if err != nil {
			l.log.Error("wireguard: tunnel address", "err", err)
			return nil
		}
		cfg.TunnelIP = tip
		// The TUN's MTU follows the underlay link (wireguard.WireGuardConfig).
		cfg.UnderlayIP, _ = netip.ParseAddr(l.cfg.AdvertiseAddr)
		wg, err := wireguard.NewWireGuard(cfg)
		if err != nil {
			l.log.Warn("wireguard: start failed; retrying", "err", err)
			return nil
		}
		l.wg = wg
	}
	if l.wgKeys == nil {
		// The device loaded (or made) private.key; read it with its epoch
		// and a next key left by a rotation under way.
		dir := filepath.Join(l.cfg.ClusterDir, "wireguard")
		cur, err := wireguard.LoadKeyPair(filepath.Join(dir, wgKeyFile))
		if err == nil {
			l.wgKeys, err = loadWGKeys(dir, cur, index, l.log)
		}
		if err != nil {
			l.log.Warn("wireguard: reading the keys failed; retrying", "err", err)
			return l.wg
		}
	}
	tunnelCIDR := netip.MustParsePrefix(wireguard.DefaultTunnelCIDR)
	for range 3 { // at most generate, switch, publish
		cur, pending := l.wgKeys.in()
		step := netplan.WGRotationNext(netplan.WGRotationIn{RemovalIndex: removalIndex, Self: *self, Nodes: nodes, Current: cur, Pending: pending, Backend: l.wg.Backend()})
		if step.Generate > 0 {
			if err := l.wgKeys.generate(step.Generate); err != nil {
				l.log.Warn("wireguard: making the next key failed; retrying", "err", err)
				return l.wg
			}
			l.log.Info("wireguard: key rotation started", "removal_index", step.Generate, "next_public_key", l.wgKeys.next.PublicKey())
			continue
		}
		if step.Switch {
			peers := netplan.WireGuardPeers(nodes, l.cfg.NodeID, cluster, tunnelCIDR, wireguard.DefaultWireGuardPort, encrypted)
			if err := l.wg.SwitchKey(*l.wgKeys.next, peers); err != nil && !errors.Is(err, overlay.ErrPartial) {
				l.log.Warn("wireguard: switching to the next key failed; retrying", "err", err)
				l.wgPeers = nil
				return l.wg
			}
			l.wgPeers = peers
			if err := l.wgKeys.promote(); err != nil {
				l.log.Warn("wireguard: keeping the next key failed; retrying", "err", err)
				return l.wg
			}
			continue
		}
		if step.Publish != nil && l.net.wgPublishing.CompareAndSwap(false, true) {
			// Through the leader like any report of a node about itself;
			// a stale copy of the record is refused there and retried on
			// the next pass. In a goroutine: the loop must not wait for
			// quorum.
			rec := *step.Publish
			go func() {
				defer l.net.wgPublishing.Store(false)
				if err := l.cfg.Write(context.Background(), &command.UpsertNode{Node: rec}); err != nil {
					l.log.Warn("wireguard: publishing the public key failed; retrying", "err", err)
				}
			}()
		}
		break
	}
	peers := netplan.WireGuardPeers(nodes, l.cfg.NodeID, cluster, tunnelCIDR, wireguard.DefaultWireGuardPort, encrypted)
	if !reflect.DeepEqual(peers, l.wgPeers) {
		if err := l.wg.SetPeers(peers); err != nil {
			l.log.Warn("wireguard peers", "err", err)
		} else {
			l.wgPeers = peers
		}
	}
	return l.wg
}

// syncNetworks brings up the overlays of networks new in the state, keeps
// their peers in step and tears down those of removed networks. Failures
// are logged and retried on the next pass.
// repairGuards makes the anti-spoofing table of the default overlay (ov)
// and of every other network's overlay again where someone else deleted it
// (overlay.RepairGuard): one netlink request per overlay and pass.
func (l *Loop) repairGuards(ov *overlay.Overlay) {
	ovs := []*overlay.Overlay{ov}
	l.net.mu.RLock()
	for _, no := range l.net.nets {
		if no.ov != nil {
			ovs = append(ovs, no.ov)
		}
	}
	l.net.mu.RUnlock()
	for _, o := range ovs {
		switch repaired, err := o.RepairGuard(); {
		case err != nil:
			l.log.Warn("anti-spoofing table: check or repair failed; will retry", "err", err)
		case repaired:
			l.log.Warn("anti-spoofing table removed by someone else; made again")
		}
	}
}

func (l *Loop) syncNetworks(ctx context.Context, ns netplan.State) {
	self, c := ns.Node(l.cfg.NodeID), ns.Cluster
	if self == nil || self.Subnet == "" || c == nil {
		return
	}
	nodeSub, err1 := netip.ParsePrefix(self.Subnet)
	cluster, err2 := netip.ParsePrefix(c.ClusterCIDR)
	underlay, err3 := netip.ParseAddr(l.cfg.AdvertiseAddr)
	if err := errors.Join(err1, err2, err3); err != nil {
		return
	}
	nodes, networks := ns.Nodes, ns.Networks
	encrypted := netplan.EncryptedNetworks(networks)
	wg := l.syncWireGuard(self, nodes, cluster, nodeSub, encrypted, c.LastRemovalIndex, ns.Index)
	want := map[string]bool{}
	for _, n := range networks {
		if n.Name == api.DefaultNetwork {
			continue
		}
		want[n.ID] = true
		subnet, err := netip.ParsePrefix(n.Subnet)
		if err != nil {
			continue
		}
		l.net.mu.RLock()
		no := l.net.nets[n.Name]
		l.net.mu.RUnlock()
		if no != nil && no.net.ID != n.ID {
			l.removeNetwork(no) // same name, another network: rebuild
			no = nil
		}
		share, shareErr := api.NetworkShare(n, cluster, l.cfg.NodeID, nodeSub)
		if no != nil && (shareErr != nil || share != no.share) {
			// The node's allocated share went (or, were it ever handed
			// out anew, moved): its bridge must not keep answering for
			// addresses that are now another node's.
			l.log.Warn("network: this node's share changed; rebuilding", "network", n.Name, "was", no.share.String(), "now", share.String(), "err", shareErr)
			l.removeNetwork(no)
			no = nil
		}
		var tunnel netip.Prefix // valid for an encrypted network
		// A plain network keeps a departed node while it drains
		// (netplan's departed.go); an encrypted one drops it at once,
		// with its WireGuard peer.
		peerNodes := ns.DataPathNodes()
		if netplan.Routed(*n) {
			if wg == nil {
				continue // not before WireGuard is up: never in clear
			}
			tunnel = netip.MustParsePrefix(wireguard.DefaultTunnelCIDR)
			peerNodes = nodes
		}
		if no == nil {
			if errors.Is(shareErr, api.ErrNoShare) {
				// Allocated shares: this node gets one with its first
				// task or container on the network; until then it
				// holds nothing of it.
				continue
			}
			if shareErr != nil {
				l.log.Warn("network: no share for this node", "network", n.Name, "err", shareErr)
				continue
			}
			cfg := overlay.DefaultConfig()
			cfg.NodeID = l.cfg.NodeID
			cfg.Logger = l.log.With("sub", "overlay", "network", n.Name)
			cfg.StateDir = filepath.Join(l.cfg.ClusterDir, "overlay", "net-"+n.ID)
			cfg.UnderlayIP, cfg.Subnet, cfg.ClusterCIDR = underlay, share, subnet
			cfg.BridgeName, cfg.VXLANName = netplan.BridgeName(*n), netplan.VXLANName(*n)
			cfg.VethPrefix = netplan.VethPrefix(*n)
			cfg.VNI = n.VNI
			if netplan.Routed(*n) {
				// Routed through WireGuard (no VXLAN): the peers' shares
				// go straight into the TUN device, whose MTU the bridge
				// and veths take.
				cfg.UnderlayIP, cfg.Routed = wg.TunnelIP(), true
			}
			peers := netplan.NetworkPeers(peerNodes, l.cfg.NodeID, n, cluster, tunnel)
			ov, peerErr, err := openOverlay(ctx, cfg, peers)
			if err != nil {
				l.log.Warn("network overlay setup failed; retrying", "network", n.Name, "err", err)
				continue
			}
			if peerErr != nil {
				l.log.Warn("network overlay peers", "network", n.Name, "err", peerErr)
				peers = nil // set again on the next pass
			}
			rctx, cancel := context.WithCancel(ctx)
			no = &netOverlay{net: *n, ov: ov, subnet: subnet, share: share, peers: peers, cancel: cancel, done: make(chan struct{})}
			go func() {
				defer close(no.done)
				if err := ov.Run(rctx); err != nil {
					l.log.Warn("network overlay watcher stopped", "network", n.Name, "err", err)
				}
			}()
			l.net.mu.Lock()
			if l.net.nets == nil {
				l.net.nets = map[string]*netOverlay{}
			}
			l.net.nets[n.Name] = no
			l.net.mu.Unlock()
			l.log.Info("network up", "network", n.Name, "vni", n.VNI, "share", share.String(), "bridge", cfg.BridgeName)
		}
		if peers := netplan.NetworkPeers(peerNodes, l.cfg.NodeID, n, cluster, tunnel); !reflect.DeepEqual(peers, no.peers) {
			if err := no.ov.SetPeers(peers); err != nil {
				l.log.Warn("network overlay peers", "network", n.Name, "err", err)
			} else {
				no.peers = peers
			}
		}
	}
	l.net.mu.RLock()
	var gone []*netOverlay
	for _, no := range l.net.nets {
		if !want[no.net.ID] {
			gone = append(gone, no)
		}
	}
	l.net.mu.RUnlock()
	for _, no := range gone {
		l.removeNetwork(no)
	}
}

// removeNetwork tears down the overlay of a network that left the state.
func (l *Loop) removeNetwork(no *netOverlay) {
	l.net.mu.Lock()
	if l.net.nets[no.net.Name] == no {
		delete(l.net.nets, no.net.Name)
	}
	l.net.mu.Unlock()
	no.cancel()
	<-no.done
	if err := no.ov.Teardown(); err != nil {
		l.log.Warn("network teardown", "network", no.net.Name, "err", err)
	}
	_ = no.ov.Close()
	l.log.Info("network removed", "network", no.net.Name)
}

// closeNetworks stops the watchers of the non-default overlays and releases
// them; their devices stay (containers keep their network across agent
// restarts).
func (l *Loop) closeNetworks() {
	l.net.mu.Lock()
	nets := l.net.nets
	l.net.nets = nil
	l.net.mu.Unlock()
	for _, no := range nets {
		no.cancel()
		<-no.done
		_ = no.ov.Close()
	}
	// The WireGuard device process runs on (the next agent adopts it):
	// the encrypted networks keep crossing hosts meanwhile.
	if l.wg != nil {
		_ = l.wg.Release()
		l.wg, l.wgPeers, l.wgKeys = nil, nil, nil
	}
}
