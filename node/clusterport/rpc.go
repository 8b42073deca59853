package node

// Node-to-node RPC on the cluster port. One request per connection keeps the
// protocol trivial to reason about: the client writes one JSON request line,
// the server answers one JSON response line, and streaming methods (blobs,
// logs) then send raw bytes until they close the connection. TLS setup costs
// about a millisecond on a LAN, which these calls can afford.

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/wire"
)

// dialTimeout bounds TCP connect plus TLS handshake to a peer on the LAN.
const dialTimeout = time.Second

// dialError marks a failure to connect (TCP or TLS) to a peer, as opposed
// to a failure after the peer answered.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// maxRequestLine bounds the one request line a certified peer may make the
// agent buffer; maxAnonRequestLine bounds it for a peer without a
// certificate (a joiner: its request is a CSR and a few fields), which must
// also send it within anonRequestTimeout.
const (
	maxRequestLine     = 1 << 20
	maxAnonRequestLine = 16 << 10
	anonRequestTimeout = 5 * time.Second
)

// rpcCall holds the state of one RPC on the server side.
type rpcCall struct {
	conn   *tls.Conn
	r      *bufio.Reader
	peerID string // empty when the peer presented no certificate
	req    wire.Request
}

// reply writes the response line; for streaming methods the caller then
// writes raw bytes to conn.
func (c *rpcCall) reply(body any, err error) error {
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
	_, werr := c.conn.Write(b)
	return werr
}

