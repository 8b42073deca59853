// Package wire is the node-to-node RPC protocol on the cluster port, as
// bytes: the envelope (one JSON request line, one JSON response line, then
// raw bytes for streaming methods), the method names, the error codes that
// carry refusals across, and the body of every method (messages.go). The
// agent (node/clusterport serves and calls; node/rpcserver handles) and a
// reader of the protocol both start here; nothing in it dials, serves or
// decides. The request decoder is fuzzed: its bytes may come from a peer
// without a certificate.
package wire

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/authz"
)

// Method names.
const (
	MethodJoin     = "join"
	MethodApply    = "apply"
	MethodBlob     = "blob"
	MethodManifest = "manifest"
	MethodLogs     = "logs"
	// MethodLogsMulti streams the logs of several containers of the node
	// over one connection (LogsMultiRequest). An agent without it answers
	// "unknown rpc method" and the caller asks per container (MethodLogs).
	MethodLogsMulti = "logs_multi"
	MethodPing      = "ping"
	// MethodReadIndex asks the leader for its read index (syncReplica).
	MethodReadIndex = "readindex"
	// MethodAdmin is leave and node removal (AdminRequest).
	MethodAdmin = "admin"
	// MethodAdminWrite is one admin action a user asked for on a node's
	// API socket (AdminWriteRequest).
	MethodAdminWrite = "admin_write"
	MethodKEK        = "kek"
	MethodToken      = "token"
	MethodRenew      = "renew"
	// MethodRenewConfirm: the caller installed the certificate a renewal
	// gave it; the one it replaces may be revoked (node/keyring).
	MethodRenewConfirm = "renew_confirm"
	MethodCARotate     = "carotate"
	MethodRejoin       = "rejoin"
	MethodRemoval      = "removal"
	// MethodSecrets asks the leader for the secrets of a task assigned to
	// the caller.
	MethodSecrets = "secrets"
	// MethodSnapshotRestore carries a snapshot file to the leader: the
	// request line, then exactly Size raw bytes of the file.
	MethodSnapshotRestore = "snapshotrestore"
	// MethodUsage asks a node for the rolling usage of its task containers.
	MethodUsage = "usage"
)

// Request is the request line.
type Request struct {
	Method string          `json:"method"`
	Body   json.RawMessage `json:"body,omitempty"`
}

// Response is the response line.
type Response struct {
	Error string          `json:"error,omitempty"`
	Code  string          `json:"code,omitempty"`
	Body  json.RawMessage `json:"body,omitempty"`
}

// Error codes carried across RPC so callers can react to them.
const (
	CodeNotLeader = "not_leader"
	CodeRefused   = "refused"
	// CodeForbidden carries authz.ErrForbidden and authz.ErrWorker
	// refusals across RPC.
	CodeForbidden = "forbidden"
)

// Error is an error answered by a peer.
type Error struct {
	Code string
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// Is maps the code of a forwarded refusal back to the consensus sentinel it
// was sent for, so callers test forwarded and local errors alike.
func (e *Error) Is(target error) bool {
	if e.Code == CodeNotLeader {
		return target == consensus.ErrNotLeader
	}
	for _, s := range sentinels {
		if s.code == e.Code {
			return target == s.err
		}
	}
	return false
}

// sentinels are the state machine's refusals that cross the wire by code.
var sentinels = []struct {
	code string
	err  error
}{
	{"not_found", consensus.ErrNotFound},
	{"ambiguous", consensus.ErrAmbiguous},
	{"name_taken", consensus.ErrNameTaken},
	{"exists", consensus.ErrExists},
	{"version_mismatch", consensus.ErrVersionMismatch},
	{"invalid", consensus.ErrInvalid},
	{"exhausted", consensus.ErrExhausted},
	{"not_bootstrapped", consensus.ErrNotBootstrapped},
	{"already_bootstrapped", consensus.ErrAlreadyBootstrapped},
	{"malformed", consensus.ErrMalformed},
	{"in_use", consensus.ErrInUse},
	{CodeForbidden, authz.ErrForbidden},
	{"worker", authz.ErrWorker},
	{"command_unsupported", command.ErrUnsupported},
}

// ErrorCode picks the code an error travels with. Leadership changes and
// timeouts are retryable by the caller: they travel as not_leader.
func ErrorCode(err error) string {
	var re *Error
	if errors.As(err, &re) {
		return re.Code
	}
	if errors.Is(err, consensus.ErrNotLeader) || errors.Is(err, consensus.ErrTimeout) || errors.Is(err, consensus.ErrShutdown) {
		return CodeNotLeader
	}
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			return s.code
		}
	}
	return ""
}

// DecodeRequest decodes one request line of a peer (fuzzed: the bytes may
// come from a node without a certificate).
func DecodeRequest(line []byte) (Request, error) {
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		return Request{}, fmt.Errorf("malformed rpc request: %w", err)
	}
	if req.Method == "" {
		return Request{}, errors.New("malformed rpc request: no method")
	}
	return req, nil
}

// ErrLineTooLong ends a line (a request, an answer, a streamed log line)
// longer than its limit.
var ErrLineTooLong = errors.New("line too long")

// ReadLine reads one '\n'-terminated line of at most limit bytes.
func ReadLine(r *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	for {
		frag, err := r.ReadSlice('\n')
		line = append(line, frag...)
		if len(line) > limit {
			return nil, ErrLineTooLong
		}
		if err == nil {
			return line, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
}
