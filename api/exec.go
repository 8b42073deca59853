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
//
// The codec is here, not in api/client, because both ends speak it: the
// agent (node/localapi) and the client's ExecConn.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
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
