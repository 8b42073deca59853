package clusterport

// Node-to-node RPC on the cluster port. One request per connection keeps the
// protocol trivial to reason about: the client writes one JSON request line,
// the server answers one JSON response line, and streaming methods (blobs,
// logs) then send raw bytes until they close the connection. TLS setup costs
// about a millisecond on a LAN, which these calls can afford.

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/wire"
)

// DialTimeout bounds TCP connect plus TLS handshake to a peer on the LAN.
const DialTimeout = time.Second

// DialError marks a failure to connect (TCP or TLS) to a peer, as opposed
// to a failure after the peer answered.
type DialError struct{ Err error }

func (e *DialError) Error() string { return e.Err.Error() }
func (e *DialError) Unwrap() error { return e.Err }

// IsDialError reports whether err is (or wraps) a DialError.
func IsDialError(err error) bool {
	var de *DialError
	return errors.As(err, &de)
}

// maxRequestLine bounds the one request line a certified peer may make the
// agent buffer; MaxAnonRequestLine bounds it for a peer without a
// certificate (a joiner: its request is a CSR and a few fields), which must
// also send it within anonRequestTimeout.
const (
	maxRequestLine     = 1 << 20
	MaxAnonRequestLine = 16 << 10
	anonRequestTimeout = 5 * time.Second
)

// maxAnswerLine bounds the answer line a caller buffers from the peer it
// called (the stream that may follow is the caller's to bound). The
// largest real answers are an admin read forwarded to the leader (every
// task of a big cluster: a few MiB) and a task's secrets (500 KiB each);
// without a bound, a peer with a valid certificate that answered with an
// endless line made the caller buffer all it could send until the call's
// deadline, several times over in the decoding: the leader polls every
// node's usage every few seconds.
var maxAnswerLine = 64 << 20

// replyWriteTimeout bounds each write to the peer (Call.Write): a peer
// that stops reading while keeping the connection open (a zero window)
// otherwise held the handler, its goroutine and one of the port's MaxConns
// for good once what it asked for outgrew the socket buffers (a task's
// secrets, a peer list, a blob, a log stream).
var replyWriteTimeout = 30 * time.Second

// Call is one RPC on the server side. A handler owns it until it returns;
// the server then closes the connection.
type Call struct {
	// Conn is the connection; a streaming method writes its bytes after
	// Reply through Write, which bounds each write.
	Conn *tls.Conn
	// R reads what the peer sends after its request line (buffered).
	R *bufio.Reader
	// PeerID is the node ID of the peer's certificate; empty when the peer
	// presented none (only join, ping and removal get that far).
	PeerID string
	// Req is the decoded request line.
	Req wire.Request
	// WriteTimeout bounds each Write (0: replyWriteTimeout).
	WriteTimeout time.Duration
}

// Write writes p to the peer within the call's write timeout: the answer
// line, and whatever a streaming method sends after it.
func (c *Call) Write(p []byte) (int, error) {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(cmp.Or(c.WriteTimeout, replyWriteTimeout)))
	return c.Conn.Write(p)
}

// Reply writes the response line (Write); for streaming methods the caller
// then writes raw bytes through Write too.
func (c *Call) Reply(body any, err error) error {
	var resp wire.Response
	if err != nil {
		resp.Error = err.Error()
		resp.Code = wire.ErrorCode(err)
	} else if body != nil {
		b, merr := json.Marshal(body)
		if merr != nil {
			return merr
		}
		resp.Body = b
	}
	b, _ := json.Marshal(resp)
	b = append(b, '\n')
	_, werr := c.Write(b)
	return werr
}

// Handler serves one method. ctx ends when the server's context ends or
// the call is over (a streaming method then stops).
type Handler func(ctx context.Context, call *Call)

// Methods finds the handler of a method; nil means the method is unknown.
type Methods func(method string) Handler

// anonymous are the methods a peer without a certificate may call: a
// joiner has none yet, ping says who answers, and a removed node asks
// whether it was removed after its certificate was revoked.
func anonymous(method string) bool {
	return method == wire.MethodJoin || method == wire.MethodPing || method == wire.MethodRemoval
}

