package writes

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/wire"
)

func TestRetryable(t *testing.T) {
	fsm := func(e error) error { return fmt.Errorf("apply command type 7: %w", e) }
	tests := []struct {
		name string
		err  error
		want bool
	}{
		// Answers of the state machine: the user must see them.
		{"not found", fsm(consensus.ErrNotFound), false},
		{"ambiguous", fsm(consensus.ErrAmbiguous), false},
		{"name taken", fsm(consensus.ErrNameTaken), false},
		{"exists", fsm(consensus.ErrExists), false},
		{"version mismatch", fsm(consensus.ErrVersionMismatch), false},
		{"invalid", fsm(consensus.ErrInvalid), false},
		{"exhausted", fsm(consensus.ErrExhausted), false},
		{"not bootstrapped", fsm(consensus.ErrNotBootstrapped), false},
		{"already bootstrapped", fsm(consensus.ErrAlreadyBootstrapped), false},
		{"malformed", fsm(consensus.ErrMalformed), false},
		{"in use", fsm(consensus.ErrInUse), false},
		{"refused by the leader", &wire.Error{Code: wire.CodeRefused, Msg: "version mismatch"}, false},
		{"refused by the leader, wrapped", fmt.Errorf("x: %w", &wire.Error{Code: wire.CodeRefused, Msg: "no"}), false},
		{"peer error without code", &wire.Error{Msg: "unknown rpc method"}, false},

		// Leadership and transport trouble: try again, maybe elsewhere.
		{"not leader", ErrNotLeader, true},
		{"not leader, wrapped", fmt.Errorf("apply: %w", consensus.ErrNotLeader), true},
		{"raft timeout", fmt.Errorf("apply command type 3: %w", consensus.ErrTimeout), true},
		{"not leader from a peer", &wire.Error{Code: wire.CodeNotLeader, Msg: "not the raft leader"}, true},
		{"raft shut down", consensus.ErrShutdown, true},
		{"connection refused", fmt.Errorf("connect to 10.0.0.1:2377: %w", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}), true},
		{"connection reset", fmt.Errorf("read apply answer: %w", syscall.ECONNRESET), true},
		{"plain error", errors.New("something broke"), true},
		// The leader refused a node's write for its rate: nothing was
		// applied; the writer waits and sends it again.
		{"throttled by the leader", &wire.Error{Code: CodeThrottled, Msg: "node n is writing faster than the leader accepts"}, true},
		{"throttled, wrapped", fmt.Errorf("apply: %w", ThrottledError("n", time.Second)), true},
		// Not-leader is checked first: such a write was never applied.
		{"not leader wins over a wrapped sentinel", fmt.Errorf("%w: %w", consensus.ErrNotLeader, consensus.ErrNotFound), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Retryable(tt.err); got != tt.want {
				t.Errorf("Retryable(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

// TestSettleRetry: a refusal after an attempt that may have been committed
// is never reported as a refusal of a write that took effect.
func TestSettleRetry(t *testing.T) {
	create := &command.CreateService{Service: api.Service{ID: "s1", Name: "web"}}
	del := &command.DeleteService{ID: "s1"}
	upd := &command.UpdateService{Service: api.Service{ID: "s1"}, ExpectVersion: 3}
	exists := fmt.Errorf("create service s1: %w", consensus.ErrExists)
	gone := fmt.Errorf("delete service s1: %w", consensus.ErrNotFound)
	moved := fmt.Errorf("update service web: %w", consensus.ErrVersionMismatch)
	taken := fmt.Errorf("create service web: %w", consensus.ErrNameTaken)
	invalid := fmt.Errorf("bad spec: %w", consensus.ErrInvalid)
	tests := []struct {
		name    string
		cmd     command.Command
		err     error
		sent    bool
		want    error // nil: success
		unknown bool
	}{
		{"first attempt refused stands", create, exists, false, exists, false},
		{"create met its own ID", create, exists, true, nil, false},
		{"create: name taken by another", create, taken, true, taken, false},
		{"delete after a lost answer", del, gone, true, nil, true},
		{"update after a lost answer", upd, moved, true, nil, true},
		{"validation stands", upd, invalid, true, invalid, false},
		{"delete refused at once", del, gone, false, gone, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := SettleRetry(tt.cmd, tt.err, tt.sent)
			switch {
			case tt.unknown:
				if !errors.Is(got, ErrOutcomeUnknown) {
					t.Fatalf("got %v, want outcome unknown", got)
				}
			case tt.want == nil:
				if got != nil {
					t.Fatalf("got %v, want success", got)
				}
			default:
				if got != tt.want {
					t.Fatalf("got %v, want %v", got, tt.want)
				}
			}
		})
	}
}
