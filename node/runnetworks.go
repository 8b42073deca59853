package node

// The networks of a `shoal run` container, and network lookups for the
// network routes (node/httpapi networks.go, through apiAgent).

import (
	"context"
	"errors"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/httpapi"
)

func (a *Agent) resolveNetwork(cl *consensus.Store, ref string) (*api.Network, error) {
	n, err := cl.ResolveNetwork(ref)
	if err != nil {
		if errors.Is(err, consensus.ErrNotFound) {
			return nil, httpapi.NotFound("no such network: %s", ref)
		}
		return nil, httpapi.BadRequest("network %s: %v", ref, err)
	}
	return n, nil
}

// runNetworks checks the networks of a `shoal run` container (each must be
// attachable, or the default network) and returns ctx carrying them for
// the network attacher.
func (a *Agent) runNetworks(ctx context.Context, names []string) (context.Context, error) {
	if len(names) == 0 {
		return ctx, nil
	}
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, name := range names {
		n, err := a.resolveNetwork(cl.store, name)
		if err != nil {
			return nil, err
		}
		if n.Name != api.DefaultNetwork && !n.Attachable {
			return nil, httpapi.BadRequest("network %s is not attachable: only services may join it (create it with --attachable)", n.Name)
		}
		if seen[n.Name] {
			return nil, httpapi.BadRequest("network %s given twice", n.Name)
		}
		seen[n.Name] = true
		out = append(out, n.Name)
	}
	return withNetworks(ctx, out), nil
}

func (x apiAgent) Networks() ([]api.Network, error) {
	cl, err := x.a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	out := []api.Network{}
	for _, n := range cl.store.Networks() {
		out = append(out, *n)
	}
	return out, nil
}

func (x apiAgent) Network(ref string) (*api.Network, error) {
	cl, err := x.a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	return x.a.resolveNetwork(cl.store, ref)
}

func (x apiAgent) CreateNetwork(ctx context.Context, n api.Network) (*api.Network, error) {
	a := x.a
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	n.ID, n.CreatedAt = newID(), time.Now().UTC()
	if _, err := a.write(ctx, &consensus.CreateNetwork{Network: n}); err != nil {
		return nil, err
	}
	a.waitLocal(ctx, cl, func() bool {
		_, err := cl.store.ResolveNetwork(n.ID)
		return err == nil
	})
	return a.resolveNetwork(cl.store, n.ID)
}

func (x apiAgent) RemoveNetwork(ctx context.Context, id string) error {
	_, err := x.a.write(ctx, &consensus.DeleteNetwork{ID: id})
	return err
}
