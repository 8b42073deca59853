package node

// The web dashboard (`shoal agent --ui-addr ADDR:PORT`, off by default).
//
// Why it looks like this:
//
//   - The page is plain HTML, CSS and JavaScript embedded in the binary
//     (node/ui/): no CDN, no build step, so it works on an air-gapped
//     cluster and the binary stays the only artefact.
//   - What the page shows is one JSON document (uiState) built from one
//     Store.Snapshot(), pushed again over a server-sent-event stream after
//     every change the store applies (Store.Subscribe), so the page never
//     polls and never mixes two states.
//   - Buttons call the very handlers the CLI reaches over the unix socket
//     (handleServiceScale, handleNodeUpdate): validation, forwarding to the
//     leader and read-your-writes are the CLI's, not a second copy.
//
// Who may use it. The unix socket is root-only, and root on a node is an
// admin (DESIGN.md, trust model); the dashboard must not be a way around
// that. So:
//
//   - Without a UI token the dashboard binds only a loopback address, and
//     refuses requests whose Host header is not a loopback name: a web page
//     elsewhere cannot reach it through DNS rebinding.
//   - With a token (DATA/ui-token, 0600, written by `shoal ui token`) every
//     API request carries it in the X-Shoal-UI-Token header, compared in
//     constant time. Only then may --ui-addr be a non-loopback address: the
//     agent refuses to start otherwise. The token is never accepted from a
//     cookie, so a browser never attaches it on its own.
//   - Requests that change state also need the X-Shoal-UI header and, when
//     the browser sends an Origin, one equal to the page's own: a form or a
//     script on another site cannot add a custom header without a CORS
//     preflight, which the dashboard never answers (CSRF).
//   - Responses forbid framing (clickjacking of the buttons) and carry a
//     Content-Security-Policy allowing only the page's own files.

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/shoal-org/shoal/api"
)

//go:embed ui
var uiAssets embed.FS

// UITokenFile is the name of the dashboard token's file in the data dir.
const UITokenFile = "ui-token"

// uiTokenPrefix marks a dashboard token so it is not mistaken for a join token.
const uiTokenPrefix = "SHOALUI-"

// Headers of the dashboard's API.
const (
	// uiTokenHeader carries the UI token.
	uiTokenHeader = "X-Shoal-UI-Token"
	// uiCSRFHeader must be present on state-changing requests.
	uiCSRFHeader = "X-Shoal-UI"
)

// Sentinel errors of the dashboard.
var (
	// ErrNoUIToken: no UI token exists in the data dir.
	ErrNoUIToken = errors.New("no UI token: create one with `shoal ui token`")
	// ErrUINeedsToken: --ui-addr is not a loopback address and no UI token exists.
	ErrUINeedsToken = errors.New("a non-loopback --ui-addr needs a UI token")
)

// UITokenPath is where the UI token of the agent with this data dir lives.
func UITokenPath(dataDir string) string { return filepath.Join(dataDir, UITokenFile) }

