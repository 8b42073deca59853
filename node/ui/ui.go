// Package ui is the web dashboard's own part (`shoal agent --ui-addr`):
// the page embedded from this directory, the UI token file, the guard every
// API request passes, and the pure shaping of the replica into the page's
// document (BuildState). The agent (node/dashboard.go) serves it and feeds
// it the state.
package ui

// The web dashboard (`shoal agent --ui-addr ADDR:PORT`, off by default).
//
// Why it looks like this:
//
//   - The page is plain HTML, CSS and JavaScript embedded in the binary
//     (this directory): no CDN, no build step, so it works on an air-gapped
//     cluster and the binary stays the only artefact.
//   - What the page shows is one JSON document (State) built from one
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
//   - Every API request carries the UI token (DATA/ui-token, 0600, written
//     by `shoal ui token`) in the X-Shoal-UI-Token header, compared in
//     constant time; the agent refuses --ui-addr until a token exists. A
//     loopback address is no exception: any local user can reach
//     127.0.0.1, and the dashboard must not give a non-root user what the
//     root-only socket refuses them. The token is never accepted from a
//     cookie, so a browser never attaches it on its own.
//   - On a loopback address it also refuses requests whose Host header is
//     not a loopback name: a web page elsewhere cannot reach it through
//     DNS rebinding.
//   - Requests that change state also need the X-Shoal-UI header and, when
//     the browser sends an Origin, one equal to the page's own: a form or a
//     script on another site cannot add a custom header without a CORS
//     preflight, which the dashboard never answers (CSRF).
//   - Responses forbid framing (clickjacking of the buttons) and carry a
//     Content-Security-Policy allowing only the page's own files.

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
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

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/api/atomicfile"
	"github.com/shoal-org/shoal/node/hostguard"
)

//go:embed index.html app.js style.css
var assets embed.FS

// Assets is the page: index.html, app.js and style.css.
func Assets() fs.FS { return assets }

// TokenFile is the name of the dashboard token's file in the data dir.
const TokenFile = "ui-token"

// tokenPrefix marks a dashboard token so it is not mistaken for a join token.
const tokenPrefix = "SHOALUI-"

// Headers of the dashboard's API.
const (
	// TokenHeader carries the UI token.
	TokenHeader = "X-Shoal-UI-Token"
	// CSRFHeader must be present on state-changing requests.
	CSRFHeader = "X-Shoal-UI"
)

// Sentinel errors of the dashboard.
var (
	// ErrNoToken: no UI token exists in the data dir.
	ErrNoToken = errors.New("no UI token: create one with `shoal ui token`")
	// ErrNeedsToken: --ui-addr is not a loopback address and no UI token exists.
	ErrNeedsToken = errors.New("--ui-addr needs a UI token")
)

// TokenPath is where the UI token of the agent with this data dir lives.
func TokenPath(dataDir string) string { return filepath.Join(dataDir, TokenFile) }

// LoadToken reads the UI token of dataDir; ErrNoToken if there is none.
// The file is opened without following links and read with a size cap.
func LoadToken(dataDir string) (string, error) {
	f, err := os.OpenFile(TokenPath(dataDir), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, os.ErrNotExist) {
		return "", ErrNoToken
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
	if !strings.HasPrefix(tok, tokenPrefix) || len(tok) < len(tokenPrefix)+32 {
		return "", fmt.Errorf("UI token file %s is malformed: rotate it with `shoal ui token --rotate`", TokenPath(dataDir))
	}
	return tok, nil
}

// EnsureToken returns the UI token of dataDir, creating it (0600) when
// there is none or when rotate is set. A running agent picks up a new or
// rotated token at its next request.
func EnsureToken(dataDir string, rotate bool) (string, error) {
	if !rotate {
		tok, err := LoadToken(dataDir)
		if !errors.Is(err, ErrNoToken) {
			return tok, err
		}
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("UI token: %w", err)
	}
	tok := tokenPrefix + hex.EncodeToString(b)
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", fmt.Errorf("UI token: create data dir: %w", err)
	}
	if err := atomicfile.WriteFile(TokenPath(dataDir), []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("UI token: %w", err)
	}
	return tok, nil
}

// TokenSource reads the token file again when it changed (`shoal ui token
// --rotate` while the agent runs). Safe for concurrent use; the zero value
// with DataDir set is ready.
type TokenSource struct {
	DataDir string

	mu     sync.Mutex
	loaded bool
	stamp  string // size, mtime and inode of the file last read; "" = absent
	tok    string
	err    error
}

// Token returns the current token, "" with a nil error when there is none.
// An unreadable or malformed file is an error: the caller refuses requests.
func (s *TokenSource) Token() (string, error) {
	st, err := os.Lstat(TokenPath(s.DataDir))
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
		s.tok, s.err = LoadToken(s.DataDir)
	}
	return s.tok, s.err
}

