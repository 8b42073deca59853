package snapshotfile

import (
	"maps"
	"net/netip"
	"slices"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
)

// restoreShares sets the allocated node shares (api.Network.Shares) of the
// restored networks. A share is where a node's containers on the network
// have their addresses, so what the nodes run wins over what the file
// says: a network the cluster holds now (same ID and share size) keeps its
// current shares, another one the file's; either way only members keep
// one (a share of a node the restore drops would never be released).
// Then every member that the kept tasks run a task of the network on and
// that holds no share gets the lowest free one, in task order, as the
// state machine does when it assigns a task (consensus/fsm shares.go);
// when none is free the node goes without, and its agent refuses the task
// (the scheduler places its replacement where a share is).
func restoreShares(d *consensus.SnapshotData, cur *consensus.Store, isMember map[string]bool) {
	byName := map[string]*api.Network{}
	for _, n := range d.Networks {
		if n.ShareBits == 0 {
			n.Shares = nil
			continue
		}
		byName[n.Name] = n
		src := n.Shares
		if now, err := cur.ResolveNetwork(n.ID); err == nil && now.ID == n.ID && now.ShareBits == n.ShareBits {
			src = now.Shares
		}
		kept := map[string]string{}
		for _, id := range slices.Sorted(maps.Keys(src)) {
			if isMember[id] {
				kept[id] = src[id]
			}
		}
		n.Shares = kept
	}
	if len(byName) == 0 {
		return
	}
	for _, t := range d.Tasks {
		if t.NodeID == "" || t.DesiredState != api.TaskRunning || t.State == "" || t.State == api.TaskNew || api.TaskTerminal(t.State) {
			continue
		}
		for _, name := range api.SpecNetworks(t.Spec) {
			n := byName[name]
			if n == nil {
				continue
			}
			if _, ok := n.Shares[t.NodeID]; ok {
				continue
			}
			subnet, err := netip.ParsePrefix(n.Subnet)
			if err != nil {
				continue
			}
			if share, ok := api.FreeShare(subnet, n.ShareBits, n.Shares); ok {
				n.Shares[t.NodeID] = share.String()
			}
		}
	}
}