// LoadUIToken reads the UI token of dataDir; ErrNoUIToken if there is none.
// The file is opened without following links and read with a size cap.
func LoadUIToken(dataDir string) (string, error) {
	f, err := os.OpenFile(UITokenPath(dataDir), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, os.ErrNotExist) {
		return "", ErrNoUIToken
	}
	if err != nil {
		return "", fmt.Errorf("read UI token: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 256))
	if err != nil {
		return "", fmt.Errorf("read UI token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if !strings.HasPrefix(tok, uiTokenPrefix) || len(tok) < len(uiTokenPrefix)+32 {
		return "", fmt.Errorf("UI token file %s is malformed: rotate it with `shoal ui token --rotate`", UITokenPath(dataDir))
	}
	return tok, nil
}

// EnsureUIToken returns the UI token of dataDir, creating it (0600) when
// there is none or when rotate is set. A running agent picks up a new or
// rotated token at its next request.
func EnsureUIToken(dataDir string, rotate bool) (string, error) {
	if !rotate {
		tok, err := LoadUIToken(dataDir)
		if !errors.Is(err, ErrNoUIToken) {
			return tok, err
		}
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("UI token: %w", err)
	}
	tok := uiTokenPrefix + hex.EncodeToString(b)
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", fmt.Errorf("UI token: create data dir: %w", err)
	}
	if err := writeFileAtomic(UITokenPath(dataDir), []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("UI token: %w", err)
	}
	return tok, nil
}

// uiTokenSource reads the token file again when it changed (`shoal ui token
// --rotate` while the agent runs). Safe for concurrent use.
type uiTokenSource struct {
	dataDir string

	mu     sync.Mutex
	loaded bool
	stamp  string // size, mtime and inode of the file last read; "" = absent
	tok    string
	err    error
}

// token returns the current token, "" with a nil error when there is none.
// An unreadable or malformed file is an error: the caller refuses requests.
func (s *uiTokenSource) token() (string, error) {
	st, err := os.Lstat(UITokenPath(s.dataDir))
	stamp := ""
	if err == nil {
		var ino uint64
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			ino = sys.Ino
		}
		stamp = fmt.Sprintf("%d/%d/%d", st.Size(), st.ModTime().UnixNano(), ino)
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("UI token: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.loaded && stamp == s.stamp {
		return s.tok, s.err
	}
	s.loaded, s.stamp = true, stamp
	s.tok, s.err = "", nil
	if stamp != "" {
		s.tok, s.err = LoadUIToken(s.dataDir)
	}
	return s.tok, s.err
}

// uiAddrLoopback reports whether an --ui-addr host names a loopback address
// (an IP literal or "localhost"); the empty host (all addresses) is not.
func uiAddrLoopback(addr string) (bool, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false, fmt.Errorf("--ui-addr %q: want IP:PORT: %w", addr, err)
	}
	if _, err := net.LookupPort("tcp", port); err != nil || port == "" {
		return false, fmt.Errorf("--ui-addr %q: bad port", addr)
	}
	if strings.EqualFold(host, "localhost") {
		return true, nil
	}
	if host == "" {
		return false, nil
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return false, fmt.Errorf("--ui-addr %q: the host must be an IP address or localhost", addr)
	}
	return ip.IsLoopback(), nil
}

// loopbackHost reports whether a Host header names the loopback interface.
func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// uiGuard authenticates the dashboard's API requests.
type uiGuard struct {
	// loopback: the dashboard listens on a loopback address only, so it
	// may run without a token.
	loopback bool
	// token returns the configured token, "" if none.
	token func() (string, error)
}

// tokensEqual compares in constant time, whatever the lengths.
func tokensEqual(got, want string) bool {
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

// safeMethod: the request cannot change state.
func safeMethod(m string) bool { return m == http.MethodGet || m == http.MethodHead }

// check returns nil when r may proceed, else an *httpError (401 or 403).
func (g uiGuard) check(r *http.Request) error {
	if !safeMethod(r.Method) {
		if r.Header.Get(uiCSRFHeader) == "" {
			return &httpError{status: http.StatusForbidden, msg: "missing " + uiCSRFHeader + " header (cross-site request refused)"}
		}
		if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host && o != "https://"+r.Host {
			return &httpError{status: http.StatusForbidden, msg: "cross-origin request refused"}
		}
	}
	tok, err := g.token()
	if err != nil {
		return &httpError{status: http.StatusForbidden, msg: err.Error()}
	}
	if tok == "" {
		// No token: only a loopback listener, reached by a loopback name.
		if !g.loopback {
			return &httpError{status: http.StatusForbidden, msg: ErrNoUIToken.Error()}
		}
		if !loopbackHost(r.Host) {
			return &httpError{status: http.StatusForbidden, msg: "the dashboard answers only to a loopback host name without a UI token"}
		}
		return nil
	}
	got := r.Header.Get(uiTokenHeader)
	if got == "" {
		return &httpError{status: http.StatusUnauthorized, msg: "missing UI token (print it with `shoal ui token` on the node)"}
	}
	if !tokensEqual(got, tok) {
		return &httpError{status: http.StatusUnauthorized, msg: "wrong UI token"}
	}
	return nil
}

// uiSecurityHeaders are set on every dashboard response.
func uiSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}

// uiHandler is the dashboard: the embedded page, unauthenticated (it holds
// no data), and the API under /ui/v1/, behind the guard.
func (a *Agent) uiHandler(g uiGuard) http.Handler {
	assets, err := fs.Sub(uiAssets, "ui")
	if err != nil {
		panic(err) // the embed directive guarantees the directory
	}
	files := http.FileServerFS(assets)
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", files)
	mux.Handle("GET /app.js", files)
	mux.Handle("GET /style.css", files)

	api := http.NewServeMux()
	serve := func(pattern string, f handlerFunc) {
		api.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			v, err := f(w, r)
			if err != nil {
				writeError(w, err)
				return
			}
			if v != streamed {
				writeJSON(w, http.StatusOK, v)
			}
		})
	}
	serve("GET /ui/v1/state", func(w http.ResponseWriter, r *http.Request) (any, error) { return a.uiState(), nil })
	serve("GET /ui/v1/stream", a.handleUIStream)
	// The CLI's handlers: the same checks, forwarding and write path.
	serve("POST /ui/v1/services/{id}/scale", a.handleServiceScale)
	serve("POST /ui/v1/nodes/{id}/update", a.handleNodeUpdate)
	// The page asks first whether it may go on, so a locked dashboard
	// shows the token form rather than a failed request.
	mux.HandleFunc("GET /ui/v1/auth", func(w http.ResponseWriter, r *http.Request) {
		res := uiAuthResponse{OK: true}
		if tok, err := g.token(); err != nil || tok != "" {
			res.TokenRequired = true
		}
		if err := g.check(r); err != nil {
			res.OK, res.Error = false, err.Error()
		}
		writeJSON(w, http.StatusOK, res)
	})
	mux.Handle("/ui/v1/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := g.check(r); err != nil {
			writeError(w, err)
			return
		}
		api.ServeHTTP(w, r)
	}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		uiSecurityHeaders(w.Header())
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

