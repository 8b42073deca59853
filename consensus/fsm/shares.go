package fsm

// Allocated node shares. A network whose subnet is too small for
// index-derived shares (api.NeedsAllocatedShares: the lower half cannot
// hold a /28 for each of the cluster's possible /24s) has its shares
// handed out here instead (api.Network.ShareBits, Shares): a node gets the
// lowest free share (api.FreeShare) when a task on the network is first
// assigned to it (UpsertTasks), or when a container on it joins the
// network (ClaimNetworkShare), and keeps it until the node is removed
// (RemoveNode). The choice depends only on the stored shares, so every
// replica picks the same one. When every share is held, the assignment is
// refused: the scheduler places no task of the network on a node without
// a share while none is free (placement.ShareFilter), so a refusal here
// means a plan raced a claim, and the next plan places the task elsewhere.

import (
	"fmt"
	"net/netip"
	"sort"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

// noAddressSpace is the phrase of a refusal for want of a free share
// (wrapped with consensus.ErrInUse).
const noAddressSpace = "no address space left"

// ensureShare gives node nodeID a share of allocated-share network n
// unless it holds one, and stores the network. Networks with index-derived
// shares are left alone.
func ensureShare(w *consensus.WriteTxn, n *api.Network, nodeID string) error {
	if n.ShareBits == 0 {
		return nil
	}
	if _, ok := n.Shares[nodeID]; ok {
		return nil
	}
	subnet, err := netip.ParsePrefix(n.Subnet)
	if err != nil {
		return fmt.Errorf("network %s: stored subnet %q: %w", n.Name, n.Subnet, consensus.ErrInvalid)
	}
	share, ok := api.FreeShare(subnet, n.ShareBits, n.Shares)
	if !ok {
		return fmt.Errorf("network %s: %s: all %d node shares (/%d) are held by other nodes: %w",
			n.Name, noAddressSpace, len(api.ShareSlots(subnet, n.ShareBits)), n.ShareBits, consensus.ErrInUse)
	}
	nn := consensus.CloneNetwork(n)
	if nn.Shares == nil {
		nn.Shares = map[string]string{}
	}
	nn.Shares[nodeID] = share.String()
	nn.Version = w.Index()
	return w.Insert(consensus.TableNetworks, nn)
}

// assignTaskShares gives the node of each task placed to run (a node,
// desired state running, and a state past new: a global service's pending
// task names its node before it is placed there) a share of each
// allocated-share network of the task's spec. Tasks are handled in
// command order, networks in spec order: deterministic.
func assignTaskShares(w *consensus.WriteTxn, tasks []api.Task) error {
	for i := range tasks {
		t := &tasks[i]
		if t.NodeID == "" || t.DesiredState != api.TaskRunning || t.State == "" || t.State == api.TaskNew || api.TaskTerminal(t.State) {
			continue
		}
		for _, name := range api.SpecNetworks(t.Spec) {
			if name == api.DefaultNetwork {
				continue
			}
			n := w.Network(name)
			if n == nil || n.ShareBits == 0 {
				continue
			}
			if err := ensureShare(w, n, t.NodeID); err != nil {
				return fmt.Errorf("task %s on node %s: %w", t.ID, api.ShortID(t.NodeID), err)
			}
		}
	}
	return nil
}

func applyClaimNetworkShare(w *consensus.WriteTxn, c command.ClaimNetworkShare) (any, error) {
	n := consensus.First[api.Network](w, consensus.TableNetworks, consensus.IndexID, c.Network)
	if n == nil {
		return nil, fmt.Errorf("claim share of network %s: %w", c.Network, consensus.ErrNotFound)
	}
	if consensus.First[api.Node](w, consensus.TableNodes, consensus.IndexID, c.NodeID) == nil {
		return nil, fmt.Errorf("claim share of network %s: node %s: %w", n.Name, c.NodeID, consensus.ErrNotFound)
	}
	if n.ShareBits == 0 {
		return nil, nil // index-derived: every node has its share
	}
	if !n.Attachable {
		// Only containers of `shoal run` claim, and they join only
		// attachable networks; a service's tasks get theirs when placed.
		return nil, fmt.Errorf("claim share of network %s: the network is not attachable: %w", n.Name, consensus.ErrInvalid)
	}
	if err := ensureShare(w, n, c.NodeID); err != nil {
		return nil, fmt.Errorf("claim share for node %s: %w", api.ShortID(c.NodeID), err)
	}
	return nil, nil
}

// releaseShares takes the shares of removed node id back from every
// network, in ID order.
func releaseShares(w *consensus.WriteTxn, id string) error {
	nets := consensus.All[api.Network](w, consensus.TableNetworks, consensus.IndexID)
	sort.Slice(nets, func(i, j int) bool { return nets[i].ID < nets[j].ID })
	for _, n := range nets {
		if _, ok := n.Shares[id]; !ok {
			continue
		}
		nn := consensus.CloneNetwork(n)
		delete(nn.Shares, id)
		nn.Version = w.Index()
		if err := w.Insert(consensus.TableNetworks, nn); err != nil {
			return err
		}
	}
	return nil
}

// checkNetworkShares checks the share layout of network n being created
// with subnet p in a cluster whose CIDR is cluster: a subnet too small for
// index-derived shares must come with ShareBits api.AllocatedShareBits
// (set by the agent that proposes it, so that the command gate sees it),
// any other with none, and no shares are given at creation.
func checkNetworkShares(n *api.Network, p, cluster netip.Prefix) error {
	if len(n.Shares) > 0 {
		return fmt.Errorf("create network %s: shares are handed out as nodes need them, not given at creation: %w", n.Name, consensus.ErrInvalid)
	}
	if len(n.RunContainers) > 0 {
		return fmt.Errorf("create network %s: run containers are recorded by their nodes, not given at creation: %w", n.Name, consensus.ErrInvalid)
	}
	if p.Bits() > api.MaxAllocatedNetworkBits {
		return fmt.Errorf("create network %s: subnet %s is too small: it must be a /%d or larger (its lower half holds the nodes' /%d shares, its upper half the VIPs): %w",
			n.Name, p, api.MaxAllocatedNetworkBits, api.AllocatedShareBits, consensus.ErrInvalid)
	}
	small := api.NeedsAllocatedShares(p, cluster)
	switch {
	case small && n.ShareBits == 0:
		return fmt.Errorf("create network %s: subnet %s is smaller than a /%d, so its node shares must be allocated (share_bits %d), which the proposing agent did not ask for: %w",
			n.Name, p, api.MaxNetworkBits(cluster.Bits()), api.AllocatedShareBits, consensus.ErrInvalid)
	case small && n.ShareBits != api.AllocatedShareBits:
		return fmt.Errorf("create network %s: share_bits %d (want %d): %w", n.Name, n.ShareBits, api.AllocatedShareBits, consensus.ErrInvalid)
	case !small && n.ShareBits != 0:
		return fmt.Errorf("create network %s: subnet %s is large enough for index-derived node shares: share_bits must be 0: %w", n.Name, p, consensus.ErrInvalid)
	}
	return nil
}
