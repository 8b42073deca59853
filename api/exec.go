package api

// The exec stream. `shoal exec` sends POST /v1/containers/{id}/exec with an
// ExecRequest body and the headers Connection: Upgrade, Upgrade:
// ExecProtocol. The agent starts the process first, so a bad command or a
// container that does not run is an ordinary error answer; once the process
// runs it answers 101 Switching Protocols and the connection carries frames
// both ways until the agent sends ExecExit (or ExecError) and closes it.
//
// A frame is one type byte, a big-endian uint32 payload length and the
// payload (at most MaxExecFrame bytes). Client to agent: ExecStdin,
// ExecStdinClose, ExecResize (uint16 width, uint16 height), ExecSignal
// (one byte, the signal number). Agent to client: ExecStdout, ExecStderr
// (never with a TTY: the terminal merges both), then one ExecExit (int32
// exit code) or ExecError (a message).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
)

// ExecProtocol is the Upgrade header value of an exec request.
const ExecProtocol = "shoal-exec/1"

// Exec frame types.
const (
	ExecStdin      byte = 0
	ExecStdout     byte = 1
	ExecStderr     byte = 2
	ExecStdinClose byte = 3
	ExecResize     byte = 4
	ExecSignal     byte = 5
	ExecExit       byte = 6
	ExecError      byte = 7
)

// MaxExecFrame bounds a frame's payload; writers split larger data.
const MaxExecFrame = 64 << 10

// ErrBadFrame is a frame that cannot be decoded (unknown type, too long).
var ErrBadFrame = errors.New("malformed exec frame")

// WriteExecFrame writes one frame; payloads longer than MaxExecFrame are
// split into several frames of the same type. It is not safe for
// concurrent use on one writer.
func WriteExecFrame(w io.Writer, typ byte, payload []byte) error {
	for {
		n := min(len(payload), MaxExecFrame)
		buf := make([]byte, 5+n)
		buf[0] = typ
		binary.BigEndian.PutUint32(buf[1:5], uint32(n))
		copy(buf[5:], payload[:n])
		if _, err := w.Write(buf); err != nil {
			return err
		}
		payload = payload[n:]
		if len(payload) == 0 {
			return nil
		}
	}
}

// ReadExecFrame reads one frame. It returns io.EOF only at a frame
// boundary; a frame cut short is io.ErrUnexpectedEOF.
func ReadExecFrame(r io.Reader) (typ byte, payload []byte, err error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	typ = hdr[0]
	if typ > ExecError {
		return 0, nil, fmt.Errorf("%w: type %d", ErrBadFrame, typ)
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > MaxExecFrame {
		return 0, nil, fmt.Errorf("%w: %d bytes", ErrBadFrame, n)
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return typ, payload, nil
}

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
func (c *Client) Exec(ctx context.Context, id string, req ExecRequest) (*ExecConn, error) {
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
	hreq, err := http.NewRequest(http.MethodPost, "http://shoal/"+APIVersion+"/containers/"+escape(id)+"/exec", bytes.NewReader(body))
	if err != nil {
		conn.Close()
		return nil, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Connection", "Upgrade")
	hreq.Header.Set("Upgrade", ExecProtocol)
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
	return WriteExecFrame(e.conn, typ, p)
}

// Stdin sends input to the process.
func (e *ExecConn) Stdin(p []byte) error { return e.send(ExecStdin, p) }

// CloseStdin tells the agent the input ended.
func (e *ExecConn) CloseStdin() error { return e.send(ExecStdinClose, nil) }

// Resize sets the terminal size of a TTY session.
func (e *ExecConn) Resize(width, height uint16) error {
	var b [4]byte
	binary.BigEndian.PutUint16(b[0:], width)
	binary.BigEndian.PutUint16(b[2:], height)
	return e.send(ExecResize, b[:])
}

// Signal asks the agent to send sig to the process.
func (e *ExecConn) Signal(sig int) error {
	if sig <= 0 || sig > 64 {
		return fmt.Errorf("signal %d out of range", sig)
	}
	return e.send(ExecSignal, []byte{byte(sig)})
}

// Next returns the next frame from the agent.
func (e *ExecConn) Next() (typ byte, payload []byte, err error) { return ReadExecFrame(e.r) }

// Close ends the session.
func (e *ExecConn) Close() error { return e.conn.Close() }

// DecodeResize decodes an ExecResize payload.
func DecodeResize(p []byte) (width, height uint16, err error) {
	if len(p) != 4 {
		return 0, 0, fmt.Errorf("%w: resize payload of %d bytes", ErrBadFrame, len(p))
	}
	return binary.BigEndian.Uint16(p[0:]), binary.BigEndian.Uint16(p[2:]), nil
}

// EncodeExit and DecodeExit carry an ExecExit payload.
func EncodeExit(code int) []byte {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(int32(code)))
	return b[:]
}

// DecodeExit decodes an ExecExit payload.
func DecodeExit(p []byte) (int, error) {
	if len(p) != 4 {
		return 0, fmt.Errorf("%w: exit payload of %d bytes", ErrBadFrame, len(p))
	}
	return int(int32(binary.BigEndian.Uint32(p))), nil
}
