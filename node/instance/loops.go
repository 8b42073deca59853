package instance

// The loops of an instance, each built from the instance's parts and the
// agent's (Host) and run until the instance stops. They live in their own
// packages; none of them imports node or this package.

import (
	"context"
	"path/filepath"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/autoscale"
	"github.com/shoal-org/shoal/node/diskhealth"
	"github.com/shoal-org/shoal/node/epoch"
	"github.com/shoal-org/shoal/node/imagedist"
	"github.com/shoal-org/shoal/node/joining"
	"github.com/shoal-org/shoal/node/leaderloop"
	"github.com/shoal-org/shoal/node/membership"
	"github.com/shoal-org/shoal/node/netloop"
	"github.com/shoal-org/shoal/node/reconciler"
	"github.com/shoal-org/shoal/node/resync"
	"github.com/shoal-org/shoal/node/revocation"
	"github.com/shoal-org/shoal/node/runattach"
	"github.com/shoal-org/shoal/node/wire"
	"github.com/shoal-org/shoal/runtime/image"
)

// startLoops starts every loop of the instance on ctx, in the instance's
// wait group.
func (cl *Instance) startLoops(ctx context.Context) {
	h := cl.Host
	cl.wg.Add(9)
	go func() { defer cl.wg.Done(); cl.lostLogRejoinLoop(ctx) }()
	go func() { defer cl.wg.Done(); cl.fenceLoop(ctx) }()
	go func() { defer cl.wg.Done(); epoch.RecordLoop(ctx, cl.Store, cl.Raft, cl.Fence.Local(), h.Log) }()
	go func() { defer cl.wg.Done(); cl.Keeper().Run(ctx) }()
	go func() { defer cl.wg.Done(); cl.netLoop().Run(ctx) }()
	go func() { defer cl.wg.Done(); cl.removalLoop(ctx) }()
	go func() { defer cl.wg.Done(); cl.joinLoop().Run(ctx) }()
	go func() { defer cl.wg.Done(); cl.leaderLoop().Run(ctx) }()
	go func() { defer cl.wg.Done(); cl.reconciler().Run(ctx) }()
	cl.wg.Add(1)
	go func() { defer cl.wg.Done(); cl.usageLoop(ctx) }()
	if cl.Members != nil {
		cl.wg.Add(1)
		go func() { defer cl.wg.Done(); cl.diskHealthLoop(ctx) }()
	}
	cl.wg.Add(1)
	go func() { defer cl.wg.Done(); cl.revocationLoop().Run(ctx) }()
	if h.Runtime != nil {
		cl.wg.Add(1)
		go func() { defer cl.wg.Done(); cl.runAttachLoop(ctx) }()
	}
}

// RunAttachments is the recorder of this node's `shoal run` containers on
// networks (node/runattach); nil in tests without a runtime. The local API
// syncs it after a run and a removal.
func (cl *Instance) RunAttachments() *runattach.Recorder {
	h := cl.Host
	if h.Runtime == nil {
		return nil
	}
	cl.runAttachOnce.Do(func() {
		cl.runAttach = &runattach.Recorder{
			NodeID: h.NodeID, Containers: h.Runtime.List, IPs: h.Network.IPs, Store: cl.Store,
			Write: h.Write, Log: h.Log.With("sub", "runattach"),
		}
	})
	return cl.runAttach
}

// runAttachLoop keeps the record on every container event (the task ID
// of each: a run container's is "").
func (cl *Instance) runAttachLoop(ctx context.Context) {
	rt := cl.Host.Runtime
	evs := rt.Subscribe()
	defer rt.Unsubscribe(evs)
	ids := make(chan string, 1)
	go func() {
		defer close(ids)
		for ev := range evs {
			if ev.TaskID != "" {
				continue
			}
			select {
			case ids <- "": // one pending sync covers any number of events
			default:
			}
		}
	}()
	cl.RunAttachments().Run(ctx, ids)
}

// leaderLoop is what this node runs while it leads (node/leaderloop).
func (cl *Instance) leaderLoop() *leaderloop.Loop {
	h := cl.Host
	return leaderloop.New(leaderloop.Config{
		NodeID: h.NodeID, Store: cl.Store, Raft: cl.Raft, Members: cl.Members, Log: h.Log, Metrics: h.Metrics,
		RestartGrace: h.Config.RestartGrace, DeadVoterGrace: h.Config.DeadVoterGrace, HeardWindow: cl.profile.HeardWindow(),
		SilenceWindow: cl.profile.SilenceWindow(), BeatInterval: cl.profile.Raft.HeartbeatInterval,
		PromoteContact: cl.profile.PromoteContact(), AdmitWait: joining.AdmitWait,
		Removing:         cl.isRemoving,
		RotateGossipKeys: func(ctx context.Context) { cl.Rotator().Step(ctx) },
		LocalUsage:       cl.usage.Report,
		Usage: func(ctx context.Context, addr string) (autoscale.Report, error) {
			var rep autoscale.Report
			err := Call(ctx, addr, cl.Client, wire.MethodUsage, nil, &rep, nil)
			return rep, err
		},
	})
}

// joinLoop is the gossip join and reconnect loop (membership.JoinLoop).
func (cl *Instance) joinLoop() *membership.JoinLoop {
	h := cl.Host
	return &membership.JoinLoop{
		Members: cl.Members, Self: h.NodeID, SelfAddr: cl.selfGossipAddr(), Peers: cl.peers, Replica: cl.Store,
		PeersFile: filepath.Join(cl.dir(), "peers.json"), Resync: cl.resync, Log: h.Log,
	}
}

