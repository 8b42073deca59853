package node

// The node's container network: once the leader has given this node its
// /24 (recorded in Raft at join), the overlay brings up the bridge and the
// VXLAN device, and keeps one route, neighbour and FDB entry per peer in
// step with the state. The runtime plugs containers in through netAttacher,
// which exists from agent start: before the node is in a cluster (or before
// its subnet is known) containers get loopback only, as `docker run
// --network none` would.

import (
	"context"
	"net/netip"
	"path/filepath"
	"reflect"
	"sync"
	"time"

	"github.com/shoal-org/shoal/overlay"
)

// netAttacher implements runtime.Network over the overlay of the moment.
type netAttacher struct {
	mu sync.RWMutex
	ov *overlay.Overlay
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

// Attach gives the container an address on this node's subnet, or none
// while the overlay is not up.
func (n *netAttacher) Attach(ctx context.Context, containerID, netnsPath string) (string, error) {
	ov := n.get()
	if ov == nil {
		return "", nil
	}
	return ov.Attach(ctx, containerID, netnsPath)
}

// Detach releases the container's address; unknown containers are fine.
func (n *netAttacher) Detach(ctx context.Context, containerID, netnsPath string) error {
	ov := n.get()
	if ov == nil {
		return nil
	}
	return ov.Detach(ctx, containerID, netnsPath)
}

// ready reports whether containers started now get an overlay address.
func (n *netAttacher) ready() bool { return n.get() != nil }

// networkLoop waits for this node's subnet, sets the overlay up, then
// keeps its peers, the load balancer and DNS in step with the state and
// gossip until ctx ends.
func (a *Agent) networkLoop(ctx context.Context, cl *cluster) {
	ch, cancel := cl.store.Subscribe()
	defer cancel()
	memberCh, cancelMembers := cl.members.subscribe()
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
	retry := time.NewTicker(2 * time.Second)
	defer retry.Stop()
	for {
		if ov == nil {
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
			// Peers change rarely; the overlay repairs drift by itself.
			if peers := a.overlayPeers(cl); !reflect.DeepEqual(peers, lastPeers) {
				if err := ov.SetPeers(peers); err != nil {
					a.obs.m().overlaySyncErrors.Inc()
					a.log.Warn("overlay peers", "err", err)
				} else {
					lastPeers = peers
				}
			}
			if traffic == nil {
				traffic = a.startTraffic(ctx, cl, ov.BridgeIP())
			}
			if traffic != nil {
				traffic.sync(a, cl)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-memberCh: // a dead node's backends go at once
			continue
		case <-ch:
		case <-retry.C:
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
	ov, err := overlay.New(cfg)
	if err != nil {
		a.log.Error("overlay config", "err", err)
		return nil
	}
	if err := ov.Setup(ctx); err != nil {
		a.log.Warn("overlay setup failed; retrying", "err", err)
		return nil
	}
	a.log.Info("overlay up", "subnet", self.Subnet, "bridge_ip", ov.BridgeIP().String())
	return ov
}

// overlayPeers lists every other node of the state that has a subnet.
func (a *Agent) overlayPeers(cl *cluster) []overlay.Peer {
	var peers []overlay.Peer
	for _, n := range cl.store.Nodes() {
		if n.ID == a.id.NodeID || n.Subnet == "" {
			continue
		}
		sub, err1 := netip.ParsePrefix(n.Subnet)
		ip, err2 := netip.ParseAddr(n.Addr)
		if err1 != nil || err2 != nil {
			continue
		}
		peers = append(peers, overlay.Peer{NodeID: n.ID, Subnet: sub, UnderlayIP: ip})
	}
	return peers
}
