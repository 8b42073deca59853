// Package client is the agent's HTTP client: what the CLI, the end-to-end
// tests and any other program use to drive an agent through its unix
// socket. It is apart from api because every layer imports the wire types
// but only callers of the socket need the client; consensus, runtime,
// overlay and lb may not import it (api/imports_test.go).
package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shoal-org/shoal/api"
)

// DefaultHost is the agent socket the CLI talks to when neither --host nor
// SHOAL_HOST says otherwise.
const DefaultHost = "unix:///run/shoal/shoal.sock"

// HostEnv names the environment variable that overrides DefaultHost.
const HostEnv = "SHOAL_HOST"

// Client errors. Callers test them with errors.Is.
var (
	// ErrUnreachable means the agent's socket could not be dialled (missing
	// socket, nobody listening, permission denied).
	ErrUnreachable = errors.New("cannot reach the shoal agent")
	// ErrBadHost means the host string is not a unix:// URL.
	ErrBadHost = errors.New("invalid shoal host")
	// ErrEmptyAnswer means a route that answers with an object answered
	// with nothing (or null).
	ErrEmptyAnswer = errors.New("the agent answered with no object")
)

// APIError is a non-2xx answer of the agent. Message is the api.ErrorResponse
// text (or the raw body when the agent sent no JSON).
type APIError struct {
	Status  int
	Message string
}

// Error returns the agent's message, which is written for users.
func (e *APIError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("agent answered %d %s", e.Status, http.StatusText(e.Status))
	}
	return e.Message
}

// IsNotFound reports whether err is an APIError with status 404.
func IsNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}

// Client speaks the agent's HTTP/JSON API (api/routes.go) over its unix
// socket. It is safe for concurrent use. Every method honours its context:
// cancelling it aborts the request, including long waits and log streams.
type Client struct {
	host string
	path string
	http *http.Client
}

// New returns a client for host, a "unix:///path.sock" URL. An empty
// host means $SHOAL_HOST, then DefaultHost. A bare absolute path is accepted
// as a convenience. No connection is made until the first call.
func New(host string) (*Client, error) {
	if host == "" {
		host = os.Getenv(HostEnv)
	}
	if host == "" {
		host = DefaultHost
	}
	path, err := socketPath(host)
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(host, "/") {
		host = "unix://" + host
	}
	c := &Client{host: host, path: path}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		MaxIdleConns:    4,
		IdleConnTimeout: 30 * time.Second,
	}
	c.http = &http.Client{Transport: tr}
	return c, nil
}

// socketPath extracts the socket path from a host string.
func socketPath(host string) (string, error) {
	switch {
	case strings.HasPrefix(host, "unix://"):
		p := strings.TrimPrefix(host, "unix://")
		if p == "" || !strings.HasPrefix(p, "/") {
			return "", fmt.Errorf("%w %q: want unix:///absolute/path.sock", ErrBadHost, host)
		}
		return p, nil
	case strings.HasPrefix(host, "/"):
		return host, nil
	default:
		return "", fmt.Errorf("%w %q: only unix:///path.sock is supported", ErrBadHost, host)
	}
}

// Host returns the unix:// URL the client dials.
func (c *Client) Host() string { return c.host }

// LogOptions select the lines of a log stream.
type LogOptions struct {
	// Follow keeps the stream open and delivers new lines until the context
	// ends or the container (all tasks, for a service) is gone.
	Follow bool
	// Tail limits the answer to the last Tail past lines; 0 means all lines.
	Tail int
	// Since drops lines older than this time; zero means no limit.
	Since time.Time
}

func (o LogOptions) query() url.Values {
	q := url.Values{}
	if o.Follow {
		q.Set("follow", "1")
	}
	if o.Tail > 0 {
		q.Set("tail", strconv.Itoa(o.Tail))
	}
	if !o.Since.IsZero() {
		q.Set("since", o.Since.UTC().Format(time.RFC3339Nano))
	}
	return q
}

// TaskFilter narrows task listings. Empty fields do not filter.
type TaskFilter struct {
	ServiceID    string
	NodeID       string
	DesiredState string
	// WithoutSpecVersion, when not 0, asks ServiceTasks to leave out the
	// spec of the tasks at this spec version: a caller that holds the
	// service has that spec already.
	WithoutSpecVersion uint64
}

// escape makes an {id} path segment; image references contain slashes.
func escape(id string) string { return url.PathEscape(id) }