// serveRPC reads one request from conn and dispatches it.
func (a *Agent) serveRPC(conn *tls.Conn) {
	defer conn.Close()
	call := &rpcCall{conn: conn}
	if id, ok := pki.PeerNodeID(conn.ConnectionState()); ok {
		call.peerID = id
	}
	limit, wait := maxRequestLine, 30*time.Second
	if call.peerID == "" {
		limit, wait = maxAnonRequestLine, anonRequestTimeout
	}
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	call.r = bufio.NewReaderSize(conn, 4096)
	line, err := wire.ReadLine(call.r, limit)
	if err != nil {
		return // includes a request line longer than the limit
	}
	_ = conn.SetReadDeadline(time.Time{})
	if call.req, err = wire.DecodeRequest(line); err != nil {
		_ = call.reply(nil, err)
		return
	}
	if call.req.Method != wire.MethodJoin && call.req.Method != wire.MethodPing && call.req.Method != wire.MethodRemoval && call.peerID == "" {
		_ = call.reply(nil, &wire.Error{Code: wire.CodeRefused, Msg: "a node certificate is required"})
		return
	}
	ctx, cancel := context.WithCancel(a.ctx)
	defer cancel()
	go func() {
		// A streaming method ends when the peer goes away.
		<-ctx.Done()
		_ = conn.SetDeadline(time.Now())
	}()
	switch call.req.Method {
	case wire.MethodPing:
		_ = call.reply(map[string]string{"node_id": a.id.NodeID}, nil)
	case wire.MethodJoin:
		var req wire.JoinRequest
		if err := json.Unmarshal(call.req.Body, &req); err != nil {
			_ = call.reply(nil, fmt.Errorf("malformed join request: %w", err))
			return
		}
		resp, err := a.handleJoinRPC(ctx, req)
		_ = call.reply(resp, err)
	case wire.MethodApply:
		var req wire.ApplyRequest
		if err := json.Unmarshal(call.req.Body, &req); err != nil {
			_ = call.reply(nil, fmt.Errorf("malformed apply request: %w", err))
			return
		}
		res, err := a.applyNodeCommand(ctx, call.peerID, req.Command)
		_ = call.reply(res, err)
	case wire.MethodAdminWrite:
		var req wire.AdminWriteRequest
		if err := json.Unmarshal(call.req.Body, &req); err != nil {
			_ = call.reply(nil, fmt.Errorf("malformed admin write: %w", err))
			return
		}
		res, err := a.applyAdmin(ctx, call.peerID, req)
		_ = call.reply(res, err)
	case wire.MethodUsage:
		rep, err := a.handleUsageRPC()
		_ = call.reply(rep, err)
	case wire.MethodReadIndex:
		idx, err := a.readIndex(ctx)
		_ = call.reply(wire.ReadIndexResponse{Index: idx}, err)
	case wire.MethodAdmin:
		var req wire.AdminRequest
		if err := json.Unmarshal(call.req.Body, &req); err != nil {
			_ = call.reply(nil, fmt.Errorf("malformed admin request: %w", err))
			return
		}
		if err := a.adminOpAllowed(call.peerID, req.Op); err != nil {
			_ = call.reply(nil, err)
			return
		}
		_ = call.reply(struct{}{}, a.handleAdminRPC(ctx, call.peerID, req))
	case wire.MethodKEK:
		resp, err := a.handleKEKRPC(call.peerID)
		_ = call.reply(resp, err)
	case wire.MethodToken:
		var req wire.TokenRequest
		if err := json.Unmarshal(call.req.Body, &req); err != nil {
			_ = call.reply(nil, fmt.Errorf("malformed token request: %w", err))
			return
		}
		resp, err := a.handleTokenRPC(ctx, call.peerID, req)
		_ = call.reply(resp, err)
	case wire.MethodRenew:
		var req wire.RenewRequest
		if err := json.Unmarshal(call.req.Body, &req); err != nil {
			_ = call.reply(nil, fmt.Errorf("malformed renew request: %w", err))
			return
		}
		resp, err := a.handleRenewRPC(ctx, call.peerID, req)
		_ = call.reply(resp, err)
	case wire.MethodCARotate:
		resp, err := a.handleCARotateRPC(ctx, call.peerID)
		_ = call.reply(resp, err)
	case wire.MethodSecrets:
		var req wire.SecretsRequest
		if err := json.Unmarshal(call.req.Body, &req); err != nil {
			_ = call.reply(nil, fmt.Errorf("malformed secrets request: %w", err))
			return
		}
		resp, err := a.handleSecretsRPC(call.peerID, req)
		_ = call.reply(resp, err)
	case wire.MethodRejoin:
		_ = call.reply(struct{}{}, a.handleRejoinRPC(ctx, call.peerID))
	case wire.MethodSnapshotRestore:
		a.serveSnapshotRestoreRPC(ctx, call)
	case wire.MethodRemoval:
		var req wire.RemovalRequest
		if err := json.Unmarshal(call.req.Body, &req); err != nil {
			_ = call.reply(nil, fmt.Errorf("malformed removal request: %w", err))
			return
		}
		resp, err := a.handleRemovalRPC(req)
		_ = call.reply(resp, err)
	case wire.MethodBlob, wire.MethodManifest, wire.MethodLogs:
		if err := a.fetchAllowed(call.req); err != nil {
			a.log.Warn("refused a fetch from a node", "node_id", shortID(call.peerID), "method", call.req.Method, "err", err)
			_ = call.reply(nil, err)
			return
		}
		switch call.req.Method {
		case wire.MethodBlob:
			a.serveBlobRPC(ctx, call)
		case wire.MethodManifest:
			a.serveManifestRPC(ctx, call)
		default:
			a.serveLogsRPC(ctx, call)
		}
	default:
		_ = call.reply(nil, fmt.Errorf("unknown rpc method %q", call.req.Method))
	}
}

// callRPC performs one request/response RPC against addr. When stream is
// non-nil the connection stays open after the response and is handed to it.
func callRPC(ctx context.Context, addr string, cfg *tls.Config, method string, body any, out any, stream func(io.Reader) error) error {
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
	conn, err := dialProto(addr, min(timeout, dialTimeout), cfg, protoRPC)
	if err != nil {
		return &dialError{fmt.Errorf("connect to %s: %w", addr, err)}
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
	line, err := r.ReadBytes('\n')
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