// uiState is the document the page renders.
type uiState struct {
	Joined    bool   `json:"joined"`
	ClusterID string `json:"cluster_id,omitempty"`
	// NodeID and Hostname are the node serving the page.
	NodeID   string `json:"node_id"`
	Hostname string `json:"hostname"`
	// Leader is the leader's node ID as this node sees it.
	Leader   string      `json:"leader"`
	Index    uint64      `json:"index"`
	Nodes    []uiNode    `json:"nodes"`
	Services []uiService `json:"services"`
}

type uiNode struct {
	ID            string        `json:"id"`
	Hostname      string        `json:"hostname"`
	Addr          string        `json:"addr"`
	Status        string        `json:"status"`
	Availability  string        `json:"availability"`
	Role          string        `json:"role"`
	ManagerStatus string        `json:"manager_status"`
	Version       uint64        `json:"version"`
	Resources     api.Resources `json:"resources"`
	// Running counts the tasks running on the node.
	Running int `json:"running"`
}

type uiService struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Mode     string `json:"mode"`
	Image    string `json:"image"`
	Replicas uint64 `json:"replicas"`
	Running  int    `json:"running"`
	Version  uint64 `json:"version"`
	VIP      string `json:"vip,omitempty"`
	// Update is the rolling update's state, "" when none ran.
	Update string `json:"update,omitempty"`
	// Placement lists the service's current tasks by node, in the order
	// of Nodes; tasks not placed yet come last under an empty node_id.
	Placement []uiPlacement `json:"placement"`
}

type uiPlacement struct {
	NodeID   string   `json:"node_id"`
	Hostname string   `json:"hostname"`
	Tasks    []uiTask `json:"tasks"`
}

type uiTask struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Slot  int    `json:"slot"`
	State string `json:"state"`
	Error string `json:"error,omitempty"`
	IP    string `json:"ip,omitempty"`
}

