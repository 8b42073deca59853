package node

// The agent's side of its cluster half (node/instance): which instance runs
// now, what the agent lends each one (Host), and their start and stop under
// the join lock's callers (init, join, leave, removal, fencing).

import (
	"context"

	"github.com/shoal-org/shoal/node/instance"
	"github.com/shoal-org/shoal/node/rpcserver"
)

// clusterOrErr returns the running cluster instance or ErrNoCluster.
func (a *Agent) clusterOrErr() (*instance.Instance, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.cl == nil {
		return nil, ErrNoCluster
	}
	return a.cl, nil
}

// host is the agent as its cluster instances see it.
func (a *Agent) host() instance.Host {
	return instance.Host{
		NodeID: a.id.NodeID, Config: a.cfg, Log: a.log, Metrics: a.obs.m(),
		Runtime: a.rt, Images: a.images, Network: &a.net.Attacher, Version: Version,
		Current:       a.clusterOrErr,
		Methods:       a.rpcServer().Method,
		Write:         a.writeCmd,
		AnnounceImage: a.announceImage,
		Fenced: func(ctx context.Context, cl *instance.Instance) {
			select {
			case a.fenced <- cl:
			case <-ctx.Done():
			}
		},
		Removed: func(cl *instance.Instance, by string) {
			select {
			case a.removedCh <- removalNotice{cl: cl, by: by}:
			default:
			}
		},
	}
}

// rpcServer answers the cluster port's RPC methods on whichever instance
// runs at the time of each call.
func (a *Agent) rpcServer() *rpcserver.Server {
	return &rpcserver.Server{NodeID: a.id.NodeID, Current: a.clusterOrErr, Images: a.images, Runtime: a.rt, Log: a.log}
}

// startCluster opens the instance under DATA/cluster, makes it the
// agent's and starts its loops.
//
// The instance outlives ctx: it ends in stopCluster only. On SIGTERM the
// agent's context ends first, and an instance tied to it closed its
// cluster port and loops at once, while the stop that hands leadership
// over and announces the restart came later, after the API server's
// drain: the leader heard a second of raft silence from a node that had
// not yet said it was restarting, marked it down and rescheduled its
// tasks (rolling upgrade, CI).
func (a *Agent) startCluster(ctx context.Context, opts instance.Options) error {
	cl, err := instance.Open(context.WithoutCancel(ctx), a.host(), opts)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.cl = cl
	a.mu.Unlock()
	if err := cl.Start(); err != nil {
		a.stopCluster()
		return err
	}
	return nil
}

// stopCluster shuts the running instance down (agent stop or leave) and
// waits for it (instance.Instance.Stop).
func (a *Agent) stopCluster() {
	a.mu.Lock()
	cl := a.cl
	a.cl = nil
	a.mu.Unlock()
	if cl == nil {
		return
	}
	cl.Stop()
}
