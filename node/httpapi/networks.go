package node

// Network routes: create, list, inspect, remove. The state machine checks
// names, subnets and VNIs again (consensus/network.go); the API refuses
// what it can tell is wrong first, with the same words.

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
)

func (a *Agent) networkRoutes(h func(string, handlerFunc)) {
	h("GET /v1/networks", a.handleNetworks)
	h("POST /v1/networks", a.handleNetworkCreate)
	h("GET /v1/networks/{id}", a.handleNetwork)
	h("DELETE /v1/networks/{id}", a.handleNetworkRemove)
}

func (a *Agent) handleNetworks(w http.ResponseWriter, r *http.Request) (any, error) {
	cl, err := a.consistentCluster(r)
	if err != nil {
		return nil, err
	}
	out := []api.Network{}
	for _, n := range cl.store.Networks() {
		out = append(out, *n)
	}
	return out, nil
}

func (a *Agent) resolveNetwork(cl *consensus.Store, ref string) (*api.Network, error) {
	n, err := cl.ResolveNetwork(ref)
	if err != nil {
		if errors.Is(err, consensus.ErrNotFound) {
			return nil, notFound("no such network: %s", ref)
		}
		return nil, badRequest("network %s: %v", ref, err)
	}
	return n, nil
}

func (a *Agent) handleNetwork(w http.ResponseWriter, r *http.Request) (any, error) {
	cl, err := a.consistentCluster(r)
	if err != nil {
		return nil, err
	}
	return a.resolveNetwork(cl.store, r.PathValue("id"))
}

func (a *Agent) handleNetworkCreate(w http.ResponseWriter, r *http.Request) (any, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	var req api.Network
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	req.Name = strings.TrimSpace(req.Name)
	if p := api.ServiceNameProblem(req.Name); p != "" {
		return nil, badRequest("network name %q: %s", req.Name, p)
	}
	if err := a.syncReplica(r.Context(), cl); err != nil {
		return nil, err
	}
	if _, err := cl.store.ResolveNetwork(req.Name); err == nil || strings.EqualFold(req.Name, api.DefaultNetwork) {
		return nil, badRequest("a network named %s already exists", req.Name)
	}
	n := api.Network{ID: newID(), Name: req.Name, Subnet: strings.TrimSpace(req.Subnet), VNI: req.VNI,
		Internal: req.Internal, Encrypted: req.Encrypted, Attachable: req.Attachable, Labels: req.Labels, CreatedAt: time.Now().UTC()}
	if _, err := a.write(r.Context(), &consensus.CreateNetwork{Network: n}); err != nil {
		return nil, err
	}
	a.waitLocal(r.Context(), cl, func() bool {
		_, err := cl.store.ResolveNetwork(n.ID)
		return err == nil
	})
	return a.resolveNetwork(cl.store, n.ID)
}

func (a *Agent) handleNetworkRemove(w http.ResponseWriter, r *http.Request) (any, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	if err := a.syncReplica(r.Context(), cl); err != nil {
		return nil, err
	}
	n, err := a.resolveNetwork(cl.store, r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	if n.Name == api.DefaultNetwork {
		return nil, badRequest("the default network cannot be removed")
	}
	if _, err := a.write(r.Context(), &consensus.DeleteNetwork{ID: n.ID}); err != nil {
		return nil, err
	}
	return struct{}{}, nil
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
			return nil, badRequest("network %s is not attachable: only services may join it (create it with --attachable)", n.Name)
		}
		if seen[n.Name] {
			return nil, badRequest("network %s given twice", n.Name)
		}
		seen[n.Name] = true
		out = append(out, n.Name)
	}
	return withNetworks(ctx, out), nil
}