// reconciler makes this node's containers match the plan
// (node/reconciler).
func (cl *Instance) reconciler() *reconciler.Reconciler {
	h := cl.Host
	files := cl.taskFiles()
	return reconciler.New(reconciler.Config{
		NodeID:  h.NodeID,
		Store:   cl.Store,
		Raft:    cl.Raft,
		Members: cl.Members,
		Runtime: h.Runtime, // a reconciler.Fencer: the supervisor's at-most-once lease (instance.go)
		Network: h.Network,
		Write:   h.Write,
		EnsureImage: func(ctx context.Context, t *api.Task) error {
			var creds imagedist.Creds
			if t.Spec.RegistryAuth != nil {
				creds = func(ctx context.Context) (*api.RegistryAuth, error) { return cl.fetchRegistryAuth(ctx, t) }
			}
			return cl.EnsureImage(ctx, t.Spec.Image, creds)
		},
		PrepareFiles: files.Prepare,
		GCTaskFiles:  files.GC,
		Resync:       cl.resync,
		Logger:       h.Log,
		ContactFile:  filepath.Join(cl.dir(), "contact.json"),
	})
}

// netLoop programs overlay, balancer and DNS (node/netloop). The join
// floor is read once, at its start (node/revocation).
func (cl *Instance) netLoop() *netloop.Loop {
	h := cl.Host
	dir := cl.dir()
	joinFloor := revocation.ReadIndexFile(filepath.Join(dir, revocation.JoinIndexFile))
	return netloop.New(netloop.Config{
		NodeID:         h.NodeID,
		AdvertiseAddr:  h.Config.AdvertiseAddr,
		ClusterDir:     dir,
		Store:          cl.Store,
		Members:        cl.Members,
		Network:        h.Network,
		Metrics:        h.Metrics,
		ReplicaCurrent: func(index uint64) bool { return revocation.ReplicaCurrent(index, joinFloor) },
		Write:          h.Write,
		Synced:         cl.Raft.Synced,
		Resync:         cl.resync,
		Logger:         h.Log,
	})
}

// usageLoop samples this node's autoscaled tasks until ctx ends
// (autoscale.SampleLoop). The runtime is started before any instance.
func (cl *Instance) usageLoop(ctx context.Context) {
	var rt autoscale.Containers
	if cl.Host.Runtime != nil {
		rt = cl.Host.Runtime
	}
	autoscale.SampleLoop(ctx, &cl.usage, cl.Host.NodeID, cl.Store, rt)
}

// diskHealthLoop gossips whether this node can persist its state: its raft
// log's last write and the free space of its data dir against the image
// store's reserve (node/diskhealth).
func (cl *Instance) diskHealthLoop(ctx context.Context) {
	ticks, stop := cl.resync.Ticks(resync.Period)
	defer stop()
	dir := cl.Host.Config.DataDir
	l := &diskhealth.Loop{
		Ticks:   ticks,
		Reserve: image.FreeReserve,
		Read: func() diskhealth.Reading {
			free, err := diskhealth.FreeBytes(dir)
			return diskhealth.Reading{Free: free, FreeErr: err, LogErr: cl.Raft.LogWriteFailing()}
		},
		Publish: cl.Members.SetUnfit,
		Log:     cl.Host.Log.With("sub", "diskhealth"),
	}
	l.Run(ctx)
}

// Usage is the rolling usage of this node's autoscaled tasks, which RPC
// usage answers.
func (cl *Instance) Usage() autoscale.Report { return cl.usage.Report() }

// revocationLoop closes the connections of revoked peers and applies the
// replica's gossip keyring (revocation.Loop).
func (cl *Instance) revocationLoop() *revocation.Loop {
	l := &revocation.Loop{
		Store:    cl.Store,
		Trackers: []*revocation.Tracker{dialedConns},
		Dir:      cl.dir(),
		Log:      cl.Host.Log,
	}
	if cl.mux != nil {
		l.Trackers = append(l.Trackers, cl.mux.conns)
	}
	if cl.Members != nil {
		l.Gossip = cl.Members
	}
	return l
}

// removalLoop runs the removed node's side of the removal question; a
// positive statement goes to the agent (Host.Removed), since the reset
// stops this instance and cannot run on one of its goroutines.
func (cl *Instance) removalLoop(ctx context.Context) {
	cl.removal().Run(ctx, func(by string) { cl.Host.Removed(cl, by) })
}

// fenceLoop waits until this instance is fenced and hands it to the agent
// (re-joining stops this instance, whose wait group this loop belongs to).
// Gossip hints are checked on the peer's cluster port (epoch.Fence.Watch).
func (cl *Instance) fenceLoop(ctx context.Context) {
	probe := func(addr string) error { return epoch.Probe(peerDialer, addr, cl.Client, cl.Fence) }
	if !cl.Fence.Watch(ctx, probe, cl.Host.Log) {
		return
	}
	newer, from := cl.Fence.Newest()
	cl.Host.Log.Warn("fenced: a voter runs a newer cluster epoch (a --force-new-cluster happened without this node); "+
		"dropping this node's raft state to re-join the recovered cluster",
		"epoch", cl.Fence.Local(), "newer_epoch", newer, "seen_from", from)
	cl.Host.Fenced(ctx, cl)
}

// lostLogRejoinLoop asks the leader to make this node a non-voter while its
// rejoin after a lost raft log is pending (joining.RejoinAfterLostLog).
func (cl *Instance) lostLogRejoinLoop(ctx context.Context) {
	ask := func(ctx context.Context) error {
		return cl.Forward(ctx, func(ctx context.Context, addr string) error {
			return Call(ctx, addr, cl.Client, wire.MethodRejoin, struct{}{}, nil, nil)
		})
	}
	joining.RejoinAfterLostLog(ctx, cl.Raft, ask, cl.Host.Log)
}
