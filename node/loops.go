package node

// The wiring of the node-side loops that live in their own packages: the
// reconciler (node/reconciler), the network loop (node/netloop) and the
// events loop (node/events). Each gets its dependencies here, from the
// agent and the cluster instance; none of them imports node.

import (
	"context"
	"path/filepath"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/events"
	"github.com/shoal-org/shoal/node/imagedist"
	"github.com/shoal-org/shoal/node/netloop"
	"github.com/shoal-org/shoal/node/netplan"
	"github.com/shoal-org/shoal/node/reconciler"
	"github.com/shoal-org/shoal/overlay"
	"github.com/shoal-org/shoal/runtime"
)

// netAttacher is the runtime's network (netloop.Attacher) as the agent
// holds it for its whole life; get and set name its default overlay.
type netAttacher struct{ netloop.Attacher }

func (n *netAttacher) get() *overlay.Overlay   { return n.Default() }
func (n *netAttacher) set(ov *overlay.Overlay) { n.SetDefault(ov) }

// withNetworks returns ctx carrying the networks a container must join
// (netloop.WithNetworks).
func withNetworks(ctx context.Context, names []string) context.Context {
	return netloop.WithNetworks(ctx, names)
}

// writeCmd is the agent's write as the loops' status sink.
func (a *Agent) writeCmd(ctx context.Context, cmd consensus.Command) error {
	_, err := a.write(ctx, cmd)
	return err
}

// newReconciler makes the reconciler of cluster instance cl.
func (a *Agent) newReconciler(cl *cluster) *reconciler.Reconciler {
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
		PrepareFiles: func(ctx context.Context, t *api.Task) ([]runtime.FileMount, error) {
			return a.prepareTaskFiles(ctx, cl, t)
		},
		GCTaskFiles: a.gcTaskFiles,
		Logger:      a.log,
	})
}

// newNetLoop makes the network loop of cluster instance cl. The join floor
// is read once, at its start (node/revocation).
func (a *Agent) newNetLoop(cl *cluster) *netloop.Loop {
	dir := clusterDir(a.cfg.DataDir)
	joinFloor := readIndexFile(filepath.Join(dir, joinIndexFile))
	return netloop.New(netloop.Config{
		NodeID:         a.id.NodeID,
		AdvertiseAddr:  a.cfg.AdvertiseAddr,
		ClusterDir:     dir,
		Store:          cl.store,
		Members:        cl.members,
		Network:        &a.net.Attacher,
		Metrics:        a.obs.m(),
		ReplicaCurrent: func(index uint64) bool { return replicaCurrent(index, joinFloor) },
		Write:          a.writeCmd,
		LoadWGKeys: func(dir string, cur overlay.KeyPair, index uint64) (netloop.WGKeys, error) {
			k, err := loadWGKeys(dir, cur, index)
			if err != nil {
				return nil, err // a nil interface: the loop retries
			}
			return wgKeysOf{k}, nil
		},
		Logger: a.log,
	})
}

// wgKeysOf is wgrotate.go's keys as the network loop uses them.
type wgKeysOf struct{ k *wgKeys }

func (w wgKeysOf) In() (netplan.WGLocalKey, *netplan.WGLocalKey) { return w.k.in() }
func (w wgKeysOf) Generate(epoch uint64) error                   { return w.k.generate(epoch) }
func (w wgKeysOf) Next() *overlay.KeyPair                        { return w.k.next }
func (w wgKeysOf) Promote() error                                { return w.k.promote() }

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
