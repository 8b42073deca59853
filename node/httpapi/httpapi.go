package node

// The HTTP/JSON API on the unix socket (routes in api/routes.go). Reads come
// from this node's replica of the state; writes go through write(), which
// forwards them to the leader.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
)

// httpError carries an HTTP status with a message for the CLI.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &httpError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &httpError{status: http.StatusNotFound, msg: fmt.Sprintf(format, args...)}
}

type handlerFunc func(w http.ResponseWriter, r *http.Request) (any, error)

func (a *Agent) routes() http.Handler {
	mux := http.NewServeMux()
	h := func(pattern string, f handlerFunc) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			v, err := f(w, r)
			if err != nil {
				writeError(w, err)
				return
			}
			if v == streamed {
				return
			}
			writeJSON(w, http.StatusOK, v)
		})
	}
	h("GET /v1/status", a.handleStatus)
	h("POST /v1/init", func(w http.ResponseWriter, r *http.Request) (any, error) { return a.initCluster(r.Context(), nil) })
	h("POST /v1/join", a.handleJoin)
	h("GET /v1/token", func(w http.ResponseWriter, r *http.Request) (any, error) { return a.tokenResponse(r.Context()) })
	h("POST /v1/token/rotate", func(w http.ResponseWriter, r *http.Request) (any, error) { return a.rotateToken(r.Context()) })
	h("POST /v1/ca/rotate", a.handleCARotate)
	h("POST /v1/leave", func(w http.ResponseWriter, r *http.Request) (any, error) {
		return struct{}{}, a.leave(r.Context())
	})
	h("GET /v1/nodes", a.handleNodes)
	h("GET /v1/nodes/{id}", a.handleNode)
	h("POST /v1/nodes/{id}/update", a.handleNodeUpdate)
	h("DELETE /v1/nodes/{id}", a.handleNodeRemove)
	a.imageRoutes(h)
	a.containerRoutes(h)
	a.serviceRoutes(h)
	a.secretRoutes(h)
	a.volumeRoutes(h)
	a.execRoutes(mux)
	a.networkRoutes(h)
	a.snapshotRoutes(h)
	h("GET /v1/events", a.handleEvents)
	return mux
}

// streamed is returned by handlers that wrote their own response.
var streamed = &struct{ streamed bool }{true}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	var he *httpError
	var re *rpcError
	switch {
	case errors.As(err, &he):
		status = he.status
	case errors.Is(err, ErrOutcomeUnknown):
		status = http.StatusServiceUnavailable
	case errors.Is(err, consensus.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, consensus.ErrAmbiguous), errors.Is(err, consensus.ErrInvalid),
		errors.Is(err, consensus.ErrNameTaken), errors.Is(err, consensus.ErrExists):
		status = http.StatusBadRequest
	case errors.Is(err, consensus.ErrVersionMismatch), errors.Is(err, ErrAlreadyInCluster),
		errors.Is(err, consensus.ErrInUse), errors.Is(err, consensus.ErrCommandUnsupported):
		status = http.StatusConflict
	case errors.Is(err, ErrNoCluster):
		status = http.StatusPreconditionFailed
	case errors.As(err, &re) && re.Code == codeRefused:
		status = http.StatusBadRequest
	case errors.Is(err, ErrForbidden), errors.Is(err, ErrWorker):
		status = http.StatusForbidden
	case errors.Is(err, ErrNoQuorum):
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, api.ErrorResponse{Error: err.Error()})
}

// maxBodyBytes bounds a JSON request body; image archives are streamed and
// not bounded by it.
const maxBodyBytes = 4 << 20

// errBodyTooLarge ends a request body read past maxBodyBytes.
var errBodyTooLarge = fmt.Errorf("request body larger than %d MiB", maxBodyBytes>>20)

// capReader reads at most n bytes, then fails with errBodyTooLarge rather
// than a silent EOF (which the JSON decoder would report as a truncated
// body).
type capReader struct {
	r io.Reader
	n int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		// One byte more tells a body of exactly n bytes from a longer one.
		var b [1]byte
		if n, _ := c.r.Read(b[:]); n > 0 {
			return 0, errBodyTooLarge
		}
		return 0, io.EOF
	}
	if int64(len(p)) > c.n {
		p = p[:c.n]
	}
	n, err := c.r.Read(p)
	c.n -= int64(n)
	return n, err
}