// do sends one request and decodes a JSON answer into out (when non-nil).
// body is JSON-encoded unless it is an io.Reader, which is streamed as is.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, body, out any) error {
	resp, err := c.send(ctx, method, path, q, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	// An empty body (204, or a lazy handler) leaves out at its zero value.
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	// The decoder stops after the value, before the encoder's newline and
	// the end of the body: a body closed before its EOF takes its
	// connection with it, so without this every call dialled anew (a
	// wait's polls made one connection each).
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit))
	return nil
}

// call is do for a typed answer: it returns the zero T on error. An
// empty or null answer where T is a pointer is an error: every such route
// answers with an object, and callers use the pointer without a check.
func call[T any](ctx context.Context, c *Client, method, path string, q url.Values, body any) (T, error) {
	var v T
	if err := c.do(ctx, method, path, q, body, &v); err != nil {
		var zero T
		return zero, err
	}
	if rv := reflect.ValueOf(&v).Elem(); rv.Kind() == reflect.Pointer && rv.IsNil() {
		return v, fmt.Errorf("%s %s: %w", method, path, ErrEmptyAnswer)
	}
	return v, nil
}

// drainLimit bounds what do reads past an answer's value to reach its end:
// a newline, or whatever a broken agent adds (the connection is then given
// up, as before).
const drainLimit = 4 << 10

// send performs a request and returns the response of a 2xx answer; any
// other status is turned into an *APIError and the body closed.
func (c *Client) send(ctx context.Context, method, path string, q url.Values, body any) (*http.Response, error) {
	u := "http://shoal/" + api.APIVersion + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	contentType := ""
	switch b := body.(type) {
	case nil:
	case io.Reader:
		rd = b
		contentType = "application/octet-stream"
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			return nil, fmt.Errorf("%s %s: encode request: %w", method, path, err)
		}
		rd = bytes.NewReader(buf)
		contentType = "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s %s: %w", method, path, ctx.Err())
		}
		if isDialError(err) {
			return nil, fmt.Errorf("%w at %s: is `shoal agent` running? (%v)", ErrUnreachable, c.host, dialCause(err))
		}
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, readAPIError(resp)
	}
	return resp, nil
}

// readAPIError builds an APIError from a non-2xx response.
func readAPIError(resp *http.Response) error {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var er api.ErrorResponse
	msg := ""
	if json.Unmarshal(raw, &er) == nil && er.Error != "" {
		msg = er.Error
	} else {
		msg = strings.TrimSpace(string(raw))
	}
	return &APIError{Status: resp.StatusCode, Message: msg}
}

// isDialError reports whether err happened while connecting to the socket.
func isDialError(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED)
}

