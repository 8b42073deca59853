package node

// The agent's side of node/httpapi: the route table, the agent's sentinel
// errors for the status mapping, and apiAgent, through which the routes
// that moved to httpapi reach the replica and the write path. The
// handlers still in this package use the short names below.

import (
	"context"
	"errors"
	"net/http"
	"sort"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/authz"
	"github.com/shoal-org/shoal/node/httpapi"
	"github.com/shoal-org/shoal/node/wire"
	"github.com/shoal-org/shoal/runtime"
)

// apiErrors maps the agent's sentinel errors to HTTP statuses (httpapi).
var apiErrors = httpapi.Errors{
	OutcomeUnknown:   ErrOutcomeUnknown,
	AlreadyInCluster: ErrAlreadyInCluster,
	NoCluster:        ErrNoCluster,
	Forbidden:        authz.ErrForbidden,
	Worker:           authz.ErrWorker,
	NoQuorum:         ErrNoQuorum,
	Refused: func(err error) bool {
		var re *wire.Error
		return errors.As(err, &re) && re.Code == wire.CodeRefused
	},
}

// httpError is the status error of the handlers still in this package.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string   { return e.msg }
func (e *httpError) HTTPStatus() int { return e.status }

func writeError(w http.ResponseWriter, err error) { apiErrors.Write(w, err) }
func writeJSON(w http.ResponseWriter, status int, v any) {
	httpapi.WriteJSON(w, status, v)
}

func (a *Agent) routes() http.Handler {
	rt := httpapi.NewRouter(apiErrors)
	h := rt.Handle
	httpapi.NodeRoutes(rt, apiAgent{a})
	h("POST /v1/init", func(w http.ResponseWriter, r *http.Request) (any, error) { return a.initCluster(r.Context(), nil) })
	h("GET /v1/token", func(w http.ResponseWriter, r *http.Request) (any, error) { return a.tokenResponse(r.Context()) })
	h("POST /v1/token/rotate", func(w http.ResponseWriter, r *http.Request) (any, error) { return a.rotateToken(r.Context()) })
	h("POST /v1/ca/rotate", a.handleCARotate)
	h("POST /v1/leave", func(w http.ResponseWriter, r *http.Request) (any, error) {
		return struct{}{}, a.leave(r.Context())
	})
	a.imageRoutes(h)
	a.containerRoutes(h)
	httpapi.ServiceRoutes(rt, apiAgent{a})
	h("GET /v1/services/{id}/logs", a.handleServiceLogs)
	httpapi.ObjectRoutes(rt, apiAgent{a})
	httpapi.VolumeRoutes(rt, apiAgent{a})
	a.execRoutes(rt.Mux())
	httpapi.NetworkRoutes(rt, apiAgent{a})
	a.snapshotRoutes(h)
	h("GET /v1/events", a.handleEvents)
	return rt.Mux()
}

// apiAgent is the agent as node/httpapi sees it.
type apiAgent struct{ a *Agent }

var (
	_ httpapi.Cluster  = apiAgent{}
	_ httpapi.Networks = apiAgent{}
	_ httpapi.Services = apiAgent{}
	_ httpapi.Objects  = apiAgent{}
	_ httpapi.Volumes  = apiAgent{}
)

func (x apiAgent) Status() api.Status { return x.a.status() }

func (x apiAgent) Join(ctx context.Context, req api.JoinRequest) error {
	return x.a.joinCluster(ctx, req)
}

func (x apiAgent) InCluster() error {
	_, err := x.a.clusterOrErr()
	return err
}

func (x apiAgent) SyncReplica(ctx context.Context) error {
	cl, err := x.a.clusterOrErr()
	if err != nil {
		return err
	}
	return x.a.syncReplica(ctx, cl)
}

func (x apiAgent) Nodes() ([]api.Node, error) {
	cl, err := x.a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	return x.a.decorateNodes(cl, cl.store.Nodes()), nil
}

func (x apiAgent) Node(ref string) (api.Node, error) {
	cl, err := x.a.clusterOrErr()
	if err != nil {
		return api.Node{}, err
	}
	n, err := x.a.resolveNode(cl, ref)
	if err != nil {
		return api.Node{}, err
	}
	return x.a.decorateNodes(cl, []*api.Node{n})[0], nil
}

func (x apiAgent) UpdateNode(ctx context.Context, ref string, upd api.NodeUpdate) (api.Node, error) {
	a := x.a
	cl, err := a.clusterOrErr()
	if err != nil {
		return api.Node{}, err
	}
	if err := a.syncReplica(ctx, cl); err != nil {
		return api.Node{}, err
	}
	n, err := a.resolveNode(cl, ref)
	if err != nil {
		return api.Node{}, err
	}
	if _, err := a.write(ctx, &consensus.UpdateNode{ID: n.ID, Update: upd, Now: time.Now().UTC()}); err != nil {
		return api.Node{}, err
	}
	a.waitLocal(ctx, cl, func() bool {
		cur, err := cl.store.Node(n.ID)
		return err == nil && cur.Version > n.Version
	})
	cur, err := cl.store.Node(n.ID)
	if err != nil {
		return api.Node{}, err
	}
	return a.decorateNodes(cl, []*api.Node{cur})[0], nil
}