// AddrLoopback reports whether an --ui-addr host names a loopback address
// (an IP literal or "localhost"); the empty host (all addresses) is not.
func AddrLoopback(addr string) (bool, error) {
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

// Guard authenticates the dashboard's API requests.
type Guard struct {
	// Loopback: the dashboard listens on a loopback address only, so it
	// may run without a token.
	Loopback bool
	// Token returns the configured token, "" if none (TokenSource.Token).
	Token func() (string, error)
}

// Refusal is why Guard.Check refused a request, with the HTTP status to
// answer (401 without or with a wrong token, 403 otherwise).
type Refusal struct {
	Status int
	Msg    string
}

func (r *Refusal) Error() string { return r.Msg }

// tokensEqual compares in constant time, whatever the lengths.
func tokensEqual(got, want string) bool {
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

// safeMethod: the request cannot change state.
func safeMethod(m string) bool { return m == http.MethodGet || m == http.MethodHead }

// Check returns nil when r may proceed, else a *Refusal (401 or 403).
func (g Guard) Check(r *http.Request) error {
	if !safeMethod(r.Method) {
		if r.Header.Get(CSRFHeader) == "" {
			return &Refusal{Status: http.StatusForbidden, Msg: "missing " + CSRFHeader + " header (cross-site request refused)"}
		}
		if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host && o != "https://"+r.Host {
			return &Refusal{Status: http.StatusForbidden, Msg: "cross-origin request refused"}
		}
	}
	tok, err := g.Token()
	if err != nil {
		return &Refusal{Status: http.StatusForbidden, Msg: err.Error()}
	}
	if tok == "" {
		return &Refusal{Status: http.StatusForbidden, Msg: ErrNoToken.Error()}
	}
	if g.Loopback && !hostguard.LoopbackHost(r.Host) {
		// A loopback listener reached by another name is DNS rebinding.
		return &Refusal{Status: http.StatusForbidden, Msg: "the dashboard on a loopback address answers only to a loopback host name"}
	}
	got := r.Header.Get(TokenHeader)
	if got == "" {
		return &Refusal{Status: http.StatusUnauthorized, Msg: "missing UI token (print it with `shoal ui token` on the node)"}
	}
	if !tokensEqual(got, tok) {
		return &Refusal{Status: http.StatusUnauthorized, Msg: "wrong UI token"}
	}
	return nil
}

// SecurityHeaders are set on every dashboard response.
func SecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}

// State is the document the page renders.
type State struct {
	Joined    bool   `json:"joined"`
	ClusterID string `json:"cluster_id,omitempty"`
	// NodeID and Hostname are the node serving the page.
	NodeID   string `json:"node_id"`
	Hostname string `json:"hostname"`
	// Leader is the leader's node ID as this node sees it.
	Leader   string    `json:"leader"`
	Index    uint64    `json:"index"`
	Nodes    []Node    `json:"nodes"`
	Services []Service `json:"services"`
}

// Node is a node on the page.
type Node struct {
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

// Service is a service on the page.
type Service struct {
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
	Placement []Placement `json:"placement"`
}

// Placement is a service's tasks on one node.
type Placement struct {
	NodeID   string `json:"node_id"`
	Hostname string `json:"hostname"`
	Tasks    []Task `json:"tasks"`
}

// Task is a task on the page.
type Task struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Slot  int    `json:"slot"`
	State string `json:"state"`
	Error string `json:"error,omitempty"`
	IP    string `json:"ip,omitempty"`
}

// BuildState shapes display nodes, services and tasks (as the API
// shows them) into the page's document. tasks are the ones meant to run;
// it is pure.
func BuildState(head State, nodes []api.Node, services []api.Service, tasks []api.Task) State {
	st := head
	st.Nodes = make([]Node, 0, len(nodes))
	order := map[string]int{}
	for i, n := range nodes {
		order[n.ID] = i
		st.Nodes = append(st.Nodes, Node{ID: n.ID, Hostname: n.Hostname, Addr: n.Addr, Status: n.Status,
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
	st.Services = make([]Service, 0, len(services))
	for _, s := range services {
		us := Service{ID: s.ID, Name: s.Name, Mode: s.Mode, Image: s.Image, Replicas: s.Replicas,
			Running: s.Running, Version: s.Version, VIP: s.VIP, Placement: []Placement{}}
		if s.UpdateStatus != nil {
			us.Update = s.UpdateStatus.State
		}
		groups := map[string]*Placement{}
		for _, t := range byService[s.ID] {
			nodeID := t.NodeID
			if _, known := order[nodeID]; !known {
				nodeID = "" // unassigned, or on a node no longer listed
			}
			g := groups[nodeID]
			if g == nil {
				g = &Placement{NodeID: nodeID, Hostname: t.Node, Tasks: []Task{}}
				if nodeID == "" {
					g.Hostname = ""
				}
				groups[nodeID] = g
			}
			g.Tasks = append(g.Tasks, Task{ID: t.ID, Name: t.Name, Slot: t.Slot, State: t.State, Error: t.Error, IP: t.IP})
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