// dialCause returns the innermost system error of a dial failure, which is
// what a user can act on ("no such file or directory").
func dialCause(err error) error {
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Err
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

// stream reads an NDJSON answer of api.LogLine values and hands each to fn.
// It returns nil at the end of the stream, fn's error if fn fails, or the
// context's error if the context ends first.
func (c *Client) stream(ctx context.Context, path string, opts LogOptions, fn func(api.LogLine) error) error {
	return streamNDJSON(ctx, c, path, opts.query(), "logs "+path, fn)
}

// streamNDJSON GETs path and hands each JSON line of the answer, decoded
// as T, to fn. It returns nil at the end of the stream, fn's error if fn
// fails, or the context's error if the context ends first; what names the
// stream in errors.
func streamNDJSON[T any](ctx context.Context, c *Client, path string, q url.Values, what string, fn func(T) error) error {
	resp, err := c.send(ctx, http.MethodGet, path, q, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var v T
		if err := json.Unmarshal(b, &v); err != nil {
			return fmt.Errorf("%s: decode line: %w", what, err)
		}
		if err := fn(v); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%s: read stream: %w", what, err)
	}
	return ctx.Err()
}

// Status answers GET /v1/status: the cluster as this node sees it.
func (c *Client) Status(ctx context.Context) (*api.Status, error) {
	return call[*api.Status](ctx, c, http.MethodGet, "/status", nil, nil)
}

// Init bootstraps a new cluster on the agent's node.
func (c *Client) Init(ctx context.Context) (*api.InitResponse, error) {
	return call[*api.InitResponse](ctx, c, http.MethodPost, "/init", nil, nil)
}

// Join asks the agent to join the cluster reachable at req.Addr.
func (c *Client) Join(ctx context.Context, req api.JoinRequest) (*api.Status, error) {
	return call[*api.Status](ctx, c, http.MethodPost, "/join", nil, req)
}

// Token returns the current join token.
func (c *Client) Token(ctx context.Context) (*api.InitResponse, error) {
	return call[*api.InitResponse](ctx, c, http.MethodGet, "/token", nil, nil)
}

// RotateCA replaces the cluster CA and re-issues every node's certificate;
// wait bounds how long the agent waits for every node (0: its default).
func (c *Client) RotateCA(ctx context.Context, wait time.Duration) (*api.CARotateResponse, error) {
	q := url.Values{}
	if wait > 0 {
		q.Set("wait", wait.String())
	}
	return call[*api.CARotateResponse](ctx, c, http.MethodPost, "/ca/rotate", q, nil)
}

// RotateToken replaces the join token; the old one stops working.
func (c *Client) RotateToken(ctx context.Context) (*api.InitResponse, error) {
	return call[*api.InitResponse](ctx, c, http.MethodPost, "/token/rotate", nil, nil)
}

// Leave makes the agent's node leave its cluster; force lets the only
// member of a cluster leave it (which erases the cluster).
func (c *Client) Leave(ctx context.Context, force bool) error {
	return c.do(ctx, http.MethodPost, "/leave", forceQuery(force), nil, nil)
}

// Nodes lists the cluster's nodes.
func (c *Client) Nodes(ctx context.Context) ([]api.Node, error) {
	return call[[]api.Node](ctx, c, http.MethodGet, "/nodes", nil, nil)
}

// Node returns one node by ID, ID prefix or hostname.
func (c *Client) Node(ctx context.Context, id string) (*api.Node, error) {
	return call[*api.Node](ctx, c, http.MethodGet, "/nodes/"+escape(id), nil, nil)
}

// UpdateNode changes a node's availability or labels.
func (c *Client) UpdateNode(ctx context.Context, id string, u api.NodeUpdate) (*api.Node, error) {
	return call[*api.Node](ctx, c, http.MethodPost, "/nodes/"+escape(id)+"/update", nil, u)
}

// RemoveNode removes a node from the cluster and revokes its certificate.
// force removes a node that is still up.
func (c *Client) RemoveNode(ctx context.Context, id string, force bool) error {
	return c.do(ctx, http.MethodDelete, "/nodes/"+escape(id), forceQuery(force), nil, nil)
}

func forceQuery(force bool) url.Values {
	if !force {
		return nil
	}
	return url.Values{"force": {"1"}}
}

// Images lists the images known to the agent.
func (c *Client) Images(ctx context.Context) ([]api.Image, error) {
	return call[[]api.Image](ctx, c, http.MethodGet, "/images", nil, nil)
}

// Image returns one image by reference or ID.
func (c *Client) Image(ctx context.Context, ref string) (*api.Image, error) {
	return call[*api.Image](ctx, c, http.MethodGet, "/images/"+escape(ref), nil, nil)
}

// ImportImage streams a rootfs tarball (optionally gzipped) read from r and
// tags the resulting single-layer image as ref. r is read to its end.
func (c *Client) ImportImage(ctx context.Context, r io.Reader, ref string) (*api.Image, error) {
	q := url.Values{"ref": {ref}}
	return call[*api.Image](ctx, c, http.MethodPost, "/images/import", q, asReader(r))
}

// LoadImages streams a `docker save` archive or OCI layout tar read from r.
func (c *Client) LoadImages(ctx context.Context, r io.Reader) ([]api.Image, error) {
	return call[[]api.Image](ctx, c, http.MethodPost, "/images/load", nil, asReader(r))
}

// asReader hides concrete types (like *os.File) so send streams them rather
// than JSON-encoding them.
func asReader(r io.Reader) io.Reader { return struct{ io.Reader }{r} }

// PullImage pulls an image from a registry.
func (c *Client) PullImage(ctx context.Context, req api.PullRequest) (*api.Image, error) {
	return call[*api.Image](ctx, c, http.MethodPost, "/images/pull", nil, req)
}

// RemoveImage removes an image reference (and the image once untagged).
func (c *Client) RemoveImage(ctx context.Context, ref string) error {
	return c.do(ctx, http.MethodDelete, "/images/"+escape(ref), nil, nil, nil)
}

// Containers lists the containers on the agent's node, tasks included.
func (c *Client) Containers(ctx context.Context) ([]api.Container, error) {
	return call[[]api.Container](ctx, c, http.MethodGet, "/containers", nil, nil)
}

// Container returns one container by ID, ID prefix or name.
func (c *Client) Container(ctx context.Context, id string) (*api.Container, error) {
	return call[*api.Container](ctx, c, http.MethodGet, "/containers/"+escape(id), nil, nil)
}

// RunContainer creates and starts a one-off container on the agent's node.
func (c *Client) RunContainer(ctx context.Context, req api.RunRequest) (*api.Container, error) {
	return call[*api.Container](ctx, c, http.MethodPost, "/containers", nil, req)
}

// WaitContainer blocks until the container has exited and returns it.
func (c *Client) WaitContainer(ctx context.Context, id string) (*api.Container, error) {
	return call[*api.Container](ctx, c, http.MethodPost, "/containers/"+escape(id)+"/wait", nil, nil)
}

// StopContainer sends SIGTERM, then SIGKILL after timeout. A negative
// timeout leaves the grace period to the agent.
func (c *Client) StopContainer(ctx context.Context, id string, timeout time.Duration) (*api.Container, error) {
	var q url.Values
	if timeout >= 0 {
		q = url.Values{"timeout": {timeout.String()}}
	}
	return call[*api.Container](ctx, c, http.MethodPost, "/containers/"+escape(id)+"/stop", q, nil)
}

// RemoveContainer deletes a container; force kills it first if it runs.
func (c *Client) RemoveContainer(ctx context.Context, id string, force bool) error {
	return c.do(ctx, http.MethodDelete, "/containers/"+escape(id), forceQuery(force), nil, nil)
}

// ContainerLogs streams a container's log lines to fn, in order, from the
// calling goroutine. It returns when the stream ends, fn fails or ctx ends.
func (c *Client) ContainerLogs(ctx context.Context, id string, opts LogOptions, fn func(api.LogLine) error) error {
	return c.stream(ctx, "/containers/"+escape(id)+"/logs", opts, fn)
}

// Services lists the cluster's services.
func (c *Client) Services(ctx context.Context) ([]api.Service, error) {
	return call[[]api.Service](ctx, c, http.MethodGet, "/services", nil, nil)
}

// Service returns one service by ID, ID prefix or name.
func (c *Client) Service(ctx context.Context, id string) (*api.Service, error) {
	return call[*api.Service](ctx, c, http.MethodGet, "/services/"+escape(id), nil, nil)
}

// consistentQuery asks a read route to catch up with the leader first.
var consistentQuery = url.Values{"consistent": {"1"}}

// ServiceConsistent is Service read after the agent's replica caught up
// with the leader (?consistent=1), so it reflects every write acknowledged
// before, through any node. Read this way before a write decided on what
// was read (`service update`, `stack deploy`).
func (c *Client) ServiceConsistent(ctx context.Context, id string) (*api.Service, error) {
	return call[*api.Service](ctx, c, http.MethodGet, "/services/"+escape(id), consistentQuery, nil)
}

// ServicesConsistent is Services with ?consistent=1 (see ServiceConsistent).
func (c *Client) ServicesConsistent(ctx context.Context) ([]api.Service, error) {
	return call[[]api.Service](ctx, c, http.MethodGet, "/services", consistentQuery, nil)
}

// CreateService creates a service; the answer comes after the Raft commit.
func (c *Client) CreateService(ctx context.Context, spec api.ServiceSpec) (*api.Service, error) {
	return call[*api.Service](ctx, c, http.MethodPost, "/services", nil, spec)
}

// UpdateService replaces the spec of a service. version is the Version the
// caller read; the agent refuses the update if the service changed since.
func (c *Client) UpdateService(ctx context.Context, id string, version uint64, spec api.ServiceSpec) (*api.Service, error) {
	q := url.Values{"version": {strconv.FormatUint(version, 10)}}
	return call[*api.Service](ctx, c, http.MethodPost, "/services/"+escape(id)+"/update", q, spec)
}

// ErrNoDeployCheck: the agent predates POST /v1/services/check (an older
// release), so a deploy cannot be checked before it is written.
var ErrNoDeployCheck = errors.New("the agent runs an older release that cannot check a deploy before writing it")

// CheckDeploy asks the agent whether every write of one deploy, in the
// order req lists them, would be accepted; it writes nothing. The refusal
// is the agent's, naming the first write refused; ErrNoDeployCheck says
// the agent lacks the route (it answers 405, or net/http's bare 404).
func (c *Client) CheckDeploy(ctx context.Context, req api.DeployCheck) error {
	var out struct{}
	err := c.do(ctx, http.MethodPost, "/services/check", nil, req, &out)
	var ae *APIError
	if errors.As(err, &ae) && (ae.Status == http.StatusMethodNotAllowed ||
		ae.Status == http.StatusNotFound && ae.Message == "404 page not found") {
		return ErrNoDeployCheck
	}
	if errors.As(err, &ae) && ae.Status == http.StatusRequestEntityTooLarge {
		return fmt.Errorf("%w: %w", ErrDeployTooLargeToCheck, err)
	}
	return err
}

// ErrDeployTooLargeToCheck: the deploy's writes, all in one check, pass
// the agent's bound for it, while each write alone may not.
var ErrDeployTooLargeToCheck = errors.New("the deploy is too large for the agent to check before writing it")

// ScaleService sets the replica count of a replicated service.
func (c *Client) ScaleService(ctx context.Context, id string, replicas uint64) (*api.Service, error) {
	return call[*api.Service](ctx, c, http.MethodPost, "/services/"+escape(id)+"/scale", nil, api.ScaleRequest{Replicas: replicas})
}

// RollbackService goes back to the service's previous spec.
func (c *Client) RollbackService(ctx context.Context, id string) (*api.Service, error) {
	return call[*api.Service](ctx, c, http.MethodPost, "/services/"+escape(id)+"/rollback", nil, nil)
}

// RemoveService deletes a service and shuts its tasks down.
func (c *Client) RemoveService(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/services/"+escape(id), nil, nil, nil)
}

// ServiceTasks lists the tasks of a service; only f.DesiredState and
// f.WithoutSpecVersion are used.
func (c *Client) ServiceTasks(ctx context.Context, id string, f TaskFilter) ([]api.Task, error) {
	q := url.Values{}
	if f.DesiredState != "" {
		q.Set("desired_state", f.DesiredState)
	}
	if f.WithoutSpecVersion != 0 {
		q.Set("without_spec_version", strconv.FormatUint(f.WithoutSpecVersion, 10))
	}
	return call[[]api.Task](ctx, c, http.MethodGet, "/services/"+escape(id)+"/tasks", q, nil)
}

// ServiceLogs streams the log lines of every task of a service to fn.
func (c *Client) ServiceLogs(ctx context.Context, id string, opts LogOptions, fn func(api.LogLine) error) error {
	return c.stream(ctx, "/services/"+escape(id)+"/logs", opts, fn)
}

// Tasks lists tasks cluster-wide, filtered by f.
func (c *Client) Tasks(ctx context.Context, f TaskFilter) ([]api.Task, error) {
	q := url.Values{}
	if f.ServiceID != "" {
		q.Set("service", f.ServiceID)
	}
	if f.NodeID != "" {
		q.Set("node", f.NodeID)
	}
	if f.DesiredState != "" {
		q.Set("desired_state", f.DesiredState)
	}
	return call[[]api.Task](ctx, c, http.MethodGet, "/tasks", q, nil)
}

// EventOptions select the events of an event stream.
type EventOptions struct {
	// Since replays the kept history from this time on; zero means only
	// events from now on.
	Since time.Time
	// Until ends the stream once events reach this time (at once when it
	// is in the past); zero means the stream stays open.
	Until time.Time
	// Types and Names filter: an event matches when its type is one of
	// Types and its name, ID or service is one of Names (empty: all).
	Types []string
	Names []string
}

func (o EventOptions) query() url.Values {
	q := url.Values{}
	if !o.Since.IsZero() {
		q.Set("since", o.Since.UTC().Format(time.RFC3339Nano))
	}
	if !o.Until.IsZero() {
		q.Set("until", o.Until.UTC().Format(time.RFC3339Nano))
	}
	for _, t := range o.Types {
		q.Add("type", t)
	}
	for _, n := range o.Names {
		q.Add("name", n)
	}
	return q
}

// Events streams GET /v1/events and hands each event to fn. It returns nil
// when the agent ends the stream (Until reached), fn's error if fn fails,
// or the context's error if the context ends first.
func (c *Client) Events(ctx context.Context, opts EventOptions, fn func(api.Event) error) error {
	return streamNDJSON(ctx, c, "/events", opts.query(), "events", fn)
}