// Serve reads one request from conn and hands it to its method's handler;
// it closes conn when the handler returns. A request without a certificate
// for another method than join, ping or removal, an unknown method and a
// line that is not a request are answered here. ctx is the agent's: when
// it ends, a streaming call ends too.
func Serve(ctx context.Context, conn *tls.Conn, methods Methods) {
	defer conn.Close()
	call := &Call{Conn: conn}
	if id, ok := pki.PeerNodeID(conn.ConnectionState()); ok {
		call.PeerID = id
	}
	limit, wait := maxRequestLine, 30*time.Second
	if call.PeerID == "" {
		limit, wait = MaxAnonRequestLine, anonRequestTimeout
	}
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	call.R = bufio.NewReaderSize(conn, 4096)
	line, err := wire.ReadLine(call.R, limit)
	if err != nil {
		return // includes a request line longer than the limit
	}
	_ = conn.SetReadDeadline(time.Time{})
	if call.Req, err = wire.DecodeRequest(line); err != nil {
		_ = call.Reply(nil, err)
		return
	}
	if !anonymous(call.Req.Method) && call.PeerID == "" {
		_ = call.Reply(nil, &wire.Error{Code: wire.CodeRefused, Msg: "a node certificate is required"})
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		// A streaming method ends when the peer goes away.
		<-ctx.Done()
		_ = conn.SetDeadline(time.Now())
	}()
	h := methods(call.Req.Method)
	if h == nil {
		_ = call.Reply(nil, fmt.Errorf("unknown rpc method %q", call.Req.Method))
		return
	}
	defer recoverHandler(call)
	h(ctx, call)
}

// recoverHandler turns a handler's panic into a refusal of that one call,
// logged with its stack: what a peer sends must not be able to end the
// agent (and with it raft and every container's supervision on the node)
// through a bug in one handler, as net/http does for a request. The
// connection is closed after it, like any call.
func recoverHandler(call *Call) {
	v := recover()
	if v == nil {
		return
	}
	slog.Error("cluster port: a handler panicked; the call is refused", "method", call.Req.Method,
		"node_id", api.ShortID(call.PeerID), "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
	_ = call.Reply(nil, &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("internal error in %s", call.Req.Method)})
}

// Unary is the handler of a method whose body decodes into a Req and whose
// answer is one response line: a body that does not decode is answered
// "malformed WHAT: ..." and f is not called.
func Unary[Req any](what string, f func(ctx context.Context, peerID string, req Req) (any, error)) Handler {
	return func(ctx context.Context, call *Call) {
		var req Req
		if err := json.Unmarshal(call.Req.Body, &req); err != nil {
			_ = call.Reply(nil, fmt.Errorf("malformed %s: %w", what, err))
			return
		}
		res, err := f(ctx, call.PeerID, req)
		_ = call.Reply(res, err)
	}
}

// NoBody is the handler of a method that reads no body and answers one
// response line.
func NoBody(f func(ctx context.Context, peerID string) (any, error)) Handler {
	return func(ctx context.Context, call *Call) {
		res, err := f(ctx, call.PeerID)
		_ = call.Reply(res, err)
	}
}

// Call performs one request/response RPC against addr. When stream is
// non-nil the connection stays open after the response and is handed to it.
// A failure to connect is a *DialError; a refusal or failure the peer
// answered is a *wire.Error.
func (d Dialer) Call(ctx context.Context, addr string, cfg *tls.Config, method string, body any, out any, stream func(io.Reader) error) error {
	timeout := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d < timeout {
			timeout = d
		}
	}
	if timeout <= 0 {
		return context.DeadlineExceeded
	}
	// Connecting is bounded apart from the call: a dead peer (cable pulled)
	// must not eat the time a retry against the new leader needs.
	conn, err := d.Dial(addr, min(timeout, d.connectTimeout()), cfg, ProtoRPC)
	if err != nil {
		return &DialError{fmt.Errorf("connect to %s: %w", addr, err)}
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	req := wire.Request{Method: method}
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		req.Body = b
	}
	b, _ := json.Marshal(req)
	if _, err := conn.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("send %s to %s: %w", method, addr, err)
	}
	r := bufio.NewReader(conn)
	line, err := wire.ReadLine(r, maxAnswerLine)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("read %s answer from %s: %w", method, addr, err)
	}
	var resp wire.Response
	if err := json.Unmarshal(line, &resp); err != nil {
		return fmt.Errorf("malformed %s answer from %s: %w", method, addr, err)
	}
	if resp.Error != "" {
		return &wire.Error{Code: resp.Code, Msg: resp.Error}
	}
	if out != nil && len(resp.Body) > 0 {
		if err := json.Unmarshal(resp.Body, out); err != nil {
			return fmt.Errorf("decode %s answer from %s: %w", method, addr, err)
		}
	}
	if stream != nil {
		return stream(r)
	}
	return nil
}
