package httpapi

// The cluster and node routes: status, join, node ls/inspect/update/rm.
// Requests are decoded and checked here; the agent reads its replica and
// writes through the leader.

import (
	"context"
	"net/http"

	"github.com/shoal-org/shoal/api"
)

// Cluster is what the cluster and node routes need of the agent.
type Cluster interface {
	Replica
	// Status is this node's identity and, once it is in a cluster, its
	// view of it. It never fails: a node in no cluster says so.
	Status() api.Status
	// Join joins the cluster req names (token and address checked).
	Join(ctx context.Context, req api.JoinRequest) error
	// Nodes lists the nodes of the replica, decorated with the Raft view
	// (manager status, voter) and sorted.
	Nodes() ([]api.Node, error)
	// Node resolves ref (ID, prefix or hostname) on the replica: NotFound
	// or BadRequest when it names no single node.
	Node(ref string) (api.Node, error)
	// UpdateNode applies a checked update to the node ref names after a
	// replica sync, and returns the node as this replica then has it.
	UpdateNode(ctx context.Context, ref string, upd api.NodeUpdate) (api.Node, error)
	// RemoveNode removes the node ref names (after a replica sync).
	RemoveNode(ctx context.Context, ref string, force bool) error
}

// NodeRoutes routes status, join and the node routes to c.
func NodeRoutes(rt *Router, c Cluster) {
	h := &nodeHandlers{c: c}
	rt.Handle("GET /v1/status", h.status)
	rt.Handle("POST /v1/join", h.join)
	rt.Handle("GET /v1/nodes", h.nodes)
	rt.Handle("GET /v1/nodes/{id}", h.node)
	rt.Handle("POST /v1/nodes/{id}/update", h.update)
	rt.Handle("DELETE /v1/nodes/{id}", h.remove)
}

type nodeHandlers struct{ c Cluster }

func (h *nodeHandlers) status(w http.ResponseWriter, r *http.Request) (any, error) {
	return h.c.Status(), nil
}

func (h *nodeHandlers) join(w http.ResponseWriter, r *http.Request) (any, error) {
	var req api.JoinRequest
	if err := DecodeBody(r, &req); err != nil {
		return nil, err
	}
	if req.Token == "" || req.Addr == "" {
		return nil, BadRequest("join needs a token and the address of a cluster node (HOST:PORT)")
	}
	if err := h.c.Join(r.Context(), req); err != nil {
		return nil, &Error{Status: http.StatusBadRequest, Msg: err.Error()}
	}
	return h.c.Status(), nil
}

// ConsistentRead checks that the node is in a cluster and, when r asks for
// ?consistent=1, syncs its replica first.
func ConsistentRead(r *http.Request, c Replica) error {
	if err := c.InCluster(); err != nil {
		return err
	}
	if l, ok := c.(ReplicaLoader); ok {
		if err := l.ReplicaLoaded(r.Context()); err != nil {
			return err
		}
	}
	if Consistent(r) {
		return c.SyncReplica(r.Context())
	}
	return nil
}

func (h *nodeHandlers) nodes(w http.ResponseWriter, r *http.Request) (any, error) {
	if err := ConsistentRead(r, h.c); err != nil {
		return nil, err
	}
	return h.c.Nodes()
}

func (h *nodeHandlers) node(w http.ResponseWriter, r *http.Request) (any, error) {
	if err := ConsistentRead(r, h.c); err != nil {
		return nil, err
	}
	return h.c.Node(r.PathValue("id"))
}

func (h *nodeHandlers) update(w http.ResponseWriter, r *http.Request) (any, error) {
	if err := h.c.InCluster(); err != nil {
		return nil, err
	}
	var upd api.NodeUpdate
	if err := DecodeBody(r, &upd); err != nil {
		return nil, err
	}
	if err := CheckNodeUpdate(upd); err != nil {
		return nil, err
	}
	return h.c.UpdateNode(r.Context(), r.PathValue("id"), upd)
}

// CheckNodeUpdate refuses an update the state machine would refuse, with
// words for the CLI.
func CheckNodeUpdate(upd api.NodeUpdate) error {
	switch upd.Availability {
	case "", api.AvailabilityActive, api.AvailabilityPause, api.AvailabilityDrain:
	default:
		return BadRequest("invalid availability %q: use active, pause or drain", upd.Availability)
	}
	for k := range upd.LabelAdd {
		if k == "" {
			return BadRequest("label keys must not be empty")
		}
	}
	return nil
}

func (h *nodeHandlers) remove(w http.ResponseWriter, r *http.Request) (any, error) {
	if err := h.c.InCluster(); err != nil {
		return nil, err
	}
	force := r.URL.Query().Get("force") == "1" || r.URL.Query().Get("force") == "true"
	if err := h.c.RemoveNode(r.Context(), r.PathValue("id"), force); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// NodeUpdateHandler is the node update route on its own, for the
// dashboard, which serves the CLI's handlers under its own guard.
func NodeUpdateHandler(c Cluster) HandlerFunc { return (&nodeHandlers{c: c}).update }
