package ui

// The dashboard's HTTP side: the page (unauthenticated: it holds no data),
// and /ui/v1/ behind the Guard — the state document, its server-sent-event
// stream, and the CLI's own handlers for scale and node update, which the
// agent hands over (Backend) so the dashboard never has a second copy of
// their checks, forwarding or write path.

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

	"github.com/shoal-org/shoal/node/httpapi"
)

// Replica is the agent's replica as the stream watches it
// (consensus.Store): Subscribe fires after entries are applied; its cancel
// is safe to call twice.
type Replica interface {
	Subscribe() (<-chan uint64, func())
}

// Backend is what the dashboard needs of the agent. Its methods are safe
// for concurrent use and never block long.
type Backend interface {
	// State is the page's document, from one snapshot of the replica.
	State() State
	// Replica is the replica the node has now, nil while it is in no
	// cluster; a different value after a join, a leave or a reset.
	Replica() Replica
	// Stopping is closed when the agent stops; open streams end with it.
	Stopping() <-chan struct{}
	// Scale and UpdateNode are the CLI's handlers of
	// POST /v1/services/{id}/scale and POST /v1/nodes/{id}/update.
	Scale(w http.ResponseWriter, r *http.Request) (any, error)
	UpdateNode(w http.ResponseWriter, r *http.Request) (any, error)
}

// StreamTiming is the pace of the state stream.
type StreamTiming struct {
	// Recheck is how often the stream looks for changes the replica does
	// not announce (a new leader, joining or leaving a cluster).
	Recheck time.Duration
	// Keepalive bounds the silence on an idle stream, so proxies and the
	// page notice a dead connection.
	Keepalive time.Duration
	// Coalesce gathers a burst of applied entries into one push.
	Coalesce time.Duration
}

// DefaultStreamTiming is the stream's pace in production.
func DefaultStreamTiming() StreamTiming {
	return StreamTiming{Recheck: 2 * time.Second, Keepalive: 15 * time.Second, Coalesce: 100 * time.Millisecond}
}

// AuthResponse answers GET /ui/v1/auth: whether the request's credentials
// would be accepted.
type AuthResponse struct {
	TokenRequired bool   `json:"token_required"`
	OK            bool   `json:"ok"`
	Error         string `json:"error,omitempty"`
}

// refusalError gives a Guard refusal its status for httpapi.Errors.
func refusalError(err error) error {
	var r *Refusal
	if errors.As(err, &r) {
		return &httpapi.Error{Status: r.Status, Msg: r.Msg}
	}
	return err
}

// Handler is the dashboard: the embedded page, and the API under /ui/v1/
// behind g, answering errors as the API socket does (errs).
func Handler(g Guard, b Backend, errs httpapi.Errors, timing StreamTiming) http.Handler {
	files := http.FileServerFS(Assets())
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", files)
	mux.Handle("GET /app.js", files)
	mux.Handle("GET /style.css", files)

	// The same encoding and error mapping as the API socket.
	rt := httpapi.NewRouter(errs)
	serve := rt.Handle
	serve("GET /ui/v1/state", func(w http.ResponseWriter, r *http.Request) (any, error) { return b.State(), nil })
	serve("GET /ui/v1/stream", func(w http.ResponseWriter, r *http.Request) (any, error) {
		return stream(w, r, b, timing)
	})
	// The CLI's handlers: the same checks, forwarding and write path.
	serve("POST /ui/v1/services/{id}/scale", b.Scale)
	serve("POST /ui/v1/nodes/{id}/update", b.UpdateNode)
	// The page asks first whether it may go on, so a locked dashboard
	// shows the token form rather than a failed request.
	mux.HandleFunc("GET /ui/v1/auth", func(w http.ResponseWriter, r *http.Request) {
		res := AuthResponse{OK: true}
		if tok, err := g.Token(); err != nil || tok != "" {
			res.TokenRequired = true
		}
		if err := g.Check(r); err != nil {
			res.OK, res.Error = false, err.Error()
		}
		httpapi.WriteJSON(w, http.StatusOK, res)
	})
	mux.Handle("/ui/v1/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := g.Check(r); err != nil {
			rt.WriteError(w, refusalError(err))
			return
		}
		rt.Mux().ServeHTTP(w, r)
	}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		SecurityHeaders(w.Header())
		mux.ServeHTTP(w, r)
	})
}

// stream pushes the state as server-sent events ("event: state"), once at
// once and again whenever it changed; it returns when the client goes or
// the agent stops.
func stream(w http.ResponseWriter, r *http.Request, b Backend, timing StreamTiming) (any, error) {
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
		body, err := json.Marshal(b.State())
		if err != nil {
			return err
		}
		if bytes.Equal(body, last) {
			if time.Since(lastWrite) < timing.Keepalive {
				return nil
			}
			_, err = io.WriteString(w, ": keepalive\n\n")
		} else {
			last = body
			_, err = fmt.Fprintf(w, "event: state\ndata: %s\n\n", body)
		}
		if err != nil {
			return err
		}
		lastWrite = time.Now()
		flusher.Flush()
		return nil
	}

	tick := time.NewTicker(timing.Recheck)
	defer tick.Stop()
	var (
		sub    Replica
		change <-chan uint64
		unsub  = func() {}
	)
	defer func() { unsub() }()
	for {
		if cur := b.Replica(); cur != sub {
			unsub()
			sub, change, unsub = cur, nil, func() {}
			if cur != nil {
				change, unsub = cur.Subscribe()
			}
		}
		if err := push(); err != nil {
			return httpapi.Streamed, nil // the client went away
		}
		select {
		case <-r.Context().Done():
			return httpapi.Streamed, nil
		case <-b.Stopping():
			return httpapi.Streamed, nil
		case <-tick.C:
		case <-change:
			// Let a burst of entries (a scale writes several) land.
			t := time.NewTimer(timing.Coalesce)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return httpapi.Streamed, nil
			}
		}
	}
}

// Listen checks --ui-addr against the token rule and binds it; loopback
// says whether it is a loopback address. Without a UI token in dataDir it
// is refused (ErrNeedsToken), loopback or not; "localhost" binds
// 127.0.0.1.
func Listen(uiAddr, dataDir string) (ln net.Listener, loopback bool, err error) {
	loopback, err = AddrLoopback(uiAddr)
	if err != nil {
		return nil, false, err
	}
	if _, err := LoadToken(dataDir); err != nil {
		if errors.Is(err, ErrNoToken) {
			return nil, false, fmt.Errorf("%w: create a token first with `shoal ui token --data-dir %s` (--ui-addr %s)",
				ErrNeedsToken, dataDir, uiAddr)
		}
		return nil, false, err
	}
	addr := uiAddr
	if host, port, _ := net.SplitHostPort(addr); strings.EqualFold(host, "localhost") {
		addr = net.JoinHostPort("127.0.0.1", port)
	}
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		return nil, false, fmt.Errorf("dashboard: %w", err)
	}
	return ln, loopback, nil
}
