package node

// The node's container networks. Once the leader has given this node its
// /24 (recorded in Raft at join), the overlay of the default network brings
// up the bridge and the VXLAN device, and keeps one route, neighbour and
// FDB entry per peer in step with the state. Every other network (a Raft
// object, consensus/network.go) gets an overlay of its own on every node:
// its own VNI, bridge and VXLAN device, and as node subnet this node's
// share of the network's subnet (api.NodeShare, derived from the index of
// the node's /24, so no allocation is needed). A network removed from the
// state is torn down.
//
// Encrypted networks (overlay/wireguard.go) are routed through WireGuard:
// while the state holds one, the node runs a WireGuard device, publishes
// its public key in its own node record (a node-owned field), and
// configures as WireGuard peers the nodes whose keys it knows, each allowed
// its tunnel address and its shares of the encrypted networks. An
// encrypted network's overlay is a bridge whose peers' shares are routed
// straight into the WireGuard device (overlay.Config.Routed), no VXLAN. A
// node whose key is not known yet (or that was removed) is no WireGuard
// peer, so traffic to it is dropped by WireGuard, never sent in clear, and
// its handshakes go unanswered. Every removal makes the remaining nodes
// rotate their keys (wgrotate.go, netplan.WGRotationNext).
//
// The runtime plugs containers in through netAttacher, which exists from
// agent start: before the node is in a cluster (or before its subnet is
// known) containers get loopback only, as `docker run --network none`
// would. A task's container joins the networks of its spec, one interface
// each (eth0, eth1, ...); the first carries the default route, the others
// route their network's subnet (and, for the default network, the VIP
// range). The reconciler hands the network list over in the context of
// RunContainer (withNetworks): the runtime's Network interface knows only
// the container ID.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/netplan"
	"github.com/shoal-org/shoal/overlay"
)

// netsKey carries a container's network names in a context.
type netsKey struct{}

// withNetworks returns ctx carrying the networks a container must join, in
// order (the first is its primary network).
func withNetworks(ctx context.Context, names []string) context.Context {
	return context.WithValue(ctx, netsKey{}, names)
}

func networksOf(ctx context.Context) []string {
	if v, ok := ctx.Value(netsKey{}).([]string); ok && len(v) > 0 {
		return v
	}
	return []string{api.DefaultNetwork}
}

// errNetworkDown: a container names a network whose overlay is not up on
// this node (yet).
var errNetworkDown = errors.New("network not set up on this node")

// netOverlay is one non-default network's overlay on this node.
type netOverlay struct {
	net    api.Network
	ov     *overlay.Overlay
	subnet netip.Prefix // the whole network
	peers  []overlay.Peer
	cancel context.CancelFunc
	done   chan struct{}
}

// netAttacher implements runtime.Network over the overlays of the moment.
type netAttacher struct {
	mu sync.RWMutex
	ov *overlay.Overlay // the default network
	// defaultRoutes are the routes of a container whose default network
	// is not its first: the cluster CIDR and the VIP range.
	defaultRoutes []netip.Prefix
	nets          map[string]*netOverlay // by network name

	// WireGuard of the encrypted networks, owned by networkLoop's
	// goroutine (syncNetworks, closeNetworks): nil while no encrypted
	// network exists.
	wg           *overlay.WireGuard
	wgPeers      []overlay.WGPeer
	wgKeys       *wgKeys     // the device's keys on disk (wgrotate.go)
	wgPublishing atomic.Bool // a write of this node's public key is under way
}

func (n *netAttacher) set(ov *overlay.Overlay) {
	n.mu.Lock()
	n.ov = ov
	n.mu.Unlock()
}

func (n *netAttacher) get() *overlay.Overlay {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.ov
}