func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(&capReader{r: r.Body, n: maxBodyBytes})
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, errBodyTooLarge) {
			return &httpError{status: http.StatusRequestEntityTooLarge, msg: errBodyTooLarge.Error()}
		}
		return badRequest("malformed request body: %v", err)
	}
	return nil
}

func (a *Agent) handleStatus(w http.ResponseWriter, r *http.Request) (any, error) {
	st := api.Status{NodeID: a.id.NodeID, Hostname: a.id.Hostname, Addr: a.cfg.clusterAddr()}
	cl, err := a.clusterOrErr()
	if err != nil {
		return st, nil
	}
	st.Joined = true
	st.ClusterID = cl.id
	st.Leader, st.LeaderAddr = cl.raft.Leader()
	st.RaftState = cl.raft.State()
	st.LastIndex = cl.raft.LastIndex()
	st.Members = len(cl.members.aliveSet())
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
	return st, nil
}

func (a *Agent) handleJoin(w http.ResponseWriter, r *http.Request) (any, error) {
	var req api.JoinRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if req.Token == "" || req.Addr == "" {
		return nil, badRequest("join needs a token and the address of a cluster node (HOST:PORT)")
	}
	if err := a.joinCluster(r.Context(), req); err != nil {
		return nil, &httpError{status: http.StatusBadRequest, msg: err.Error()}
	}
	return a.handleStatus(w, r)
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
		nn.AgentVersion = cl.members.versionOf(n.ID)
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

func (a *Agent) handleNodes(w http.ResponseWriter, r *http.Request) (any, error) {
	cl, err := a.consistentCluster(r)
	if err != nil {
		return nil, err
	}
	return a.decorateNodes(cl, cl.store.Nodes()), nil
}

func (a *Agent) resolveNode(cl *cluster, ref string) (*api.Node, error) {
	n, err := cl.store.ResolveNode(ref)
	if err != nil {
		if errors.Is(err, consensus.ErrNotFound) {
			return nil, notFound("no such node: %s", ref)
		}
		return nil, badRequest("node %s: %v", ref, err)
	}
	return n, nil
}

func (a *Agent) handleNode(w http.ResponseWriter, r *http.Request) (any, error) {
	cl, err := a.consistentCluster(r)
	if err != nil {
		return nil, err
	}
	n, err := a.resolveNode(cl, r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	return a.decorateNodes(cl, []*api.Node{n})[0], nil
}

func (a *Agent) handleNodeUpdate(w http.ResponseWriter, r *http.Request) (any, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	var upd api.NodeUpdate
	if err := decodeBody(r, &upd); err != nil {
		return nil, err
	}
	switch upd.Availability {
	case "", api.AvailabilityActive, api.AvailabilityPause, api.AvailabilityDrain:
	default:
		return nil, badRequest("invalid availability %q: use active, pause or drain", upd.Availability)
	}
	for k := range upd.LabelAdd {
		if k == "" {
			return nil, badRequest("label keys must not be empty")
		}
	}
	if err := a.syncReplica(r.Context(), cl); err != nil {
		return nil, err
	}
	n, err := a.resolveNode(cl, r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	if _, err := a.write(r.Context(), &consensus.UpdateNode{ID: n.ID, Update: upd, Now: time.Now().UTC()}); err != nil {
		return nil, err
	}
	a.waitLocal(r.Context(), cl, func() bool {
		cur, err := cl.store.Node(n.ID)
		return err == nil && cur.Version > n.Version
	})
	cur, err := cl.store.Node(n.ID)
	if err != nil {
		return nil, err
	}
	return a.decorateNodes(cl, []*api.Node{cur})[0], nil
}

func (a *Agent) handleNodeRemove(w http.ResponseWriter, r *http.Request) (any, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	if err := a.syncReplica(r.Context(), cl); err != nil {
		return nil, err
	}
	n, err := a.resolveNode(cl, r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	force := r.URL.Query().Get("force") == "1" || r.URL.Query().Get("force") == "true"
	err = a.forwardToLeader(r.Context(), cl, func(ctx context.Context, addr string) error {
		if cl.raft.IsLeader() {
			return a.removeNodeAsLeader(ctx, cl, n.ID, force)
		}
		return callRPC(ctx, addr, cl.client, rpcAdmin, adminRPCRequest{Op: "remove", NodeID: n.ID, Force: force}, nil, nil)
	})
	if err != nil {
		return nil, err
	}
	return struct{}{}, nil
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
