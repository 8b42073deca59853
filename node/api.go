package node

// The agent's side of the API socket: the route table, the agent's
// sentinel errors for the status mapping, and the narrow views of the
// agent the route packages get: apiAgent (node/httpapi's cluster and node
// routes), replicaAgent (node/handlers: services, networks, secrets and
// configs over the replica) and localAgent (node/localapi: images,
// containers, exec; this node's volumes are localapi.Volumes over the
// runtime). The handlers still in this package (init, token, CA
// rotation, leave, service logs, snapshots, events) use the short names
// below.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/authz"
	"github.com/shoal-org/shoal/node/events"
	"github.com/shoal-org/shoal/node/handlers"
	"github.com/shoal-org/shoal/node/httpapi"
	"github.com/shoal-org/shoal/node/identity"
	"github.com/shoal-org/shoal/node/instance"
	"github.com/shoal-org/shoal/node/localapi"
	"github.com/shoal-org/shoal/node/netloop"
	"github.com/shoal-org/shoal/node/wire"
	"github.com/shoal-org/shoal/runtime"
)

// apiErrors maps the agent's sentinel errors to HTTP statuses (httpapi).
var apiErrors = httpapi.Errors{
	OutcomeUnknown:   ErrOutcomeUnknown,
	AlreadyInCluster: ErrAlreadyInCluster,
	LastMember:       ErrLastMember,
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

func (a *Agent) routes() http.Handler {
	rt := httpapi.NewRouter(apiErrors)
	h := rt.Handle
	httpapi.NodeRoutes(rt, apiAgent{a})
	h("POST /v1/init", func(w http.ResponseWriter, r *http.Request) (any, error) { return a.initCluster(r.Context(), nil) })
	h("GET /v1/token", func(w http.ResponseWriter, r *http.Request) (any, error) { return a.tokenResponse(r.Context()) })
	h("POST /v1/token/rotate", func(w http.ResponseWriter, r *http.Request) (any, error) { return a.rotateToken(r.Context()) })
	h("POST /v1/ca/rotate", a.handleCARotate)
	h("POST /v1/leave", func(w http.ResponseWriter, r *http.Request) (any, error) {
		force := r.URL.Query().Get("force") == "1" || r.URL.Query().Get("force") == "true"
		return struct{}{}, a.leave(r.Context(), force)
	})
	a.localRoutes().Register(rt)
	cluster := handlers.New(replicaAgent{a})
	httpapi.ServiceRoutes(rt, cluster)
	h("GET /v1/services/{id}/logs", handlers.ServiceLogs(replicaAgent{a}))
	httpapi.ObjectRoutes(rt, cluster)
	httpapi.VolumeRoutes(rt, localapi.Volumes{Store: a.rt})
	httpapi.NetworkRoutes(rt, cluster)
	handlers.SnapshotRoutes(rt, snapshotAgent{replicaAgent{a}}, a.log)
	h("GET /v1/events", events.StreamHandler(a.obs.hub, a.log))
	return rt.Mux()
}

// apiAgent is the agent as node/httpapi sees it.
type apiAgent struct{ a *Agent }

var _ httpapi.Cluster = apiAgent{}

func (x apiAgent) Status() api.Status { return x.a.status() }

func (x apiAgent) Join(ctx context.Context, req api.JoinRequest) error {
	return x.a.joinCluster(ctx, req)
}

func (x apiAgent) InCluster() error {
	_, err := x.a.clusterOrErr()
	return err
}

// ReplicaLoaded refuses a read of a replica that has not applied what
// this node's own log holds while no leader is reachable (raftnode's
// Loaded): after a restart without a quorum its lists were empty, which
// read as the cluster's services being gone (httpapi.ReplicaLoader). Right
// after a restart the leader may simply not be known yet, so it waits up
// to loadWait for the replica to load before it refuses.
func (x apiAgent) ReplicaLoaded(ctx context.Context) error {
	cl, err := x.a.clusterOrErr()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(loadWait)
	for {
		held, applied, ok := cl.Raft.Loaded()
		if ok {
			return nil
		}
		if id, _ := cl.Raft.Leader(); id != "" {
			return nil // catching up: the leader's commit index flows in
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: this node's copy of the cluster state is not loaded: its log holds entries up to index %d "+
				"and it has applied %d, but raft applies them only once a leader confirms them, and no leader is reachable "+
				"from this node (the cluster lost its quorum?). Read from a node that reaches the leader, or, if the other "+
				"voters are gone for good, restart this agent with --force-new-cluster", ErrNoQuorum, held, applied)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// loadWait is how long a read waits for a replica that is not loaded
// (ReplicaLoaded): an election after a restart takes about a second.
const loadWait = 3 * time.Second

func (x replicaAgent) ReplicaLoaded(ctx context.Context) error { return apiAgent(x).ReplicaLoaded(ctx) }

func (x apiAgent) SyncReplica(ctx context.Context) error {
	cl, err := x.a.clusterOrErr()
	if err != nil {
		return err
	}
	return cl.Writer().SyncReplica(ctx)
}

func (x apiAgent) Nodes() ([]api.Node, error) {
	cl, err := x.a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	return x.a.decorateNodes(cl, cl.Store.Nodes()), nil
}

func (x apiAgent) Node(ref string) (api.Node, error) {
	cl, err := x.a.clusterOrErr()
	if err != nil {
		return api.Node{}, err
	}
	n, err := handlers.ResolveNode(cl.Store, ref)
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
	if err := cl.Writer().SyncReplica(ctx); err != nil {
		return api.Node{}, err
	}
	n, err := handlers.ResolveNode(cl.Store, ref)
	if err != nil {
		return api.Node{}, err
	}
	if err := checkLabelRm(n, upd); err != nil {
		return api.Node{}, err
	}
	if _, err := a.write(ctx, &command.UpdateNode{ID: n.ID, Update: upd, Now: time.Now().UTC()}); err != nil {
		return api.Node{}, err
	}
	handlers.WaitLocal(ctx, cl.Store, func() bool {
		cur, err := cl.Store.Node(n.ID)
		return err == nil && cur.Version > n.Version
	})
	cur, err := cl.Store.Node(n.ID)
	if err != nil {
		return api.Node{}, err
	}
	return a.decorateNodes(cl, []*api.Node{cur})[0], nil
}

// checkLabelRm refuses a --label-rm of a key node n does not have (nor
// gets in the same update), as docker's node update does ("key K doesn't
// exist in node's labels"): a typo'd key otherwise removed nothing, changed
// the rest of the update, and said nothing. n is read after SyncReplica;
// the FSM itself keeps removing a missing key as a no-op (old log entries
// replay the same).
func checkLabelRm(n *api.Node, upd api.NodeUpdate) error {
	for _, k := range upd.LabelRm {
		if _, ok := n.Labels[k]; ok {
			continue
		}
		if _, ok := upd.LabelAdd[k]; ok {
			continue
		}
		return httpapi.BadRequest("key %q does not exist in the labels of node %s", k, n.Hostname)
	}
	return nil
}

func (x apiAgent) RemoveNode(ctx context.Context, ref string, force bool) error {
	a := x.a
	cl, err := a.clusterOrErr()
	if err != nil {
		return err
	}
	if err := cl.Writer().SyncReplica(ctx); err != nil {
		return err
	}
	n, err := handlers.ResolveNode(cl.Store, ref)
	if err != nil {
		return err
	}
	return cl.Forward(ctx, func(ctx context.Context, addr string) error {
		if cl.Raft.IsLeader() {
			return cl.Leader().Remove(ctx, n.ID, force)
		}
		return instance.Call(ctx, addr, cl.Client, wire.MethodAdmin, wire.AdminRequest{Op: "remove", NodeID: n.ID, Force: force}, nil, nil)
	})
}

// handleNodeUpdate is the node update route, for the dashboard.
func (a *Agent) handleNodeUpdate(w http.ResponseWriter, r *http.Request) (any, error) {
	return httpapi.NodeUpdateHandler(apiAgent{a})(w, r)
}

// status is GET /v1/status: identity, and the cluster as this node sees it
// (handlers.ClusterStatus).
func (a *Agent) status() api.Status {
	st := api.Status{NodeID: a.id.NodeID, Hostname: a.id.Hostname, Addr: a.cfg.ClusterAddr(), AgentVersion: Version}
	cl, err := a.clusterOrErr()
	if err != nil {
		return st
	}
	return handlers.ClusterStatus(st, cl.ID, cl.Raft, len(cl.Members.AliveSet()))
}

// decorateNodes fills ManagerStatus, Voter, the agent version and the
// status message from the Raft configuration, the leader this node sees
// and gossip.
func (a *Agent) decorateNodes(cl *instance.Instance, nodes []*api.Node) []api.Node {
	v := handlers.NewRaftView(cl.Raft, cl.Members.VersionOf)
	if cl.Members != nil {
		v.Self, v.Alive = a.id.NodeID, map[string]bool{}
		for id := range cl.Members.AliveSet() {
			v.Alive[id] = true
		}
		v.Unfit = cl.Members.Unfit()
	}
	return handlers.DecorateNodes(nodes, v)
}

// replicaAgent is the agent as node/handlers sees it.
type replicaAgent struct{ a *Agent }

var _ handlers.Agent = replicaAgent{}

func (x replicaAgent) Store() (*consensus.Store, error) {
	cl, err := x.a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	return cl.Store, nil
}

func (x replicaAgent) SyncReplica(ctx context.Context) error {
	return apiAgent(x).SyncReplica(ctx)
}

func (x replicaAgent) Write(ctx context.Context, cmd command.Command) error {
	_, err := x.a.write(ctx, cmd)
	return err
}

func (x replicaAgent) HasImage(ref string) bool {
	_, err := x.a.images.Get(ref)
	return err == nil
}

func (x replicaAgent) NewID() string { return identity.NewID() }

func (x replicaAgent) Preflight(fork *consensus.Store, cmd command.Command) error {
	cl, err := x.a.clusterOrErr()
	if err != nil {
		return err
	}
	return cl.Writer().Preflight(fork, cmd)
}

// handleServiceScale is the scale route, for the dashboard.
func (a *Agent) handleServiceScale(w http.ResponseWriter, r *http.Request) (any, error) {
	return httpapi.ServiceScaleHandler(handlers.New(replicaAgent{a}))(w, r)
}

// localRoutes are the routes of this node's images, containers and exec.
func (a *Agent) localRoutes() *localapi.Routes {
	return &localapi.Routes{Images: a.images, Containers: a.rt, Agent: localAgent{a}, Log: a.log, Stopping: a.ctx}
}

// localAgent is the agent as node/localapi sees it.
type localAgent struct{ a *Agent }

var _ localapi.Agent = localAgent{}

func (x localAgent) AnnounceImage(ctx context.Context, img api.Image, source string) {
	x.a.announceImage(ctx, img, source)
}

func (x localAgent) ForgetImage(ctx context.Context, id string) {
	a := x.a
	if _, err := a.clusterOrErr(); err != nil {
		return
	}
	if _, err := a.write(ctx, &command.SetImageNode{ImageID: id, NodeID: a.id.NodeID, Present: false}); err != nil {
		a.log.Warn("record image removal", "image", id, "err", err)
	}
}

// RunNetworks checks the networks of a `shoal run` container
// (handlers.RunNetworks) and returns ctx carrying them for the network
// attacher (netloop.WithNetworks).
func (x localAgent) RunNetworks(ctx context.Context, names []string) (context.Context, error) {
	if len(names) == 0 {
		return ctx, nil
	}
	cl, err := x.a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	out, err := handlers.RunNetworks(cl.Store, names)
	if err != nil {
		return nil, err
	}
	for _, name := range out {
		// A network with allocated shares gives this node one with its
		// first task there; a container that comes first claims it (the
		// attacher then waits for the overlay to come up).
		n, err := cl.Store.ResolveNetwork(name)
		if err != nil || n.ShareBits == 0 {
			continue
		}
		if _, ok := n.Shares[x.a.id.NodeID]; ok {
			continue
		}
		if _, err := x.a.write(ctx, &command.ClaimNetworkShare{Network: n.ID, NodeID: x.a.id.NodeID}); err != nil {
			return nil, fmt.Errorf("network %s: a share of its address space for this node: %w", n.Name, err)
		}
	}
	return netloop.WithNetworks(ctx, out), nil
}

// RecordRunContainers syncs this node's record of its run containers on
// networks (node/runattach) at once, best effort: the recorder's loop
// retries on its next event or resync.
func (x localAgent) RecordRunContainers(ctx context.Context) {
	cl, err := x.a.clusterOrErr()
	if err != nil {
		return
	}
	if r := cl.RunAttachments(); r != nil {
		if err := r.Sync(ctx); err != nil {
			x.a.log.Warn("run containers on networks not recorded yet", "err", err)
		}
	}
}

func (x localAgent) EnsureRunImage(ctx context.Context, ref string) error {
	a := x.a
	if _, err := a.images.Get(ref); err == nil {
		return nil
	}
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil
	}
	if _, ok := handlers.FindClusterImage(cl.Store, ref); !ok {
		return &httpError{status: http.StatusNotFound, msg: fmt.Sprintf("image %s not found on any node: import, load or pull it first (`shoal image import|load|pull`)", ref)}
	}
	if err := cl.EnsureImage(ctx, ref, nil); err != nil {
		return &httpError{status: http.StatusBadGateway, msg: err.Error()}
	}
	return nil
}

// TaskNode is the node another than this one that the task named name is
// meant to run on (localapi.Agent): its hostname, else its short ID. name
// is either form the container routes take: web.1 or web.1.TASKID.
func (x localAgent) TaskNode(name string) string {
	cl, err := x.a.clusterOrErr()
	if err != nil {
		return ""
	}
	for _, t := range cl.Store.Tasks() {
		// Both names the container routes take (api.TaskContainer).
		if (name != t.Name && name != t.Name+"."+t.ID) || t.DesiredState != api.TaskRunning || t.NodeID == "" || t.NodeID == x.a.id.NodeID {
			continue
		}
		if n, err := cl.Store.Node(t.NodeID); err == nil && n.Hostname != "" {
			return n.Hostname
		}
		return api.ShortID(t.NodeID)
	}
	return ""
}

// announceImage records a local image in the cluster state (best effort:
// a node in no cluster, or a cluster without quorum, keeps it local).
func (a *Agent) announceImage(ctx context.Context, img api.Image, source string) {
	if _, err := a.clusterOrErr(); err != nil {
		return
	}
	rec := img
	rec.Config = nil
	rec.Nodes = []string{a.id.NodeID}
	if rec.Source == "" {
		rec.Source = source
	}
	if _, err := a.write(ctx, &command.UpsertImage{Image: rec}); err != nil {
		a.log.Warn("record image in cluster", "image", img.ID, "err", err)
	}
}

// NodeLogs copies the log lines of containers, all on node n, into send:
// from the runtime when n is this node, else from n over the cluster port
// (one connection for up to wire.MaxLogsContainers of them).
func (x replicaAgent) NodeLogs(ctx context.Context, n *api.Node, containerIDs []string, opts runtime.LogOptions, send func(int, api.LogLine) bool) {
	a := x.a
	if n.ID == a.id.NodeID {
		var wg sync.WaitGroup
		for i, id := range containerIDs {
			ch, err := a.rt.Logs(ctx, id, opts)
			if err != nil {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for l := range ch {
					if !send(i, l) {
						return
					}
				}
			}()
		}
		wg.Wait()
		return
	}
	cl, err := a.clusterOrErr()
	if err != nil {
		return
	}
	_ = cl.RemoteLogsMulti(ctx, n, containerIDs, opts, send)
}