// lookup returns the overlay of a network and the routes a non-primary
// interface on it gets.
func (n *netAttacher) lookup(name string) (*overlay.Overlay, []netip.Prefix) {
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

// all returns every overlay (default first), by network name.
func (n *netAttacher) all() map[string]*overlay.Overlay {
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

// Attach plugs the container into the networks named in ctx (withNetworks;
// the default network otherwise) and returns its address on the first. A
// container on the default network only gets none while the overlay is not
// up; any other network that is not up is an error (the task is rejected
// and replaced).
func (n *netAttacher) Attach(ctx context.Context, containerID, netnsPath string) (string, error) {
	names := networksOf(ctx)
	var first string
	for i, name := range names {
		ov, routes := n.lookup(name)
		if ov == nil {
			if len(names) == 1 && name == api.DefaultNetwork {
				return "", nil
			}
			err := fmt.Errorf("attach container to network %s: %w", name, errNetworkDown)
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
func (n *netAttacher) Detach(ctx context.Context, containerID, netnsPath string) error {
	var errs []error
	for name, ov := range n.all() {
		if err := ov.Detach(ctx, containerID, netnsPath); err != nil {
			errs = append(errs, fmt.Errorf("network %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// ips returns the container's address on each network it is attached to.
func (n *netAttacher) ips(containerID string) map[string]string {
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

// ready reports whether containers started now get an overlay address.
func (n *netAttacher) ready() bool { return n.get() != nil }

// networkLoop waits for this node's subnet, sets the overlay up, then
// keeps its peers, the other networks, the load balancer and DNS in step
// with the state and gossip until ctx ends.
func (a *Agent) networkLoop(ctx context.Context, cl *cluster) {
	ch, cancel := cl.store.Subscribe()
	defer cancel()
	memberCh, cancelMembers := cl.members.Subscribe()
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
	defer a.closeNetworks()
	retry := time.NewTicker(2 * time.Second)
	defer retry.Stop()
	joinFloor := readIndexFile(filepath.Join(clusterDir(a.cfg.DataDir), joinIndexFile))
	for {
		// A replica replaying the log toward the join floor may still hold
		// this node's record of a previous membership, with another subnet:
		// an overlay built from it is never rebuilt (revoke.go).
		if ov == nil && replicaCurrent(cl.store.Index(), joinFloor) {
			ov = a.setupOverlay(ctx, cl)
			if ov != nil {
				a.net.set(ov)
				runWG.Add(1)
				go func() {
					defer runWG.Done()
					if err := ov.Run(ctx); err != nil {
						a.log.Warn("overlay watcher stopped", "err", err)
					}
				}()
			}
		}
		if ov != nil {
			// One view of the state for the whole pass (netplan.Read).
			ns := netplan.Read(cl.store)
			// Peers change rarely; the overlay repairs drift by itself.
			if peers := netplan.OverlayPeers(ns, a.id.NodeID); !reflect.DeepEqual(peers, lastPeers) {
				if err := ov.SetPeers(peers); err != nil {
					a.obs.m().OverlaySyncErrors.Inc()
					a.log.Warn("overlay peers", "err", err)
				} else {
					lastPeers = peers
				}
			}
			a.syncNetworks(ctx, cl, ns)
			if traffic == nil {
				traffic = a.startTraffic(ctx, cl, ov.BridgeIP())
			}
			if traffic != nil {
				traffic.sync(a, cl, ns)
			}
		}
		if traffic == nil {
			// No load balancer here: nothing on this node sends traffic
			// to tasks, so nothing to wait for (drainStops).
			cl.members.SetLBIndex(cl.store.Index())
		}
		select {
		case <-ctx.Done():
			return
		case <-memberCh: // a dead node's backends go at once
			continue
		case <-ch:
		case <-retry.C:
			continue // a retry is no burst: no need to coalesce (one wake-up, not two)
		}
		// State changes come in bursts (task reports): coalesce them.
		select {
		case <-ctx.Done():
			return
		case <-memberCh:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// setupOverlay returns a ready overlay, or nil while the subnet is unknown
// or the setup failed (the caller retries).
func (a *Agent) setupOverlay(ctx context.Context, cl *cluster) *overlay.Overlay {
	self, err := cl.store.Node(a.id.NodeID)
	if err != nil || self.Subnet == "" {
		return nil
	}
	c := cl.store.Cluster()
	if c == nil {
		return nil
	}
	cfg := overlay.DefaultConfig()
	cfg.NodeID = a.id.NodeID
	cfg.Logger = a.log.With("sub", "overlay")
	cfg.StateDir = filepath.Join(clusterDir(a.cfg.DataDir), "overlay")
	if cfg.UnderlayIP, err = netip.ParseAddr(a.cfg.AdvertiseAddr); err != nil {
		a.log.Error("overlay: advertise address", "err", err)
		return nil
	}
	if cfg.Subnet, err = netip.ParsePrefix(self.Subnet); err != nil {
		a.log.Error("overlay: node subnet", "subnet", self.Subnet, "err", err)
		return nil
	}
	if c.ClusterCIDR != "" {
		if cfg.ClusterCIDR, err = netip.ParsePrefix(c.ClusterCIDR); err != nil {
			a.log.Error("overlay: cluster CIDR", "cidr", c.ClusterCIDR, "err", err)
			return nil
		}
	}
	routes := []netip.Prefix{cfg.ClusterCIDR}
	if p, err := netip.ParsePrefix(c.VIPCIDR); err == nil {
		routes = append(routes, p)
	}
	ov, err := overlay.New(cfg)
	if err != nil {
		a.log.Error("overlay config", "err", err)
		return nil
	}
	if err := ov.Setup(ctx); err != nil {
		a.log.Warn("overlay setup failed; retrying", "err", err)
		return nil
	}
	a.net.mu.Lock()
	a.net.defaultRoutes = routes
	a.net.mu.Unlock()
	a.log.Info("overlay up", "subnet", self.Subnet, "bridge_ip", ov.BridgeIP().String())
	return ov
}

// syncWireGuard runs WireGuard while the state holds an encrypted network
// (and stops it when none is left), publishes this node's public key and
// keeps the peers in step. It returns the device, or nil while it is not
// up (the caller skips the encrypted networks until it is).
//
// It also takes this node's key rotation one step further (wgrotate.go):
// removalIndex is the replica's last removal, index what the replica has
// applied (the epoch of a key made now).
func (a *Agent) syncWireGuard(cl *cluster, self *api.Node, nodes []*api.Node, cluster, nodeSub netip.Prefix, encrypted []netip.Prefix, removalIndex, index uint64) *overlay.WireGuard {
	n := &a.net
	if len(encrypted) == 0 {
		if n.wg != nil {
			_ = n.wg.Close()
			n.wg, n.wgPeers, n.wgKeys = nil, nil, nil
			a.log.Info("wireguard stopped: no encrypted network left")
		}
		return nil
	}
	if n.wg != nil {
		select {
		case <-n.wg.Done(): // the device went away: start it again
			a.log.Warn("wireguard device stopped; restarting it")
			_ = n.wg.Close()
			n.wg, n.wgPeers, n.wgKeys = nil, nil, nil
		default:
		}
	}
	if n.wg == nil {
		cfg := overlay.DefaultWireGuardConfig()
		cfg.Logger = a.log.With("sub", "wireguard")
		cfg.KeyFile = filepath.Join(clusterDir(a.cfg.DataDir), "wireguard", "private.key")
		tip, err := overlay.TunnelAddr(cfg.TunnelCIDR, cluster, nodeSub)
		if err != nil {
			a.log.Error("wireguard: tunnel address", "err", err)
			return nil
		}
		cfg.TunnelIP = tip
		// The TUN's MTU follows the underlay link (overlay.WireGuardConfig).
		cfg.UnderlayIP, _ = netip.ParseAddr(a.cfg.AdvertiseAddr)
		wg, err := overlay.NewWireGuard(cfg)
		if err != nil {
			a.log.Warn("wireguard: start failed; retrying", "err", err)
			return nil
		}
		n.wg = wg
	}
	if n.wgKeys == nil {
		// The device loaded (or made) private.key; read it with its epoch
		// and a next key left by a rotation under way.
		dir := filepath.Join(clusterDir(a.cfg.DataDir), "wireguard")
		cur, err := overlay.LoadKeyPair(filepath.Join(dir, wgKeyFile))
		if err == nil {
			n.wgKeys, err = loadWGKeys(dir, cur, index)
		}
		if err != nil {
			a.log.Warn("wireguard: reading the keys failed; retrying", "err", err)
			return n.wg
		}
	}
	tunnelCIDR := netip.MustParsePrefix(overlay.DefaultTunnelCIDR)
	for range 3 { // at most generate, switch, publish
		cur, pending := n.wgKeys.in()
		step := netplan.WGRotationNext(netplan.WGRotationIn{RemovalIndex: removalIndex, Self: *self, Nodes: nodes, Current: cur, Pending: pending})
		if step.Generate > 0 {
			if err := n.wgKeys.generate(step.Generate); err != nil {
				a.log.Warn("wireguard: making the next key failed; retrying", "err", err)
				return n.wg
			}
			a.log.Info("wireguard: key rotation started", "removal_index", step.Generate, "next_public_key", n.wgKeys.next.PublicKey())
			continue
		}
		if step.Switch {
			peers := netplan.WireGuardPeers(nodes, a.id.NodeID, cluster, tunnelCIDR, overlay.DefaultWireGuardPort, encrypted)
			if err := n.wg.SwitchKey(*n.wgKeys.next, peers); err != nil && !errors.Is(err, overlay.ErrPartial) {
				a.log.Warn("wireguard: switching to the next key failed; retrying", "err", err)
				n.wgPeers = nil
				return n.wg
			}
			n.wgPeers = peers
			if err := n.wgKeys.promote(); err != nil {
				a.log.Warn("wireguard: keeping the next key failed; retrying", "err", err)
				return n.wg
			}
			continue
		}
		if step.Publish != nil && n.wgPublishing.CompareAndSwap(false, true) {
			// Through the leader like any report of a node about itself;
			// a stale copy of the record is refused there and retried on
			// the next pass. In a goroutine: the loop must not wait for
			// quorum.
			rec := *step.Publish
			go func() {
				defer n.wgPublishing.Store(false)
				if _, err := a.write(context.Background(), &consensus.UpsertNode{Node: rec}); err != nil {
					a.log.Warn("wireguard: publishing the public key failed; retrying", "err", err)
				}
			}()
		}
		break
	}
	peers := netplan.WireGuardPeers(nodes, a.id.NodeID, cluster, tunnelCIDR, overlay.DefaultWireGuardPort, encrypted)
	if !reflect.DeepEqual(peers, n.wgPeers) {
		if err := n.wg.SetPeers(peers); err != nil {
			a.log.Warn("wireguard peers", "err", err)
		} else {
			n.wgPeers = peers
		}
	}
	return n.wg
}

// syncNetworks brings up the overlays of networks new in the state, keeps
// their peers in step and tears down those of removed networks. Failures
// are logged and retried on the next pass.
func (a *Agent) syncNetworks(ctx context.Context, cl *cluster, ns netplan.State) {
	self, c := ns.Node(a.id.NodeID), ns.Cluster
	if self == nil || self.Subnet == "" || c == nil {
		return
	}
	nodeSub, err1 := netip.ParsePrefix(self.Subnet)
	cluster, err2 := netip.ParsePrefix(c.ClusterCIDR)
	underlay, err3 := netip.ParseAddr(a.cfg.AdvertiseAddr)
	if err := errors.Join(err1, err2, err3); err != nil {
		return
	}
	nodes, networks := ns.Nodes, ns.Networks
	encrypted := netplan.EncryptedSubnets(networks)
	wg := a.syncWireGuard(cl, self, nodes, cluster, nodeSub, encrypted, c.LastRemovalIndex, ns.Index)
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
		a.net.mu.RLock()
		no := a.net.nets[n.Name]
		a.net.mu.RUnlock()
		if no != nil && no.net.ID != n.ID {
			a.removeNetwork(no) // same name, another network: rebuild
			no = nil
		}
		var tunnel netip.Prefix // valid for an encrypted network
		if netplan.Routed(*n) {
			if wg == nil {
				continue // not before WireGuard is up: never in clear
			}
			tunnel = netip.MustParsePrefix(overlay.DefaultTunnelCIDR)
		}
		if no == nil {
			share, err := api.NodeShare(subnet, cluster, nodeSub)
			if err != nil {
				a.log.Warn("network: no share for this node", "network", n.Name, "err", err)
				continue
			}
			cfg := overlay.DefaultConfig()
			cfg.NodeID = a.id.NodeID
			cfg.Logger = a.log.With("sub", "overlay", "network", n.Name)
			cfg.StateDir = filepath.Join(clusterDir(a.cfg.DataDir), "overlay", "net-"+n.ID)
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
			ov, err := overlay.New(cfg)
			if err != nil {
				a.log.Error("network overlay config", "network", n.Name, "err", err)
				continue
			}
			if err := ov.Setup(ctx); err != nil {
				a.log.Warn("network overlay setup failed; retrying", "network", n.Name, "err", err)
				_ = ov.Close()
				continue
			}
			rctx, cancel := context.WithCancel(ctx)
			no = &netOverlay{net: *n, ov: ov, subnet: subnet, cancel: cancel, done: make(chan struct{})}
			go func() {
				defer close(no.done)
				if err := ov.Run(rctx); err != nil {
					a.log.Warn("network overlay watcher stopped", "network", n.Name, "err", err)
				}
			}()
			a.net.mu.Lock()
			if a.net.nets == nil {
				a.net.nets = map[string]*netOverlay{}
			}
			a.net.nets[n.Name] = no
			a.net.mu.Unlock()
			a.log.Info("network up", "network", n.Name, "vni", n.VNI, "share", share.String(), "bridge", cfg.BridgeName)
		}
		if peers := netplan.NetworkPeers(nodes, a.id.NodeID, subnet, cluster, tunnel); !reflect.DeepEqual(peers, no.peers) {
			if err := no.ov.SetPeers(peers); err != nil {
				a.log.Warn("network overlay peers", "network", n.Name, "err", err)
			} else {
				no.peers = peers
			}
		}
	}
	a.net.mu.RLock()
	var gone []*netOverlay
	for _, no := range a.net.nets {
		if !want[no.net.ID] {
			gone = append(gone, no)
		}
	}
	a.net.mu.RUnlock()
	for _, no := range gone {
		a.removeNetwork(no)
	}
}

// removeNetwork tears down the overlay of a network that left the state.
func (a *Agent) removeNetwork(no *netOverlay) {
	a.net.mu.Lock()
	if a.net.nets[no.net.Name] == no {
		delete(a.net.nets, no.net.Name)
	}
	a.net.mu.Unlock()
	no.cancel()
	<-no.done
	if err := no.ov.Teardown(); err != nil {
		a.log.Warn("network teardown", "network", no.net.Name, "err", err)
	}
	_ = no.ov.Close()
	a.log.Info("network removed", "network", no.net.Name)
}

// closeNetworks stops the watchers of the non-default overlays and releases
// them; their devices stay (containers keep their network across agent
// restarts).
func (a *Agent) closeNetworks() {
	a.net.mu.Lock()
	nets := a.net.nets
	a.net.nets = nil
	a.net.mu.Unlock()
	for _, no := range nets {
		no.cancel()
		<-no.done
		_ = no.ov.Close()
	}
	// The WireGuard device process runs on (the next agent adopts it):
	// the encrypted networks keep crossing hosts meanwhile.
	if a.net.wg != nil {
		_ = a.net.wg.Release()
		a.net.wg, a.net.wgPeers, a.net.wgKeys = nil, nil, nil
	}
}
