package node

// The agent's own loops and resources that outlive its cluster instances:
// the runtime's network (netloop.Attacher), which containers are plugged
// into whichever instance's overlays are up, and the events loop
// (node/events), which follows whichever instance the agent runs. The
// loops of an instance are node/instance's.

import (
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/events"
	"github.com/shoal-org/shoal/node/netloop"
	"github.com/shoal-org/shoal/overlay"
)

// netAttacher is the runtime's network (netloop.Attacher) as the agent
// holds it for its whole life; get names its default overlay.
type netAttacher struct{ netloop.Attacher }

func (n *netAttacher) get() *overlay.Overlay { return n.Default() }

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
			return cl.Store, cl.Done()
		},
		ReplayIndex: func(store *consensus.Store) uint64 {
			if cl, _ := a.clusterOrErr(); cl != nil && cl.Store == store {
				return cl.ReplayIndex
			}
			return 0
		},
		ContainerStart: a.obs.m().ContainerStart,
	})
}
