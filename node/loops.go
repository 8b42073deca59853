package node

// The wiring of the node-side loops that live in their own packages: the
// reconciler (node/reconciler), the network loop (node/netloop), the events
// loop (node/events) and the usage sampling of autoscaled tasks
// (node/autoscale). Each gets its dependencies here, from the
// agent and the cluster instance; none of them imports node.

import (
	"context"
	"path/filepath"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/autoscale"
	"github.com/shoal-org/shoal/node/events"
	"github.com/shoal-org/shoal/node/imagedist"
	"github.com/shoal-org/shoal/node/netloop"
	"github.com/shoal-org/shoal/node/reconciler"
	"github.com/shoal-org/shoal/node/revocation"
	"github.com/shoal-org/shoal/overlay"
)

// netAttacher is the runtime's network (netloop.Attacher) as the agent
// holds it for its whole life; get names its default overlay.
type netAttacher struct{ netloop.Attacher }

func (n *netAttacher) get() *overlay.Overlay { return n.Default() }

// writeCmd is the agent's write as the loops' status sink.
func (a *Agent) writeCmd(ctx context.Context, cmd command.Command) error {
	_, err := a.write(ctx, cmd)
	return err
}

// newReconciler makes the reconciler of cluster instance cl.
func (a *Agent) newReconciler(cl *cluster) *reconciler.Reconciler {
	files := a.taskFiles(cl)
	return reconciler.New(reconciler.Config{
		NodeID:  a.id.NodeID,
		Store:   cl.store,
		Raft:    cl.raft,
		Members: cl.members,
		Runtime: a.rt,
		Network: &a.net.Attacher,
		Write:   a.writeCmd,
		EnsureImage: func(ctx context.Context, t *api.Task) error {
			var creds imagedist.Creds
			if t.Spec.RegistryAuth != nil {
				creds = func(ctx context.Context) (*api.RegistryAuth, error) { return a.fetchRegistryAuth(ctx, cl, t) }
			}
			return a.ensureImage(ctx, cl, t.Spec.Image, creds)
		},
		PrepareFiles: files.Prepare,
		GCTaskFiles:  files.GC,
		Resync:       cl.resync,
		Logger:       a.log,
	})
}

// newNetLoop makes the network loop of cluster instance cl. The join floor
// is read once, at its start (node/revocation).
func (a *Agent) newNetLoop(cl *cluster) *netloop.Loop {
	dir := clusterDir(a.cfg.DataDir)
	joinFloor := revocation.ReadIndexFile(filepath.Join(dir, revocation.JoinIndexFile))
	return netloop.New(netloop.Config{
		NodeID:         a.id.NodeID,
		AdvertiseAddr:  a.cfg.AdvertiseAddr,
		ClusterDir:     dir,
		Store:          cl.store,
		Members:        cl.members,
		Network:        &a.net.Attacher,
		Metrics:        a.obs.m(),
		ReplicaCurrent: func(index uint64) bool { return revocation.ReplicaCurrent(index, joinFloor) },
		Write:          a.writeCmd,
		Synced:         cl.raft.Synced,
		Resync:         cl.resync,
		Logger:         a.log,
	})
}

// usageLoop samples this node's autoscaled tasks into cl.usage until ctx
// ends (autoscale.SampleLoop). The runtime is started before any cluster.
func (a *Agent) usageLoop(ctx context.Context, cl *cluster) {
	var rt autoscale.Containers
	if a.rt != nil {
		rt = a.rt
	}
	autoscale.SampleLoop(ctx, &cl.usage, a.id.NodeID, cl.store, rt)
}

// handleUsageRPC answers wire.MethodUsage from cl.usage.
func (a *Agent) handleUsageRPC() (autoscale.Report, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return autoscale.Report{}, err
	}
	return cl.usage.Report(), nil
}

// newEventsLoop makes the events loop: it follows whichever cluster the
// agent is in.
func (a *Agent) newEventsLoop() *events.Loop {
	return events.NewLoop(events.LoopConfig{
		NodeID:  a.id.NodeID,
		Hub:     a.obs.hub(),
		Runtime: a.rt,
		Cluster: func() (*consensus.Store, <-chan struct{}) {
			cl, _ := a.clusterOrErr()
			if cl == nil {
				return nil, nil
			}
			return cl.store, cl.done
		},
		ContainerStart: a.obs.m().ContainerStart,
	})
}
