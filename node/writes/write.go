package node

// Writes from any node. The API builds a command (timestamps and IDs are
// filled here, never in the FSM), and write() gets it committed: applied
// directly on the leader, forwarded over RPC otherwise, and retried across
// leader changes until the write timeout. A write that cannot find a leader
// with quorum fails with ErrNoQuorum instead of hanging.
//
// Two shapes cross the wire (node/authz says why): a node's report about
// itself travels as a raw command (wire.MethodApply); what a user asked on the API
// socket travels as an admin action (wire.MethodAdminWrite), which the leader
// re-validates and records with the asking node's ID. The leader's own API
// goes through the same checks, so a spec is validated on the leader however
// it arrived.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/authz"
	"github.com/shoal-org/shoal/node/handlers"
	"github.com/shoal-org/shoal/node/wire"
)

// write commits cmd through the leader and returns the FSM's result.
func (a *Agent) write(ctx context.Context, cmd consensus.Command) (json.RawMessage, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	action := authz.AdminAction(cmd)
	if action != "" {
		if err := a.localWriteAllowed(cl); err != nil {
			return nil, err
		}
	}
	enc, err := consensus.EncodeCommand(cmd)
	if err != nil {
		return nil, fmt.Errorf("encode command: %w", err)
	}
	if action == authz.ActionRotateToken {
		enc = nil // the leader makes the secret
	}
	ctx, cancel := context.WithTimeout(ctx, a.cfg.WriteTimeout)
	defer cancel()
	var last error
	sent := false // an earlier attempt may have been committed
	for {
		var res json.RawMessage
		var err error
		if cl.raft.IsLeader() {
			if action != "" {
				res, err = a.applyAdmin(ctx, a.id.NodeID, wire.AdminWriteRequest{Action: action, Command: enc})
			} else {
				res, err = a.applyLocal(ctx, enc)
			}
		} else if _, addr := cl.raft.Leader(); addr != "" {
			if action != "" {
				err = callRPC(ctx, addr, cl.client, wire.MethodAdminWrite, wire.AdminWriteRequest{Action: action, Command: enc}, &res, nil)
			} else {
				err = callRPC(ctx, addr, cl.client, wire.MethodApply, wire.ApplyRequest{Command: enc}, &res, nil)
			}
		} else {
			err = errNoLeaderKnown
		}
		if err == nil {
			return res, nil
		}
		if !retryable(err) {
			return nil, settleRetry(cmd, err, sent)
		}
		// Anything but "no leader known" may have reached a leader that
		// committed the entry before it lost leadership or the answer was
		// lost: the next attempt may meet the state this one made.
		sent = sent || !errors.Is(err, errNoLeaderKnown)
		last = err
		select {
		case <-ctx.Done():
			return nil, a.noQuorumError(cl, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// errNoLeaderKnown: no attempt was sent, this node knows no leader yet.
var errNoLeaderKnown = fmt.Errorf("no leader known: %w", ErrNotLeader)

// settleRetry interprets a refusal that ends the retries of write. A
// refusal by the state (the object exists, is gone, has another version)
// after an attempt that may have been committed can be that attempt's own
// doing: a create refused because its (random, fresh) ID exists was
// applied; any other such refusal leaves the outcome unknown, which is
// what the caller is told — never a refusal of a write that took effect.
// Validation refusals do not depend on the state and stand.
func settleRetry(cmd consensus.Command, err error, sent bool) error {
	if !sent {
		return err
	}
	if cmd.Type() == consensus.TypeCreateService && errors.Is(err, consensus.ErrExists) {
		return nil
	}
	// (A name taken is not among them: the FSM checks the ID and the
	// version first, so an attempt of this write would have met those.)
	for _, e := range []error{consensus.ErrExists, consensus.ErrNotFound, consensus.ErrVersionMismatch, consensus.ErrInUse} {
		if errors.Is(err, e) {
			return fmt.Errorf("%w: the retry was refused with: %v", ErrOutcomeUnknown, err)
		}
	}
	return err
}

// retryable tells transport and leadership failures (retry) from answers
// of the state machine (return to the user).
func retryable(err error) bool {
	var re *wire.Error
	if errors.As(err, &re) {
		return re.Code == wire.CodeNotLeader
	}
	if errors.Is(err, consensus.ErrNotLeader) || errors.Is(err, consensus.ErrTimeout) {
		return true
	}
	// Business refusals of the FSM wrap the consensus sentinels below.
	for _, e := range []error{consensus.ErrNotFound, consensus.ErrAmbiguous, consensus.ErrNameTaken,
		consensus.ErrExists, consensus.ErrVersionMismatch, consensus.ErrInvalid, consensus.ErrExhausted,
		consensus.ErrNotBootstrapped, consensus.ErrAlreadyBootstrapped, consensus.ErrMalformed,
		consensus.ErrInUse, authz.ErrForbidden, authz.ErrWorker,
		consensus.ErrCommandUnsupported} {
		if errors.Is(err, e) {
			return false
		}
	}
	return true // connection refused, reset, leadership lost...
}

// leaderCommand decodes a command to propose on this node, which must
// lead.
func (a *Agent) leaderCommand(enc []byte) (*cluster, consensus.Command, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, nil, err
	}
	if !cl.raft.IsLeader() {
		return nil, nil, ErrNotLeader
	}
	cmd, err := consensus.DecodeCommand(enc)
	if err != nil {
		return nil, nil, fmt.Errorf("decode forwarded command: %w", err)
	}
	return cl, cmd, nil
}

// applyLocal applies an encoded command of the leader's own (its reports
// about itself) on this node, which must lead.
func (a *Agent) applyLocal(ctx context.Context, enc []byte) (json.RawMessage, error) {
	cl, cmd, err := a.leaderCommand(enc)
	if err != nil {
		return nil, err
	}
	if err := checkServiceCommand(cl, cmd); err != nil {
		return nil, err
	}
	return applyResult(cl.raft.Apply(ctx, cmd))
}

// applyResult encodes what Raft.Apply returned for the RPC answer.
func applyResult(res any, err error) (json.RawMessage, error) {
	if err != nil {
		return nil, err // the sentinel survives forwarding through wire.ErrorCode
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

// localWriteAllowed refuses admin actions on a worker's API socket before
// anything is sent: the leader would refuse them too.
func (a *Agent) localWriteAllowed(cl *cluster) error {
	if n, err := cl.store.Node(a.id.NodeID); err == nil && n.Role == api.RoleWorker {
		return fmt.Errorf("%w: its API answers reads but refuses changes; run the command on a manager node, or make this node a manager with `shoal node update --role manager %s` there",
			authz.ErrWorker, n.Hostname)
	}
	return nil
}

// callerOf describes a peer for authz.Authorize from the leader's replica.
func callerOf(cl *cluster, kind authz.Kind, peerID string) (authz.Caller, *api.Node) {
	c := authz.Caller{Kind: kind, NodeID: peerID}
	n, err := cl.store.Node(peerID)
	if err != nil {
		return c, nil
	}
	c.Worker = n.Role == api.RoleWorker
	return c, n
}

// applyNodeCommand is wire.MethodApply on the leader: a raw command a peer proposes
// about itself, authorized by its certificate's node ID.
func (a *Agent) applyNodeCommand(ctx context.Context, peerID string, enc []byte) (json.RawMessage, error) {
	cl, cmd, err := a.leaderCommand(enc)
	if err != nil {
		return nil, err
	}
	c, self := callerOf(cl, authz.Node, peerID)
	if err := authz.Authorize(c, cmd, self); err != nil {
		a.log.Warn("refused a command from a node", "node_id", shortID(peerID), "command", authz.TypeName(cmd), "err", err)
		return nil, err
	}
	return applyResult(cl.raft.Apply(ctx, cmd))
}

// applyAdmin runs an admin action on the leader for a user on node
// peerID's API socket (peerID is this node for its own socket): authz.Authorize,
// re-validate, record who asked, propose.
func (a *Agent) applyAdmin(ctx context.Context, peerID string, req wire.AdminWriteRequest) (json.RawMessage, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	if !cl.raft.IsLeader() {
		return nil, ErrNotLeader
	}
	var cmd consensus.Command
	if req.Action == authz.ActionRotateToken {
		// The secret is drawn and sealed on the leader (keys.go): it never
		// travels or enters the log in the clear.
		c, _ := callerOf(cl, authz.Admin, peerID)
		if err := authz.Authorize(c, consensus.RotateToken{}, nil); err != nil {
			a.log.Warn("refused an admin action", "node_id", shortID(peerID), "action", req.Action, "err", err)
			return nil, err
		}
		_, err := a.rotateSecretAsLeader(ctx, cl)
		return nil, err
	} else {
		if cmd, err = consensus.DecodeCommand(req.Command); err != nil {
			return nil, fmt.Errorf("decode forwarded %s: %w", req.Action, err)
		}
		if got := authz.AdminAction(cmd); got != req.Action {
			return nil, fmt.Errorf("%w: admin action %q carries a %s command", authz.ErrForbidden, req.Action, authz.TypeName(cmd))
		}
	}
	c, _ := callerOf(cl, authz.Admin, peerID)
	if err := authz.Authorize(c, cmd, nil); err != nil {
		a.log.Warn("refused an admin action", "node_id", shortID(peerID), "action", req.Action, "err", err)
		return nil, err
	}
	subject := ""
	switch x := cmd.(type) {
	case consensus.CreateService:
		if err := authz.CheckSpecOnLeader(x.Service.Spec, nil, cl.store.Nodes()); err != nil {
			return nil, err
		}
		if err := handlers.CheckFileRefs(cl.store, x.Service.Spec); err != nil {
			return nil, fmt.Errorf("%w: %w", consensus.ErrInvalid, err)
		}
		// Registry credentials are proposed only sealed (registryauth.go).
		if err := a.sealServiceAuthOnLeader(cl, &x.Service, nil); err != nil {
			return nil, err
		}
		x.Service.UpdatedBy = peerID
		cmd, subject = x, x.Service.Name
	case consensus.UpdateService:
		old, _ := cl.store.Service(x.Service.ID)
		if err := a.sealServiceAuthOnLeader(cl, &x.Service, old); err != nil {
			return nil, err
		}
		if err := authz.CheckSpecOnLeader(x.Service.Spec, old, cl.store.Nodes()); err != nil {
			return nil, err
		}
		if err := handlers.CheckFileRefs(cl.store, x.Service.Spec); err != nil {
			return nil, fmt.Errorf("%w: %w", consensus.ErrInvalid, err)
		}
		x.Service.UpdatedBy = peerID
		cmd, subject = x, x.Service.Name
	case consensus.CreateSecret:
		// The plaintext came over mutual TLS; only the sealed form is
		// proposed (secrets.go).
		if x, err = a.sealSecretOnLeader(cl, x); err != nil {
			return nil, err
		}
		cmd, subject = x, x.Secret.Name
	case consensus.CreateConfig:
		if err := handlers.CheckObject(api.SecretCreateRequest{Name: x.Config.Name, Data: x.Config.Data}, false); err != nil {
			return nil, err
		}
		subject = x.Config.Name
	case consensus.DeleteSecret:
		subject = x.ID
	case consensus.DeleteConfig:
		subject = x.ID
	case consensus.DeleteService:
		subject = x.ID
	case consensus.UpdateNode:
		subject = x.ID
	case consensus.CreateNetwork:
		subject = x.Network.Name
	case consensus.DeleteNetwork:
		subject = x.ID
	}
	res, err := applyResult(cl.raft.Apply(ctx, cmd))
	if err == nil {
		a.log.Info("admin action", "action", req.Action, "subject", subject, "by", shortID(peerID))
	}
	return res, err
}

// noQuorumError explains why a write could not be committed.
func (a *Agent) noQuorumError(cl *cluster, last error) error {
	servers, _ := cl.raft.Servers()
	alive := cl.members.AliveSet()
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

// Read your writes across nodes.
//
// A node answers reads from its own replica, which may trail the leader by a
// few entries: `image import` on node 1 returns once the leader applied the
// image record, and a `service create` through node 2 right after could
// still find no such image there. So every API handler that decides a write
// on state it reads (does the image exist, is the name or port free, which
// service or node is meant, what version is current) first calls
// syncReplica: the node asks the leader for its read index — the leader
// runs a Raft barrier (which proves it still leads and that its store holds
// every committed entry, those acknowledged by a previous leader included)
// and answers the index of the last command its store applied — and waits
// until its own store has applied that index. Everything any client saw
// acknowledged before the call is then visible. Reads with ?consistent=1 do
// the same.
//
// The store's index, not raft's AppliedIndex, is compared: raft moves
// AppliedIndex when it hands entries to the FSM, before the FSM applied
// them, and a reader would race the apply.

// readIndex is the leader's half: the store index a reader must reach to
// see every write acknowledged so far. It costs one barrier entry.
func (a *Agent) readIndex(ctx context.Context) (uint64, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return 0, err
	}
	if !cl.raft.IsLeader() {
		return 0, ErrNotLeader
	}
	if err := cl.raft.Barrier(ctx); err != nil {
		return 0, err
	}
	return cl.store.Index(), nil
}

// syncReplica waits until this node's store holds every write the leader
// had acknowledged when the call began (see above). It fails, changing
// nothing, when no leader answers or the store does not catch up within the
// write timeout.
func (a *Agent) syncReplica(ctx context.Context, cl *cluster) error {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.WriteTimeout)
	defer cancel()
	for {
		var idx uint64
		var err error
		if cl.raft.IsLeader() {
			idx, err = a.readIndex(ctx)
		} else if _, addr := cl.raft.Leader(); addr != "" {
			var resp wire.ReadIndexResponse
			err = callRPC(ctx, addr, cl.client, wire.MethodReadIndex, nil, &resp, nil)
			idx = resp.Index
			var re *wire.Error
			if errors.As(err, &re) && re.Code == "" && strings.Contains(re.Msg, "unknown rpc method") {
				return nil // a leader of an older version: decide on the local replica, as it did
			}
		} else {
			err = ErrNotLeader
		}
		if err == nil {
			return a.waitStoreIndex(ctx, cl, idx)
		}
		if !retryable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return a.noQuorumError(cl, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitStoreIndex waits until the local store applied the entry at idx.
func (a *Agent) waitStoreIndex(ctx context.Context, cl *cluster, idx uint64) error {
	ch, cancel := cl.store.Subscribe()
	defer cancel()
	for {
		applied := cl.store.Index()
		if applied >= idx {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: this node's replica did not catch up with the leader (applied %d of %d) in %s",
				ErrNoQuorum, applied, idx, a.cfg.WriteTimeout)
		case <-ch:
		}
	}
}

// checkServiceCommand is the leader's re-validation of a service write
// before it proposes it, whatever node forwarded it: a node with a bug or an
// older version must not store a spec this version refuses. The refusal
// travels back to the forwarding node as a 400.
func checkServiceCommand(cl *cluster, cmd consensus.Command) error {
	var err error
	// Decoded commands are values; commands built here are pointers.
	switch c := cmd.(type) {
	case consensus.CreateService:
		err = handlers.CheckStoredSpec(cl.store, c.Service.Spec, c.Service.ID)
	case *consensus.CreateService:
		err = handlers.CheckStoredSpec(cl.store, c.Service.Spec, c.Service.ID)
	case consensus.UpdateService:
		err = handlers.CheckStoredSpec(cl.store, c.Service.Spec, c.Service.ID)
	case *consensus.UpdateService:
		err = handlers.CheckStoredSpec(cl.store, c.Service.Spec, c.Service.ID)
	case consensus.Batch:
		return checkServiceCommands(cl, c.Commands)
	case *consensus.Batch:
		return checkServiceCommands(cl, c.Commands)
	}
	if err != nil {
		return &wire.Error{Code: wire.CodeRefused, Msg: err.Error()}
	}
	return nil
}

func checkServiceCommands(cl *cluster, cmds []consensus.Command) error {
	for _, c := range cmds {
		if err := checkServiceCommand(cl, c); err != nil {
			return err
		}
	}
	return nil
}
