package client

// The client's end of the exec stream; the protocol and its frame codec are
// api's (api/exec.go), since the agent speaks them too.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sync"

	"github.com/shoal-org/shoal/api"
)

// ExecConn is the client's end of an upgraded exec connection. Its send
// methods are safe for concurrent use; Next is for one reader.
type ExecConn struct {
	conn net.Conn
	r    *bufio.Reader
	wmu  sync.Mutex
}

// Exec starts cmd in a running container of the agent's node (ID, name or
// task name such as web.1) and returns the upgraded connection. Errors
// before the upgrade (no such container, bad command) are *APIError.
// Cancelling ctx only aborts the handshake; Close ends the session.
func (c *Client) Exec(ctx context.Context, id string, req api.ExecRequest) (*ExecConn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.path)
	if err != nil {
		return nil, fmt.Errorf("%w at %s: is `shoal agent` running? (%v)", ErrUnreachable, c.host, dialCause(err))
	}
	body, err := json.Marshal(req)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("exec: encode request: %w", err)
	}
	hreq, err := http.NewRequest(http.MethodPost, "http://shoal/"+api.APIVersion+"/containers/"+escape(id)+"/exec", bytes.NewReader(body))
	if err != nil {
		conn.Close()
		return nil, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Connection", "Upgrade")
	hreq.Header.Set("Upgrade", api.ExecProtocol)
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	br := bufio.NewReader(conn)
	err = hreq.Write(conn)
	var resp *http.Response
	if err == nil {
		resp, err = http.ReadResponse(br, hreq)
	}
	if !stop() || err != nil {
		conn.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("exec: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer conn.Close()
		return nil, readAPIError(resp)
	}
	return &ExecConn{conn: conn, r: br}, nil
}

func (e *ExecConn) send(typ byte, p []byte) error {
	e.wmu.Lock()
	defer e.wmu.Unlock()
	return api.WriteExecFrame(e.conn, typ, p)
}

// Stdin sends input to the process.
func (e *ExecConn) Stdin(p []byte) error { return e.send(api.ExecStdin, p) }

// CloseStdin tells the agent the input ended.
func (e *ExecConn) CloseStdin() error { return e.send(api.ExecStdinClose, nil) }

// Resize sets the terminal size of a TTY session.
func (e *ExecConn) Resize(width, height uint16) error {
	var b [4]byte
	binary.BigEndian.PutUint16(b[0:], width)
	binary.BigEndian.PutUint16(b[2:], height)
	return e.send(api.ExecResize, b[:])
}

// Signal asks the agent to send sig to the process.
func (e *ExecConn) Signal(sig int) error {
	if sig <= 0 || sig > 64 {
		return fmt.Errorf("signal %d out of range", sig)
	}
	return e.send(api.ExecSignal, []byte{byte(sig)})
}

// Next returns the next frame from the agent.
func (e *ExecConn) Next() (typ byte, payload []byte, err error) { return api.ReadExecFrame(e.r) }

// Close ends the session.
func (e *ExecConn) Close() error { return e.conn.Close() }
