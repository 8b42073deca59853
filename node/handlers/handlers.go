// Package handlers is the agent's side of the cluster routes that
// node/httpapi routes: services and tasks, networks, secrets and configs.
// What a request needs is read from this node's replica
// (consensus.Store); what it changes goes through the agent's write path
// (Agent.Write: forwarded to the leader, retried across leader changes),
// and the answer is read back from the replica once it holds the write, so
// a caller's next read through this node sees it.
//
// The package never imports node (api/imports_test.go): the agent hands
// itself over as Agent. The leader's re-validation of a forwarded write
// (node/writes) uses the same checks (CheckStoredSpec, CheckObject).
package handlers

import (
	"context"
	"errors"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/httpapi"
)

// Agent is what the handlers need of the agent. Its methods are safe for
// concurrent use.
type Agent interface {
	// Store is this node's replica; it fails with the agent's no-cluster
	// error while the node is in no cluster.
	Store() (*consensus.Store, error)
	// SyncReplica waits until the replica holds every write acknowledged
	// before the call (read index).
	SyncReplica(ctx context.Context) error
	// Write proposes cmd through the leader and returns once it is
	// committed; it is bounded by the agent's write timeout.
	Write(ctx context.Context, cmd command.Command) error
	// HasImage reports whether this node's image store holds ref.
	HasImage(ref string) bool
	// NewID returns a new random object ID.
	NewID() string
	// Preflight runs cmd against fork (a consensus.Store.Fork of the
	// replica) as the write path would, without proposing it, and leaves
	// its effect in fork (node/writes Preflight).
	Preflight(fork *consensus.Store, cmd command.Command) error
}

// API implements the httpapi interfaces of the services, networks,
// secrets and configs over an Agent.
type API struct{ agent Agent }

var (
	_ httpapi.Services = (*API)(nil)
	_ httpapi.Networks = (*API)(nil)
	_ httpapi.Objects  = (*API)(nil)
)

// New returns the handlers of agent.
func New(agent Agent) *API { return &API{agent: agent} }

// InCluster fails with the agent's no-cluster error while the node is in
// no cluster.
func (x *API) InCluster() error {
	_, err := x.agent.Store()
	return err
}

// ReplicaLoaded is the agent's (httpapi.ReplicaLoader), when it has one.
func (x *API) ReplicaLoaded(ctx context.Context) error {
	if l, ok := x.agent.(interface {
		ReplicaLoaded(context.Context) error
	}); ok {
		return l.ReplicaLoaded(ctx)
	}
	return nil
}

// SyncReplica is the agent's read index (httpapi.Replica).
func (x *API) SyncReplica(ctx context.Context) error {
	if _, err := x.agent.Store(); err != nil {
		return err
	}
	return x.agent.SyncReplica(ctx)
}

// ResolveNode resolves ref (ID, prefix or hostname): NotFound or
// BadRequest when it names no single node.
func ResolveNode(store *consensus.Store, ref string) (*api.Node, error) {
	n, err := store.ResolveNode(ref)
	if err != nil {
		if errors.Is(err, consensus.ErrNotFound) {
			return nil, httpapi.NotFound("no such node: %s", ref)
		}
		return nil, httpapi.BadRequest("node %s: %v", ref, err)
	}
	return n, nil
}

// waitLocalMax bounds WaitLocal: past it the caller answers from what the
// replica has.
const waitLocalMax = 3 * time.Second

// WaitLocal waits (bounded) until store satisfies cond, so a write
// answered through the leader is visible to the caller's next read. It
// returns when cond holds, after waitLocalMax, or when ctx ends.
func WaitLocal(ctx context.Context, store *consensus.Store, cond func() bool) {
	ch, cancel := store.Subscribe()
	defer cancel()
	deadline := time.NewTimer(waitLocalMax)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-ch:
		case <-deadline.C:
			return
		case <-ctx.Done():
			return
		}
	}
}
