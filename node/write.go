package node

// Writes from any node. The API builds a command (timestamps and IDs are
// filled here, never in the FSM), and write() gets it committed: applied
// directly on the leader, forwarded over RPC otherwise, and retried across
// leader changes until the write timeout. A write that cannot find a leader
// with quorum fails with ErrNoQuorum instead of hanging.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/shoal-org/shoal/consensus"
)

type applyRPCRequest struct {
	Command []byte `json:"command"`
}

// write commits cmd through the leader and returns the FSM's result.
func (a *Agent) write(ctx context.Context, cmd consensus.Command) (json.RawMessage, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	enc, err := consensus.EncodeCommand(cmd)
	if err != nil {
		return nil, fmt.Errorf("encode command: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, a.cfg.WriteTimeout)
	defer cancel()
	var last error
	for {
		var res json.RawMessage
		var err error
		if cl.raft.IsLeader() {
			res, err = a.applyLocal(ctx, enc)
		} else if _, addr := cl.raft.Leader(); addr != "" {
			err = callRPC(ctx, addr, cl.client, rpcApply, applyRPCRequest{Command: enc}, &res, nil)
		} else {
			err = ErrNotLeader
		}
		if err == nil {
			return res, nil
		}
		if !retryable(err) {
			return nil, err
		}
		last = err
		select {
		case <-ctx.Done():
			return nil, a.noQuorumError(cl, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// retryable tells transport and leadership failures (retry) from answers
// of the state machine (return to the user).
func retryable(err error) bool {
	var re *rpcError
	if errors.As(err, &re) {
		return re.Code == codeNotLeader
	}
	if errors.Is(err, consensus.ErrNotLeader) || errors.Is(err, consensus.ErrTimeout) {
		return true
	}
	// Business refusals of the FSM wrap the consensus sentinels below.
	for _, e := range []error{consensus.ErrNotFound, consensus.ErrAmbiguous, consensus.ErrNameTaken,
		consensus.ErrExists, consensus.ErrVersionMismatch, consensus.ErrInvalid, consensus.ErrExhausted,
		consensus.ErrNotBootstrapped, consensus.ErrAlreadyBootstrapped, consensus.ErrMalformed,
		consensus.ErrInUse} {
		if errors.Is(err, e) {
			return false
		}
	}
	return true // connection refused, reset, leadership lost...
}

// applyLocal applies an encoded command on this node, which must lead.
func (a *Agent) applyLocal(ctx context.Context, enc []byte) (json.RawMessage, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	if !cl.raft.IsLeader() {
		return nil, ErrNotLeader
	}
	cmd, err := consensus.DecodeCommand(enc)
	if err != nil {
		return nil, fmt.Errorf("decode forwarded command: %w", err)
	}
	res, err := cl.raft.Apply(ctx, cmd)
	if err != nil {
		return nil, err // the sentinel survives forwarding through errorCode
	}
	if res == nil {
		return nil, nil
	}
	b, err := json.Marshal(res)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// noQuorumError explains why a write could not be committed.
func (a *Agent) noQuorumError(cl *cluster, last error) error {
	servers, _ := cl.raft.Servers()
	alive := cl.members.aliveSet()
	voters, reach := 0, 0
	for _, s := range servers {
		if !s.Voter {
			continue
		}
		voters++
		if s.ID == a.id.NodeID {
			reach++
		} else if _, ok := alive[s.ID]; ok {
			reach++
		}
	}
	leader, _ := cl.raft.Leader()
	msg := fmt.Sprintf("the write was not applied: no leader with a majority is reachable from this node (%d of %d voters reachable, need %d)",
		reach, voters, voters/2+1)
	if leader != "" {
		msg = fmt.Sprintf("the write was not applied: leader %s did not commit it in %s (%d of %d voters reachable from this node)",
			shortID(leader), a.cfg.WriteTimeout, reach, voters)
	}
	if last != nil {
		msg += fmt.Sprintf("; last error: %v", last)
	}
	return fmt.Errorf("%w: %s", ErrNoQuorum, msg)
}
