// Package httpapi is the HTTP side of the agent's API socket (routes in
// api/routes.go): routing, request decoding and validation, the mapping of
// errors to HTTP statuses and the encoding of responses. It talks to the
// agent through small interfaces (Cluster, in nodes.go) that node.Agent
// implements, so what a request may contain and what a caller sees for an
// error is decided, and tested, here without a cluster.
package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

// Error carries an HTTP status with a message for the CLI.
type Error struct {
	Status int
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

// HTTPStatus is the status the error answers with (StatusError).
func (e *Error) HTTPStatus() int { return e.Status }

// StatusError is an error that says its own HTTP status. Error is one;
// handlers not yet moved here keep their own type.
type StatusError interface {
	error
	HTTPStatus() int
}

// BadRequest is a 400 with a formatted message.
func BadRequest(format string, args ...any) error {
	return &Error{Status: http.StatusBadRequest, Msg: fmt.Sprintf(format, args...)}
}

// NotFound is a 404 with a formatted message.
func NotFound(format string, args ...any) error {
	return &Error{Status: http.StatusNotFound, Msg: fmt.Sprintf(format, args...)}
}

// HandlerFunc answers one route: the value is encoded as JSON with 200,
// the error through Errors.Write; Streamed says the handler wrote its own
// response.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) (any, error)

// Streamed is returned by handlers that wrote their own response.
var Streamed = &struct{ streamed bool }{true}

// Errors are the agent's sentinel errors the status mapping needs. They
// live with the code that returns them (node), which this package may not
// import (api/imports_test.go), so the agent hands them over.
type Errors struct {
	OutcomeUnknown   error // a write the leader may or may not have applied: 503
	AlreadyInCluster error // 409
	LastMember       error // 409: a leave that would erase the cluster
	NoCluster        error // 412
	Forbidden        error // 403
	Worker           error // 403
	NoQuorum         error // 503
	// Refused reports a refusal a peer sent back over RPC (bad input on
	// the leader): 400.
	Refused func(error) bool
}

// Status maps err to the HTTP status the CLI sees. The order matters for
// an error that wraps several: the first match wins.
func (e Errors) Status(err error) int {
	var se StatusError
	switch {
	case errors.As(err, &se):
		return se.HTTPStatus()
	case is(err, e.OutcomeUnknown):
		return http.StatusServiceUnavailable
	case errors.Is(err, consensus.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, consensus.ErrAmbiguous), errors.Is(err, consensus.ErrInvalid),
		errors.Is(err, consensus.ErrNameTaken), errors.Is(err, consensus.ErrExists):
		return http.StatusBadRequest
	case errors.Is(err, consensus.ErrVersionMismatch), is(err, e.AlreadyInCluster), is(err, e.LastMember),
		errors.Is(err, consensus.ErrInUse), errors.Is(err, command.ErrUnsupported):
		return http.StatusConflict
	case is(err, e.NoCluster):
		return http.StatusPreconditionFailed
	case e.Refused != nil && e.Refused(err):
		return http.StatusBadRequest
	case is(err, e.Forbidden), is(err, e.Worker):
		return http.StatusForbidden
	case is(err, e.NoQuorum):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// is is errors.Is that never matches an unset sentinel.
func is(err, target error) bool { return target != nil && errors.Is(err, target) }

// Write answers err as an api.ErrorResponse with its status.
func (e Errors) Write(w http.ResponseWriter, err error) {
	WriteJSON(w, e.Status(err), api.ErrorResponse{Error: err.Error()})
}

// WriteJSON answers v as JSON with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Router is the API's mux: every route answers through the same encoding
// and error mapping.
type Router struct {
	mux  *http.ServeMux
	errs Errors
}

// NewRouter returns an empty router that maps errors with errs.
func NewRouter(errs Errors) *Router {
	return &Router{mux: http.NewServeMux(), errs: errs}
}

// Handle routes pattern to f.
func (rt *Router) Handle(pattern string, f HandlerFunc) {
	rt.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		v, err := f(w, r)
		if err != nil {
			rt.errs.Write(w, err)
			return
		}
		if v == Streamed {
			return
		}
		WriteJSON(w, http.StatusOK, v)
	})
}

// Mux is the underlying mux, for routes that take over the connection
// (exec) and for the handler itself.
func (rt *Router) Mux() *http.ServeMux { return rt.mux }

// MaxBodyBytes bounds a JSON request body; image archives are streamed and
// not bounded by it.
const MaxBodyBytes = 4 << 20

// ErrBodyTooLarge ends a request body read past MaxBodyBytes.
var ErrBodyTooLarge = fmt.Errorf("request body larger than %d MiB", MaxBodyBytes>>20)

// capReader reads at most n bytes, then fails with ErrBodyTooLarge rather
// than a silent EOF (which the JSON decoder would report as a truncated
// body).
type capReader struct {
	r io.Reader
	n int64
}

// CapReader reads at most n bytes of r, then fails with ErrBodyTooLarge
// (for bodies bounded otherwise than MaxBodyBytes: snapshot files).
func CapReader(r io.Reader, n int64) io.Reader { return &capReader{r: r, n: n} }

func (c *capReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		// One byte more tells a body of exactly n bytes from a longer one.
		var b [1]byte
		if n, _ := c.r.Read(b[:]); n > 0 {
			return 0, ErrBodyTooLarge
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

// DecodeBody decodes the JSON body of r into v: unknown fields refused
// (400), at most MaxBodyBytes (413).
func DecodeBody(r *http.Request, v any) error { return DecodeBodyMax(r, v, MaxBodyBytes) }

// MaxDeployCheckBytes bounds the body of a deploy's check (POST
// /v1/services/check), which carries every spec of a stack at once where
// each write carries one.
const MaxDeployCheckBytes = 32 << 20

// MaxDeployCheckWrites bounds the writes (networks, secrets, configs,
// removals, updates, creates) of one deploy check. Why: each is checked
// against every service before it (the create route's scans and the
// FSM's), so a check's cost grows with the square of its writes, and
// 32 MiB carries ~100,000 minimal specs: 1,000 took 6 s of an agent's CPU,
// 4,000 took 160 s. A larger deploy is refused with 413, which the CLI
// answers by deploying unchecked with a warning, as it does for a body
// past MaxDeployCheckBytes.
const MaxDeployCheckWrites = 1000

// DecodeBodyMax is DecodeBody with the bound max.
func DecodeBodyMax(r *http.Request, v any, max int64) error {
	dec := json.NewDecoder(&capReader{r: r.Body, n: max})
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, ErrBodyTooLarge) {
			return &Error{Status: http.StatusRequestEntityTooLarge, Msg: fmt.Sprintf("request body larger than %d MiB", max>>20)}
		}
		return BadRequest("malformed request body: %v", err)
	}
	return nil
}

// Consistent reports whether a read asks for ?consistent=1 (a client about
// to decide a write on what it reads, like `stack deploy`).
func Consistent(r *http.Request) bool {
	c := r.URL.Query().Get("consistent")
	return c == "1" || c == "true"
}

// WriteError answers err as every route of rt does, for a handler that
// does not answer through Handle (exec, before it takes the connection).
func (rt *Router) WriteError(w http.ResponseWriter, err error) { rt.errs.Write(w, err) }