func (x apiAgent) RemoveNode(ctx context.Context, ref string, force bool) error {
	a := x.a
	cl, err := a.clusterOrErr()
	if err != nil {
		return err
	}
	if err := a.syncReplica(ctx, cl); err != nil {
		return err
	}
	n, err := a.resolveNode(cl, ref)
	if err != nil {
		return err
	}
	return a.forwardToLeader(ctx, cl, func(ctx context.Context, addr string) error {
		if cl.raft.IsLeader() {
			return a.removeNodeAsLeader(ctx, cl, n.ID, force)
		}
		return callRPC(ctx, addr, cl.client, wire.MethodAdmin, wire.AdminRequest{Op: "remove", NodeID: n.ID, Force: force}, nil, nil)
	})
}

// volumeError gives the runtime's volume errors their status.
func volumeError(err error) error {
	switch {
	case errors.Is(err, runtime.ErrVolumeNotFound):
		return &httpError{status: http.StatusNotFound, msg: err.Error()}
	case errors.Is(err, runtime.ErrVolumeInUse):
		return &httpError{status: http.StatusConflict, msg: err.Error()}
	case errors.Is(err, runtime.ErrInvalidSpec):
		return &httpError{status: http.StatusBadRequest, msg: err.Error()}
	}
	return err
}

func (x apiAgent) Volumes() ([]api.Volume, error) {
	vs, err := x.a.rt.Volumes()
	return vs, volumeError(err)
}

func (x apiAgent) Volume(name string) (api.Volume, error) {
	v, err := x.a.rt.Volume(name)
	return v, volumeError(err)
}

func (x apiAgent) CreateVolume(name string) (api.Volume, error) {
	v, err := x.a.rt.CreateVolume(name)
	return v, volumeError(err)
}

func (x apiAgent) RemoveVolume(name string) error { return volumeError(x.a.rt.RemoveVolume(name)) }

// handleNodeUpdate is the node update route, for the dashboard.
func (a *Agent) handleNodeUpdate(w http.ResponseWriter, r *http.Request) (any, error) {
	return httpapi.NodeUpdateHandler(apiAgent{a})(w, r)
}

// status is GET /v1/status: identity, and the cluster as this node sees it.
func (a *Agent) status() api.Status {
	st := api.Status{NodeID: a.id.NodeID, Hostname: a.id.Hostname, Addr: a.cfg.clusterAddr()}
	cl, err := a.clusterOrErr()
	if err != nil {
		return st
	}
	st.Joined = true
	st.ClusterID = cl.id
	st.Leader, st.LeaderAddr = cl.raft.Leader()
	st.RaftState = cl.raft.State()
	st.LastIndex = cl.raft.LastIndex()
	st.Members = len(cl.members.AliveSet())
	if servers, err := cl.raft.Servers(); err == nil {
		for _, s := range servers {
			if s.Voter {
				st.Voters = append(st.Voters, s.ID)
				if s.ID == a.id.NodeID {
					st.Voter = true
				}
			}
		}
	}
	sort.Strings(st.Voters)
	return st
}

// decorateNodes fills ManagerStatus and Voter from the Raft configuration
// and the leader this node sees.
func (a *Agent) decorateNodes(cl *cluster, nodes []*api.Node) []api.Node {
	leader, _ := cl.raft.Leader()
	voters := map[string]bool{}
	if servers, err := cl.raft.Servers(); err == nil {
		for _, s := range servers {
			voters[s.ID] = s.Voter
		}
	}
	out := make([]api.Node, 0, len(nodes))
	for _, n := range nodes {
		nn := *n
		nn.Voter = voters[n.ID]
		nn.AgentVersion = cl.members.VersionOf(n.ID)
		switch {
		case n.ID == leader && leader != "":
			nn.ManagerStatus = api.ManagerLeader
		case nn.Voter && n.Status == api.NodeReady:
			nn.ManagerStatus = api.ManagerReachable
		case nn.Voter:
			nn.ManagerStatus = api.ManagerUnreachable
		default:
			nn.ManagerStatus = ""
		}
		if nn.Labels == nil {
			nn.Labels = map[string]string{}
		}
		if nn.Role == "" {
			nn.Role = api.RoleManager
		}
		out = append(out, nn)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Hostname+out[i].ID < out[j].Hostname+out[j].ID })
	return out
}

func (a *Agent) resolveNode(cl *cluster, ref string) (*api.Node, error) {
	n, err := cl.store.ResolveNode(ref)
	if err != nil {
		if errors.Is(err, consensus.ErrNotFound) {
			return nil, httpapi.NotFound("no such node: %s", ref)
		}
		return nil, httpapi.BadRequest("node %s: %v", ref, err)
	}
	return n, nil
}

// waitLocal waits (bounded) until this node's replica satisfies cond, so a
// write answered through the leader is visible to the caller's next read.
func (a *Agent) waitLocal(ctx context.Context, cl *cluster, cond func() bool) {
	ch, cancel := cl.store.Subscribe()
	defer cancel()
	deadline := time.NewTimer(3 * time.Second)
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
