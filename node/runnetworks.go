package node

// The networks of a `shoal run` container (node/localapi asks for them).

import (
	"context"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/handlers"
	"github.com/shoal-org/shoal/node/httpapi"
)

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
		n, err := handlers.ResolveNetwork(cl.store, name)
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
