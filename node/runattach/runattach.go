// Package runattach records in the cluster state which `shoal run`
// containers of this node are attached to which networks
// (command.SetRunAttachments, api.Network.RunContainers), so that the state
// machine can refuse to remove a network a container still uses.
//
// Why: a run container is local to its node; the state held only services,
// so `network rm` of an attachable network succeeded while a run container
// was on it, and the container lost its interface (docker refuses: "network
// has active endpoints"). The node is the only one that knows its
// containers, so it writes the whole set it has (a node may write only its
// own: node/authz), computed from what runs, never from what it wrote
// before: after an agent restart the first sync records what it finds and
// drops what went away meanwhile. A removed node's go with it (RemoveNode).
//
// When: right after a run container started and after one is removed (the
// local API calls Sync, so `shoal run -d` and `shoal rm` return with the
// state already written), on every event of a run container (an exit, an
// --rm removal), and every ResyncEvery (dropped events, a write that failed
// for want of a leader or of a member too old for the command).
package runattach

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/resync"
)

// ResyncEvery is how often the recorder compares again without an event:
// a multiple of resync.Period, so that every one falls on a beat the
// agent's other loops already wake up for.
const ResyncEvery = 8 * resync.Period

// Recorder keeps this node's record of its run containers' networks.
// Every field is required; none changes after the first Sync.
type Recorder struct {
	NodeID string
	// Containers lists this node's containers (runtime.List).
	Containers func() []api.Container
	// IPs is a container's address on each network it is attached to, by
	// network name (netloop.Attacher.IPs).
	IPs   func(containerID string) map[string]string
	Store *consensus.Store
	// Write commits a command through the leader.
	Write func(ctx context.Context, cmd command.Command) error
	Log   *slog.Logger

	mu sync.Mutex // one comparison and write at a time
}

// Desired is the record of a node whose containers are cs: for each
// running container of no task (`shoal run`), the networks other than the
// default it has an address on, by network ID (from nets, by name; a name
// not in nets is skipped), container names sorted. A stopped container
// holds no address, as docker's endpoints go with the container's stop.
func Desired(cs []api.Container, ips func(string) map[string]string, nets []*api.Network) map[string][]string {
	ids := map[string]string{}
	for _, n := range nets {
		ids[n.Name] = n.ID
	}
	out := map[string][]string{}
	for _, c := range cs {
		if c.TaskID != "" || c.State != api.ContainerRunning || c.Name == "" {
			continue
		}
		for name := range ips(c.ID) {
			id, ok := ids[name]
			if !ok || name == api.DefaultNetwork {
				continue
			}
			out[id] = append(out[id], c.Name)
		}
	}
	for id := range out {
		slices.Sort(out[id])
	}
	return out
}

// stored is node id's record in the state, by network ID.
func stored(nets []*api.Network, id string) map[string][]string {
	out := map[string][]string{}
	for _, n := range nets {
		if names := n.RunContainers[id]; len(names) > 0 {
			out[n.ID] = names
		}
	}
	return out
}

// Sync writes this node's record when it differs from what the state
// holds.
func (r *Recorder) Sync(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	nets := r.Store.Networks()
	want := Desired(r.Containers(), r.IPs, nets)
	if maps.EqualFunc(want, stored(nets, r.NodeID), slices.Equal[[]string]) {
		return nil
	}
	if err := r.Write(ctx, &command.SetRunAttachments{NodeID: r.NodeID, Networks: want}); err != nil {
		return fmt.Errorf("record this node's run containers on networks: %w", err)
	}
	return nil
}

// Run syncs at once, on every event of a run container (taskIDs receives
// the task ID of each container event: "" for a run container) and every
// ResyncEvery, until ctx ends or events closes.
func (r *Recorder) Run(ctx context.Context, events <-chan string) {
	// On the agent's beats (node/resync), so that an idle agent does not
	// wake up for this alone (issue 10).
	tick := resync.NewTicker(ResyncEvery)
	defer tick.Stop()
	sync := func() {
		err := r.Sync(ctx)
		switch {
		case err == nil || ctx.Err() != nil:
		case errors.Is(err, command.ErrUnsupported):
			// A member older than the command: network rm checks
			// services only until it is upgraded (docs/upgrades.md).
			r.Log.Debug("run containers on networks not recorded: a member is too old", "err", err)
		default:
			r.Log.Warn("run containers on networks not recorded; retrying", "err", err)
		}
	}
	sync()
	for {
		select {
		case <-ctx.Done():
			return
		case taskID, ok := <-events:
			if !ok {
				return
			}
			if taskID == "" {
				sync()
			}
		case <-tick.C:
			sync()
		}
	}
}
