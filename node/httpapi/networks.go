package httpapi

// Network routes: create, list, inspect, remove. The state machine checks
// names, subnets and VNIs again (consensus/fsm/networks.go); the API refuses
// what it can tell is wrong first, with the same words.

import (
	"context"
	"net/http"
	"strings"

	"github.com/shoal-org/shoal/api"
)

// Replica is the part of the agent every cluster route starts with.
type Replica interface {
	// InCluster fails (the agent's no-cluster error) while the node is in
	// no cluster; every route but status and join checks it first.
	InCluster() error
	// SyncReplica waits until this node's replica holds every write
	// acknowledged before the call (read index).
	SyncReplica(ctx context.Context) error
}

// ReplicaLoader is a Replica that can tell its state is not loaded yet
// (a node restarted without a quorum: node/api.go); the read routes then
// refuse rather than answer with empty lists.
type ReplicaLoader interface {
	ReplicaLoaded(ctx context.Context) error
}

// Networks is what the network routes need of the agent.
type Networks interface {
	Replica
	// Networks lists the networks of the replica.
	Networks() ([]api.Network, error)
	// Network resolves ref (ID, prefix or name): NotFound or BadRequest
	// when it names no single network.
	Network(ref string) (*api.Network, error)
	// CreateNetwork stores n (checked here) under a new ID and returns it
	// as this node's replica then has it.
	CreateNetwork(ctx context.Context, n api.Network) (*api.Network, error)
	// RemoveNetwork removes the network with this ID.
	RemoveNetwork(ctx context.Context, id string) error
}

// NetworkRoutes routes the network routes to c.
func NetworkRoutes(rt *Router, c Networks) {
	h := &networkHandlers{c: c}
	rt.Handle("GET /v1/networks", h.list)
	rt.Handle("POST /v1/networks", h.create)
	rt.Handle("GET /v1/networks/{id}", h.inspect)
	rt.Handle("DELETE /v1/networks/{id}", h.remove)
}

type networkHandlers struct{ c Networks }

func (h *networkHandlers) list(w http.ResponseWriter, r *http.Request) (any, error) {
	if err := ConsistentRead(r, h.c); err != nil {
		return nil, err
	}
	return h.c.Networks()
}

func (h *networkHandlers) inspect(w http.ResponseWriter, r *http.Request) (any, error) {
	if err := ConsistentRead(r, h.c); err != nil {
		return nil, err
	}
	return h.c.Network(r.PathValue("id"))
}

func (h *networkHandlers) create(w http.ResponseWriter, r *http.Request) (any, error) {
	if err := h.c.InCluster(); err != nil {
		return nil, err
	}
	var req api.Network
	if err := DecodeBody(r, &req); err != nil {
		return nil, err
	}
	n, err := CheckNetworkCreate(req, func(name string) string {
		nets, err := h.c.Networks()
		if err != nil {
			return ""
		}
		return NetworkNamed(nets, name)
	}, func() error {
		return h.c.SyncReplica(r.Context())
	})
	if err != nil {
		return nil, err
	}
	return h.c.CreateNetwork(r.Context(), n)
}

// CheckNetworkCreate is what a network create request is refused for
// before it is written: a bad name, then (after sync, which syncs the
// replica that taken reads) a name taken. taken returns the name of the
// network already called name (in any case, as the state machine compares
// them), or "". It must look at names only: a lookup by reference also
// matches ID prefixes, and refused `network create b` whenever some
// network's ID began with b. It returns only what a client may choose; the
// ID and creation time are the agent's.
func CheckNetworkCreate(req api.Network, taken func(name string) string, sync func() error) (api.Network, error) {
	req.Name = strings.TrimSpace(req.Name)
	if p := api.NetworkNameProblem(req.Name); p != "" {
		return api.Network{}, BadRequest("network name %q: %s", req.Name, p)
	}
	if err := sync(); err != nil {
		return api.Network{}, err
	}
	if strings.EqualFold(req.Name, api.DefaultNetwork) {
		return api.Network{}, BadRequest("a network named %s already exists", api.DefaultNetwork)
	}
	if old := taken(req.Name); old != "" {
		return api.Network{}, BadRequest("a network named %s already exists", old)
	}
	return api.Network{Name: req.Name, Subnet: strings.TrimSpace(req.Subnet), VNI: req.VNI,
		Internal: req.Internal, Encrypted: req.Encrypted, Attachable: req.Attachable, Labels: req.Labels}, nil
}

// NetworkNamed returns the name of the network of nets called name in
// any case, or "".
func NetworkNamed(nets []api.Network, name string) string {
	for _, n := range nets {
		if strings.EqualFold(n.Name, name) {
			return n.Name
		}
	}
	return ""
}

func (h *networkHandlers) remove(w http.ResponseWriter, r *http.Request) (any, error) {
	if err := h.c.InCluster(); err != nil {
		return nil, err
	}
	if err := h.c.SyncReplica(r.Context()); err != nil {
		return nil, err
	}
	n, err := h.c.Network(r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	if n.Name == api.DefaultNetwork {
		return nil, BadRequest("the default network cannot be removed")
	}
	if err := h.c.RemoveNetwork(r.Context(), n.ID); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}
