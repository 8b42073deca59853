package node

// The agent's side of the web dashboard (node/ui holds the page, the token,
// the guard, the handlers and the stream, and the pure shaping of the
// state; its why-block says who may use it): the listener, the state
// document read from one Store.Snapshot(), and the CLI's own handlers for
// scale and node update, handed to node/ui as its Backend.

import (
	"net"
	"net/http"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/handlers"
	"github.com/shoal-org/shoal/node/ui"
)

// Names of node/ui that cmd/shoal reaches through node (it may import only
// node and api).
const UITokenFile = ui.TokenFile

// EnsureUIToken returns the UI token of dataDir, creating it (0600) when
// there is none or when rotate is set (ui.EnsureToken).
func EnsureUIToken(dataDir string, rotate bool) (string, error) {
	return ui.EnsureToken(dataDir, rotate)
}

// uiHandler is the dashboard (node/ui Handler) over this agent.
func (a *Agent) uiHandler(g ui.Guard) http.Handler {
	timing := ui.DefaultStreamTiming()
	timing.Recheck = uiStreamRecheck
	return ui.Handler(g, uiBackend{a}, apiErrors, timing)
}

// uiAuthResponse answers GET /ui/v1/auth.
type uiAuthResponse = ui.AuthResponse

// uiBackend is the agent as the dashboard sees it.
type uiBackend struct{ a *Agent }

var _ ui.Backend = uiBackend{}

func (b uiBackend) State() ui.State { return b.a.uiState() }

func (b uiBackend) Replica() ui.Replica {
	cl, err := b.a.clusterOrErr()
	if err != nil {
		return nil
	}
	return cl.Store
}

func (b uiBackend) Stopping() <-chan struct{} { return b.a.ctx.Done() }

func (b uiBackend) Scale(w http.ResponseWriter, r *http.Request) (any, error) {
	return b.a.handleServiceScale(w, r)
}

func (b uiBackend) UpdateNode(w http.ResponseWriter, r *http.Request) (any, error) {
	return b.a.handleNodeUpdate(w, r)
}

// uiState reads this node's replica, from one snapshot.
func (a *Agent) uiState() ui.State {
	head := ui.State{NodeID: a.id.NodeID, Hostname: a.id.Hostname}
	cl, err := a.clusterOrErr()
	if err != nil {
		return ui.BuildState(head, nil, nil, nil)
	}
	head.Joined = true
	head.ClusterID = cl.ID
	head.Leader, _ = cl.Raft.Leader()
	view := cl.Store.Snapshot()
	head.Index = view.Index()
	nodes := a.decorateNodes(cl, view.Nodes())
	svcs := view.Services()
	services := make([]api.Service, 0, len(svcs))
	for _, s := range svcs {
		services = append(services, handlers.DisplayService(view, s))
	}
	tasks := handlers.DisplayTasks(view, view.Tasks(), api.TaskRunning)
	return ui.BuildState(head, nodes, services, tasks)
}

// uiStreamRecheck is how often the stream looks for changes the store does
// not announce (ui.StreamTiming). A variable so a test can show that store
// changes are pushed without it.
var uiStreamRecheck = ui.DefaultStreamTiming().Recheck

// newUIServer makes the dashboard's server; loopback says whether it
// listens on a loopback address only.
func (a *Agent) newUIServer(loopback bool) *http.Server {
	src := &ui.TokenSource{DataDir: a.cfg.DataDir}
	g := ui.Guard{Loopback: loopback, Token: src.Token}
	// Idle connections are closed and request bodies bounded in time: a
	// peer that opens connections and leaves them idle (any container or
	// LAN neighbour can reach a node address) must not hold the agent's
	// descriptors for good. No write timeout: the state stream is long.
	return &http.Server{Handler: a.uiHandler(g), ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, IdleTimeout: 60 * time.Second}
}

// listenUI binds --ui-addr (ui.Listen: a non-loopback address needs a
// UI token).
func (a *Agent) listenUI() (net.Listener, bool, error) {
	return ui.Listen(a.cfg.UIAddr, a.cfg.DataDir)
}