// buildUIState shapes display nodes, services and tasks (as the API
// shows them) into the page's document. tasks are the ones meant to run;
// it is pure.
func buildUIState(head uiState, nodes []api.Node, services []api.Service, tasks []api.Task) uiState {
	st := head
	st.Nodes = make([]uiNode, 0, len(nodes))
	order := map[string]int{}
	for i, n := range nodes {
		order[n.ID] = i
		st.Nodes = append(st.Nodes, uiNode{ID: n.ID, Hostname: n.Hostname, Addr: n.Addr, Status: n.Status,
			Availability: n.Availability, Role: n.Role, ManagerStatus: n.ManagerStatus, Version: n.Version,
			Resources: n.Resources})
	}
	byService := map[string][]api.Task{}
	for _, t := range tasks {
		byService[t.ServiceID] = append(byService[t.ServiceID], t)
		if i, ok := order[t.NodeID]; ok && t.State == api.TaskRunning {
			st.Nodes[i].Running++
		}
	}
	st.Services = make([]uiService, 0, len(services))
	for _, s := range services {
		us := uiService{ID: s.ID, Name: s.Name, Mode: s.Mode, Image: s.Image, Replicas: s.Replicas,
			Running: s.Running, Version: s.Version, VIP: s.VIP, Placement: []uiPlacement{}}
		if s.UpdateStatus != nil {
			us.Update = s.UpdateStatus.State
		}
		groups := map[string]*uiPlacement{}
		for _, t := range byService[s.ID] {
			nodeID := t.NodeID
			if _, known := order[nodeID]; !known {
				nodeID = "" // unassigned, or on a node no longer listed
			}
			g := groups[nodeID]
			if g == nil {
				g = &uiPlacement{NodeID: nodeID, Hostname: t.Node, Tasks: []uiTask{}}
				if nodeID == "" {
					g.Hostname = ""
				}
				groups[nodeID] = g
			}
			g.Tasks = append(g.Tasks, uiTask{ID: t.ID, Name: t.Name, Slot: t.Slot, State: t.State, Error: t.Error, IP: t.IP})
		}
		for _, g := range groups {
			sort.SliceStable(g.Tasks, func(i, j int) bool {
				if g.Tasks[i].Slot != g.Tasks[j].Slot {
					return g.Tasks[i].Slot < g.Tasks[j].Slot
				}
				return g.Tasks[i].Name < g.Tasks[j].Name
			})
			us.Placement = append(us.Placement, *g)
		}
		sort.Slice(us.Placement, func(i, j int) bool {
			oi, iok := order[us.Placement[i].NodeID]
			oj, jok := order[us.Placement[j].NodeID]
			if iok != jok {
				return iok // placed before unplaced
			}
			return oi < oj
		})
		st.Services = append(st.Services, us)
	}
	sort.Slice(st.Services, func(i, j int) bool { return st.Services[i].Name < st.Services[j].Name })
	return st
}

// uiState reads this node's replica, from one snapshot.
func (a *Agent) uiState() uiState {
	head := uiState{NodeID: a.id.NodeID, Hostname: a.id.Hostname}
	cl, err := a.clusterOrErr()
	if err != nil {
		return buildUIState(head, nil, nil, nil)
	}
	head.Joined = true
	head.ClusterID = cl.id
	head.Leader, _ = cl.raft.Leader()
	view := &cluster{id: cl.id, store: cl.store.Snapshot()}
	head.Index = view.store.Index()
	nodes := a.decorateNodes(cl, view.store.Nodes())
	svcs := view.store.Services()
	services := make([]api.Service, 0, len(svcs))
	for _, s := range svcs {
		services = append(services, displayService(view, s))
	}
	tasks := displayTasks(view, view.store.Tasks(), api.TaskRunning)
	return buildUIState(head, nodes, services, tasks)
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
			return streamed, nil // the client went away
		}
		select {
		case <-r.Context().Done():
			return streamed, nil
		case <-a.ctx.Done():
			return streamed, nil
		case <-tick.C:
		case <-change:
			// Let a burst of entries (a scale writes several) land.
			t := time.NewTimer(uiStreamCoalesce)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return streamed, nil
			}
		}
	}
}

// newUIServer makes the dashboard's server; loopback says whether it
// listens on a loopback address only.
func (a *Agent) newUIServer(loopback bool) *http.Server {
	src := &uiTokenSource{dataDir: a.cfg.DataDir}
	g := uiGuard{loopback: loopback, token: src.token}
	return &http.Server{Handler: a.uiHandler(g), ReadHeaderTimeout: 10 * time.Second}
}

// listenUI checks --ui-addr against the token rule and binds it. A
// non-loopback address without a UI token is refused (ErrUINeedsToken).
func (a *Agent) listenUI() (net.Listener, bool, error) {
	loopback, err := uiAddrLoopback(a.cfg.UIAddr)
	if err != nil {
		return nil, false, err
	}
	if !loopback {
		if _, err := LoadUIToken(a.cfg.DataDir); err != nil {
			if errors.Is(err, ErrNoUIToken) {
				return nil, false, fmt.Errorf("%w: --ui-addr %s is not a loopback address; create a token first with `shoal ui token --data-dir %s`, or bind 127.0.0.1",
					ErrUINeedsToken, a.cfg.UIAddr, a.cfg.DataDir)
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
