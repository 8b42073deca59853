package node

// The agent's side of the web dashboard (node/ui holds the page, the token,
// the guard and the pure shaping of the state; its why-block says who may
// use it): the server, the state document read from one Store.Snapshot(),
// the server-sent-event stream, and the CLI's own handlers for scale and
// node update.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/handlers"
	"github.com/shoal-org/shoal/node/httpapi"
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

// uiRefusal turns the guard's refusal into the API's error with its status.
func uiRefusal(err error) error {
	var r *ui.Refusal
	if errors.As(err, &r) {
		return &httpError{status: r.Status, msg: r.Msg}
	}
	return err
}

// uiHandler is the dashboard: the embedded page, unauthenticated (it holds
// no data), and the API under /ui/v1/, behind the guard.
func (a *Agent) uiHandler(g ui.Guard) http.Handler {
	files := http.FileServerFS(ui.Assets())
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", files)
	mux.Handle("GET /app.js", files)
	mux.Handle("GET /style.css", files)

	// The same encoding and error mapping as the API socket.
	api := httpapi.NewRouter(apiErrors)
	serve := api.Handle
	serve("GET /ui/v1/state", func(w http.ResponseWriter, r *http.Request) (any, error) { return a.uiState(), nil })
	serve("GET /ui/v1/stream", a.handleUIStream)
	// The CLI's handlers: the same checks, forwarding and write path.
	serve("POST /ui/v1/services/{id}/scale", a.handleServiceScale)
	serve("POST /ui/v1/nodes/{id}/update", a.handleNodeUpdate)
	// The page asks first whether it may go on, so a locked dashboard
	// shows the token form rather than a failed request.
	mux.HandleFunc("GET /ui/v1/auth", func(w http.ResponseWriter, r *http.Request) {
		res := uiAuthResponse{OK: true}
		if tok, err := g.Token(); err != nil || tok != "" {
			res.TokenRequired = true
		}
		if err := g.Check(r); err != nil {
			res.OK, res.Error = false, err.Error()
		}
		writeJSON(w, http.StatusOK, res)
	})
	mux.Handle("/ui/v1/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := g.Check(r); err != nil {
			writeError(w, uiRefusal(err))
			return
		}
		api.Mux().ServeHTTP(w, r)
	}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ui.SecurityHeaders(w.Header())
		mux.ServeHTTP(w, r)
	})
}

// uiAuthResponse answers GET /ui/v1/auth: whether the request's
// credentials would be accepted.
type uiAuthResponse struct {
	TokenRequired bool   `json:"token_required"`
	OK            bool   `json:"ok"`
	Error         string `json:"error,omitempty"`
}

// uiState reads this node's replica, from one snapshot.
func (a *Agent) uiState() ui.State {
	head := ui.State{NodeID: a.id.NodeID, Hostname: a.id.Hostname}
	cl, err := a.clusterOrErr()
	if err != nil {
		return ui.BuildState(head, nil, nil, nil)
	}
	head.Joined = true
	head.ClusterID = cl.id
	head.Leader, _ = cl.raft.Leader()
	view := cl.store.Snapshot()
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
// not announce (a new leader, joining or leaving a cluster). A variable so
// a test can show that store changes are pushed without it.
var uiStreamRecheck = 2 * time.Second

// uiStreamKeepalive bounds the silence on an idle stream, so proxies and
// the page notice a dead connection.
const uiStreamKeepalive = 15 * time.Second

// uiStreamCoalesce gathers a burst of applied entries into one push.
const uiStreamCoalesce = 100 * time.Millisecond

// handleUIStream pushes the state as server-sent events ("event: state"),
// once at once and again whenever it changed; it returns when the client
// goes or the agent stops.
func (a *Agent) handleUIStream(w http.ResponseWriter, r *http.Request) (any, error) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		return nil, errors.New("streaming unsupported")
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	flusher.Flush()

	var last []byte
	lastWrite := time.Now()
	push := func() error {
		b, err := json.Marshal(a.uiState())
		if err != nil {
			return err
		}
		if bytes.Equal(b, last) {
			if time.Since(lastWrite) < uiStreamKeepalive {
				return nil
			}
			_, err = io.WriteString(w, ": keepalive\n\n")
		} else {
			last = b
			_, err = fmt.Fprintf(w, "event: state\ndata: %s\n\n", b)
		}
		if err != nil {
			return err
		}
		lastWrite = time.Now()
		flusher.Flush()
		return nil
	}

	tick := time.NewTicker(uiStreamRecheck)
	defer tick.Stop()
	var (
		subCl  *cluster
		change <-chan uint64
		unsub  = func() {}
	)
	defer func() { unsub() }()
	for {
		if cl, _ := a.clusterOrErr(); cl != subCl {
			unsub()
			subCl, change, unsub = cl, nil, func() {}
			if cl != nil {
				change, unsub = cl.store.Subscribe()
			}
		}
		if err := push(); err != nil {
			return httpapi.Streamed, nil // the client went away
		}
		select {
		case <-r.Context().Done():
			return httpapi.Streamed, nil
		case <-a.ctx.Done():
			return httpapi.Streamed, nil
		case <-tick.C:
		case <-change:
			// Let a burst of entries (a scale writes several) land.
			t := time.NewTimer(uiStreamCoalesce)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return httpapi.Streamed, nil
			}
		}
	}
}

// newUIServer makes the dashboard's server; loopback says whether it
// listens on a loopback address only.
func (a *Agent) newUIServer(loopback bool) *http.Server {
	src := &ui.TokenSource{DataDir: a.cfg.DataDir}
	g := ui.Guard{Loopback: loopback, Token: src.Token}
	return &http.Server{Handler: a.uiHandler(g), ReadHeaderTimeout: 10 * time.Second}
}

// listenUI checks --ui-addr against the token rule and binds it. A
// non-loopback address without a UI token is refused (ui.ErrNeedsToken).
func (a *Agent) listenUI() (net.Listener, bool, error) {
	loopback, err := ui.AddrLoopback(a.cfg.UIAddr)
	if err != nil {
		return nil, false, err
	}
	if !loopback {
		if _, err := ui.LoadToken(a.cfg.DataDir); err != nil {
			if errors.Is(err, ui.ErrNoToken) {
				return nil, false, fmt.Errorf("%w: --ui-addr %s is not a loopback address; create a token first with `shoal ui token --data-dir %s`, or bind 127.0.0.1",
					ui.ErrNeedsToken, a.cfg.UIAddr, a.cfg.DataDir)
			}
			return nil, false, err
		}
	}
	addr := a.cfg.UIAddr
	if host, port, _ := net.SplitHostPort(addr); strings.EqualFold(host, "localhost") {
		addr = net.JoinHostPort("127.0.0.1", port)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, false, fmt.Errorf("dashboard: %w", err)
	}
	return ln, loopback, nil
}
