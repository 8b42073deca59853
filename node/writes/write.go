// Package writes is how a write reaches the leader and is applied once:
// forwarded from any node, retried across leader changes, re-validated,
// authorized and recorded on the leader, with the secret material a write
// brings (user secrets, registry credentials) sealed before it is proposed
// and opened only for the node of a task that needs it; the read index that
// lets a node decide a write on its replica; and the restore of a snapshot
// file, the largest write of all. It holds one cluster instance's parts in
// Config and never imports node.
package writes

// Writes from any node. The API builds a command (timestamps and IDs are
// filled here, never in the FSM), and write() gets it committed: applied
// directly on the leader, forwarded over RPC otherwise, and retried across
// leader changes until the write timeout. A write that cannot find a leader
// with quorum fails with ErrNoQuorum instead of hanging, at once when no
// election can succeed (noleader.go).
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
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/consensus/raftnode"
	"github.com/shoal-org/shoal/node/authz"
	"github.com/shoal-org/shoal/node/handlers"
	"github.com/shoal-org/shoal/node/membership"
	"github.com/shoal-org/shoal/node/wire"
)

// Errors of the write path; node's API maps them to HTTP statuses.
var (
	// ErrNotLeader: the write reached a node that is not the leader.
	ErrNotLeader = consensus.ErrNotLeader
	// ErrNoQuorum: no leader could commit the write within the write timeout.
	ErrNoQuorum = errors.New("no quorum")
	// ErrOutcomeUnknown: an attempt of the write may have been committed
	// (leadership changed, or the connection broke, after it was sent) and
	// the retry was refused by the state it may have changed itself, so
	// whether the write took effect cannot be told from the answer.
	ErrOutcomeUnknown = errors.New("the write may or may not have been applied (the leader changed while it was being committed)")
)

// Config is what the write path needs of one running cluster instance.
// Store, Raft, Log and WriteTimeout are always required; Members, Call,
// Dial, KEK and RotateToken by the paths that use them. Nothing is changed
// after New.
type Config struct {
	NodeID    string // this node
	ClusterID string // the running cluster's ID (a restore's answer)
	Store     *consensus.Store
	Raft      *raftnode.Raft
	// Members is gossip's view, read to say how many voters a failed write
	// could reach.
	Members *membership.Membership
	Log     *slog.Logger
	// WriteTimeout bounds a write, and a replica's catching up, before
	// ErrNoQuorum.
	WriteTimeout time.Duration
	// Call performs one RPC against the cluster port at addr with this
	// node's TLS (instance.Call).
	Call func(ctx context.Context, addr, method string, body, out any) error
	// Dial opens an RPC connection to the cluster port at addr, for the
	// snapshot restore, whose body follows the request line. A connect
	// failure is a *clusterport.DialError.
	Dial func(addr string) (net.Conn, error)
	// KEK returns the key-encryption key of the cluster st, which only a
	// voter holds (node/keyring).
	KEK func(st *consensus.ClusterState) ([]byte, error)
	// RotateToken draws and seals a new join secret on this leader and
	// proposes it (node/keyring): the secret never travels.
	RotateToken func(ctx context.Context) error
}

// Writer is the write path of one cluster instance. It holds no state of
// its own, so making one per call is as good as keeping one.
type Writer struct {
	cfg Config
	log *slog.Logger
}

// New returns the write path over cfg.
func New(cfg Config) *Writer { return &Writer{cfg: cfg, log: cfg.Log} }

// Write commits cmd through the leader and returns the FSM's result.
func (w *Writer) Write(ctx context.Context, cmd command.Command) (json.RawMessage, error) {
	cl := w.cfg
	action := authz.AdminAction(cmd)
	if action != "" {
		if err := w.LocalWriteAllowed(); err != nil {
			return nil, err
		}
	}
	enc, err := command.Encode(cmd)
	if err != nil {
		return nil, fmt.Errorf("encode command: %w", err)
	}
	if action == authz.ActionRotateToken {
		enc = nil // the leader makes the secret
	}
	ctx, cancel := context.WithTimeout(ctx, cl.WriteTimeout)
	defer cancel()
	var last error
	sent := false // an earlier attempt may have been committed
	for {
		var res json.RawMessage
		var err error
		if cl.Raft.IsLeader() {
			if action != "" {
				res, err = w.ApplyAdmin(ctx, cl.NodeID, wire.AdminWriteRequest{Action: action, Command: enc})
			} else {
				res, err = w.ApplyLocal(ctx, enc)
			}
		} else if _, addr := cl.Raft.Leader(); addr != "" {
			if action != "" {
				err = cl.Call(ctx, addr, wire.MethodAdminWrite, wire.AdminWriteRequest{Action: action, Command: enc}, &res)
			} else {
				err = cl.Call(ctx, addr, wire.MethodApply, wire.ApplyRequest{Command: enc}, &res)
			}
		} else {
			err = errNoLeaderKnown
			if err := w.noLeader(sent); err != nil {
				return nil, err
			}
		}
		if err == nil {
			return res, nil
		}
		if !Retryable(err) {
			return nil, SettleRetry(cmd, err, sent)
		}
		// Anything but "no leader known" (or the leader's refusal for the
		// node's rate, which applied nothing) may have reached a leader that
		// committed the entry before it lost leadership or the answer was
		// lost: the next attempt may meet the state this one made.
		sent = sent || !errors.Is(err, errNoLeaderKnown) && !Throttled(err)
		last = err
		select {
		case <-ctx.Done():
			if Throttled(last) {
				return nil, fmt.Errorf("the write was not applied in %s: %w", cl.WriteTimeout, last)
			}
			return nil, w.NoQuorumError(last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// errNoLeaderKnown: no attempt was sent, this node knows no leader yet.
var errNoLeaderKnown = fmt.Errorf("no leader known: %w", ErrNotLeader)

// SettleRetry interprets a refusal that ends the retries of write. A
// refusal by the state (the object exists, is gone, has another version)
// after an attempt that may have been committed can be that attempt's own
// doing: a create refused because its (random, fresh) ID exists was
// applied; any other such refusal leaves the outcome unknown, which is
// what the caller is told — never a refusal of a write that took effect.
// Validation refusals do not depend on the state and stand.
func SettleRetry(cmd command.Command, err error, sent bool) error {
	if !sent {
		return err
	}
	if cmd.Type() == command.TypeCreateService && errors.Is(err, consensus.ErrExists) {
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

// Retryable tells transport and leadership failures, and the leader's
// refusal of a node's write for its rate (Throttled), which pass (retry),
// from answers of the state machine (return to the user).
func Retryable(err error) bool {
	var re *wire.Error
	if errors.As(err, &re) {
		return re.Code == wire.CodeNotLeader || re.Code == CodeThrottled
	}
	if errors.Is(err, consensus.ErrNotLeader) || errors.Is(err, consensus.ErrTimeout) {
		return true
	}
	// Business refusals of the FSM wrap the consensus sentinels below.
	for _, e := range []error{consensus.ErrNotFound, consensus.ErrAmbiguous, consensus.ErrNameTaken,
		consensus.ErrExists, consensus.ErrVersionMismatch, consensus.ErrInvalid, consensus.ErrExhausted,
		consensus.ErrNotBootstrapped, consensus.ErrAlreadyBootstrapped, consensus.ErrMalformed,
		consensus.ErrInUse, authz.ErrForbidden, authz.ErrWorker,
		command.ErrUnsupported} {
		if errors.Is(err, e) {
			return false
		}
	}
	return true // connection refused, reset, leadership lost...
}

// leaderCommand decodes a command to propose on this node, which must
// lead.
func (w *Writer) leaderCommand(enc []byte) (command.Command, error) {
	if !w.cfg.Raft.IsLeader() {
		return nil, ErrNotLeader
	}
	cmd, err := command.Decode(enc)
	if err != nil {
		return nil, fmt.Errorf("decode forwarded command: %w", err)
	}
	return cmd, nil
}

// ApplyLocal applies an encoded command of the leader's own (its reports
// about itself) on this node, which must lead; its task status text is
// bounded as every node's is (MaxStatusText).
func (w *Writer) ApplyLocal(ctx context.Context, enc []byte) (json.RawMessage, error) {
	cmd, err := w.leaderCommand(enc)
	if err != nil {
		return nil, err
	}
	if err := CheckServiceCommand(w.cfg.Store, cmd); err != nil {
		return nil, err
	}
	return applyResult(w.cfg.Raft.Apply(ctx, capStatusText(cmd)))
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

// LocalWriteAllowed refuses admin actions on a worker's API socket before
// anything is sent: the leader would refuse them too.
func (w *Writer) LocalWriteAllowed() error {
	if n, err := w.cfg.Store.Node(w.cfg.NodeID); err == nil && n.Role == api.RoleWorker {
		return fmt.Errorf("%w: its API answers reads but refuses changes; run the command on a manager node, or make this node a manager with `shoal node update --role manager %s` there",
			authz.ErrWorker, n.Hostname)
	}
	return nil
}

// CallerOf describes a peer for authz.Authorize from the leader's replica,
// with its node record (nil when the replica holds none). A peer without a
// record is no Member, which authz refuses everything (a certificate that
// outlived its node's removal is nobody's admin); decide on Member and
// Worker through authz, never on Worker alone.
func CallerOf(store *consensus.Store, kind authz.Kind, peerID string) (authz.Caller, *api.Node) {
	c := authz.Caller{Kind: kind, NodeID: peerID}
	n, err := store.Node(peerID)
	if err != nil {
		return c, nil
	}
	c.Member = true
	c.Worker = n.Role == api.RoleWorker
	return c, n
}

// ApplyNodeCommand is wire.MethodApply on the leader: a raw command a peer proposes
// about itself, authorized by its certificate's node ID, then trimmed of
// what it says beyond the node (task addresses, a worker's image records)
// and of task status text beyond MaxStatusText (limits.go).
func (w *Writer) ApplyNodeCommand(ctx context.Context, peerID string, enc []byte) (json.RawMessage, error) {
	cmd, err := w.leaderCommand(enc)
	if err != nil {
		return nil, err
	}
	c, self := CallerOf(w.cfg.Store, authz.Node, peerID)
	if err := authz.Authorize(c, cmd, self); err != nil {
		w.log.Warn("refused a command from a node", "node_id", api.ShortID(peerID), "command", authz.TypeName(cmd), "err", err)
		return nil, err
	}
	if ok, retryIn, first := nodeWrites.Take(nodeKey(w.cfg.ClusterID, peerID), time.Now(), WriteCost(len(enc))); !ok {
		if first {
			w.log.Warn("a node writes faster than the leader accepts; refusing its writes until it slows down",
				"node_id", api.ShortID(peerID), "burst", NodeWriteBurst, "per_second", NodeWriteRate)
		}
		return nil, ThrottledError(peerID, retryIn)
	}
	if err := w.ownWireGuardKeys(peerID, cmd); err != nil {
		w.log.Warn("refused a command from a node", "node_id", api.ShortID(peerID), "command", authz.TypeName(cmd), "err", err)
		return nil, err
	}
	if err := checkImageIDs(cmd); err != nil {
		w.log.Warn("refused a command from a node", "node_id", api.ShortID(peerID), "command", authz.TypeName(cmd), "err", err)
		return nil, err
	}
	cmd = capStatusText(w.ownTaskAddrs(peerID, cmd))
	if c.Worker {
		if cmd, err = w.workerImageRecords(peerID, cmd); err != nil {
			w.log.Warn("refused a command from a node", "node_id", api.ShortID(peerID), "command", "image records", "err", err)
			return nil, err
		}
	}
	own, rewrote := ownNodeReports(peerID, cmd)
	res, err := w.cfg.Raft.Apply(ctx, own)
	if rewrote && errors.Is(err, command.ErrUnsupported) {
		// A member still runs a release without UpdateOwnNode (an upgrade
		// in progress): the whole record, as those releases did.
		res, err = w.cfg.Raft.Apply(ctx, cmd)
	}
	return applyResult(res, err)
}

// ApplyAdmin runs an admin action on the leader for a user on node
// peerID's API socket (peerID is this node for its own socket): authz.Authorize,
// re-validate, record who asked, propose.
func (w *Writer) ApplyAdmin(ctx context.Context, peerID string, req wire.AdminWriteRequest) (json.RawMessage, error) {
	cl := w.cfg
	if !cl.Raft.IsLeader() {
		return nil, ErrNotLeader
	}
	var cmd command.Command
	var err error
	if req.Action == authz.ActionRotateToken {
		// The secret is drawn and sealed on the leader (node/keyring): it
		// never travels or enters the log in the clear.
		c, _ := CallerOf(cl.Store, authz.Admin, peerID)
		if err := authz.Authorize(c, command.RotateToken{}, nil); err != nil {
			w.log.Warn("refused an admin action", "node_id", api.ShortID(peerID), "action", req.Action, "err", err)
			return nil, err
		}
		return nil, cl.RotateToken(ctx)
	} else {
		if cmd, err = command.Decode(req.Command); err != nil {
			return nil, fmt.Errorf("decode forwarded %s: %w", req.Action, err)
		}
		if got := authz.AdminAction(cmd); got != req.Action {
			return nil, fmt.Errorf("%w: admin action %q carries a %s command", authz.ErrForbidden, req.Action, authz.TypeName(cmd))
		}
	}
	c, _ := CallerOf(cl.Store, authz.Admin, peerID)
	if err := authz.Authorize(c, cmd, nil); err != nil {
		w.log.Warn("refused an admin action", "node_id", api.ShortID(peerID), "action", req.Action, "err", err)
		return nil, err
	}
	// Registry credentials and secrets are proposed only sealed
	// (registryauth.go, secrets.go: the plaintext came over mutual TLS).
	// An update is sealed before its checks, a create after them, as the
	// checks were written.
	switch x := cmd.(type) {
	case command.UpdateService:
		old, _ := cl.Store.Service(x.Service.ID)
		if err := w.sealServiceAuthOnLeader(&x.Service, old); err != nil {
			return nil, err
		}
		cmd = x
	case command.CreateSecret:
		if x.KeepIfSame {
			if same, err := w.sameSecretOnLeader(x); same || err != nil {
				return nil, err
			}
			x.KeepIfSame = false
		}
		// The plaintext came over mutual TLS; only the sealed form is
		// proposed (secrets.go).
		if x, err = w.sealSecretOnLeader(x); err != nil {
			return nil, err
		}
		cmd = x
	}
	cmd, subject, err := checkAdmin(cl.Store, cmd, peerID)
	if err != nil {
		return nil, err
	}
	if x, ok := cmd.(command.CreateService); ok {
		if err := w.sealServiceAuthOnLeader(&x.Service, nil); err != nil {
			return nil, err
		}
		cmd = x
	}
	res, err := applyResult(cl.Raft.Apply(ctx, cmd))
	if err == nil {
		w.log.Info("admin action", "action", req.Action, "subject", subject, "by", api.ShortID(peerID))
	}
	return res, err
}

// checkAdmin is the leader's re-validation of an admin command against
// store, after authorization and sealing and before the proposal (and in
// a deploy's preflight, preflight.go, against its fork): a service spec's
// reserved ports and file references, a config's and a network's rules.
// It records who asked (updated_by) and returns the command to propose
// with the name or ID the log line gives it.
func checkAdmin(store *consensus.Store, cmd command.Command, peerID string) (command.Command, string, error) {
	switch x := cmd.(type) {
	case command.CreateService:
		if err := authz.CheckSpecOnLeader(x.Service.Spec, nil, store.Nodes()); err != nil {
			return nil, "", err
		}
		if err := handlers.CheckFileRefs(store, x.Service.Spec); err != nil {
			return nil, "", fmt.Errorf("%w: %w", consensus.ErrInvalid, err)
		}
		x.Service.UpdatedBy = peerID
		return x, x.Service.Name, nil
	case command.UpdateService:
		old, _ := store.Service(x.Service.ID)
		if err := authz.CheckSpecOnLeader(x.Service.Spec, old, store.Nodes()); err != nil {
			return nil, "", err
		}
		if err := handlers.CheckFileRefs(store, x.Service.Spec); err != nil {
			return nil, "", fmt.Errorf("%w: %w", consensus.ErrInvalid, err)
		}
		x.Service.UpdatedBy = peerID
		return x, x.Service.Name, nil
	case command.CreateSecret:
		return x, x.Secret.Name, nil
	case command.CreateConfig:
		if err := handlers.CheckObject(api.SecretCreateRequest{Name: x.Config.Name, Data: x.Config.Data}, false); err != nil {
			return nil, "", err
		}
		return x, x.Config.Name, nil
	case command.DeleteSecret:
		return x, x.ID, nil
	case command.DeleteConfig:
		return x, x.ID, nil
	case command.DeleteService:
		return x, x.ID, nil
	case command.UpdateNode:
		return x, x.ID, nil
	case command.CreateNetwork:
		if err := authz.CheckNetworkOnLeader(x.Network, store.Nodes()); err != nil {
			return nil, "", err
		}
		return x, x.Network.Name, nil
	case command.DeleteNetwork:
		return x, x.ID, nil
	}
	return cmd, "", nil
}

// Forward runs call against the current leader, retrying across leader
// changes (and a leader's "not the leader" answer) until the write
// timeout, which ends in NoQuorumError. Any other answer of the leader is
// returned as it is.
func (w *Writer) Forward(ctx context.Context, call func(ctx context.Context, addr string) error) error {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.WriteTimeout)
	defer cancel()
	var last error
	sent := false // an attempt failed in transport: the leader may have run it
	for {
		_, addr := w.cfg.Raft.Leader()
		if addr != "" {
			err := call(ctx, addr)
			if err == nil {
				return nil
			}
			var re *wire.Error
			if errors.As(err, &re) && re.Code != wire.CodeNotLeader {
				return err // an answer, not a transport problem
			}
			sent = sent || re == nil
			last = err
		} else if err := w.noLeader(sent); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return w.NoQuorumError(last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// NoQuorumError explains why a write could not be committed; last is the
// last attempt's error (nil for none).
func (w *Writer) NoQuorumError(last error) error {
	cl := w.cfg
	servers, _ := cl.Raft.Servers()
	alive := cl.Members.AliveSet()
	voters, reach := 0, 0
	for _, s := range servers {
		if !s.Voter {
			continue
		}
		voters++
		if s.ID == cl.NodeID {
			reach++
		} else if _, ok := alive[s.ID]; ok {
			reach++
		}
	}
	leader, _ := cl.Raft.Leader()
	msg := fmt.Sprintf("the write was not applied: no leader with a majority is reachable from this node (%d of %d voters reachable, need %d)",
		reach, voters, voters/2+1)
	if leader != "" {
		msg = fmt.Sprintf("the write was not applied: leader %s did not commit it in %s (%d of %d voters reachable from this node)",
			api.ShortID(leader), cl.WriteTimeout, reach, voters)
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
// SyncReplica: the node asks the leader for its read index — the leader
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

// ReadIndex is the leader's half: the store index a reader must reach to
// see every write acknowledged so far. It costs one barrier entry.
func (w *Writer) ReadIndex(ctx context.Context) (uint64, error) {
	if !w.cfg.Raft.IsLeader() {
		return 0, ErrNotLeader
	}
	if err := w.cfg.Raft.Barrier(ctx); err != nil {
		return 0, err
	}
	return w.cfg.Store.Index(), nil
}

// SyncReplica waits until this node's store holds every write the leader
// had acknowledged when the call began (see above). It fails, changing
// nothing, when no leader answers or the store does not catch up within the
// write timeout.
func (w *Writer) SyncReplica(ctx context.Context) error {
	cl := w.cfg
	ctx, cancel := context.WithTimeout(ctx, cl.WriteTimeout)
	defer cancel()
	for {
		var idx uint64
		var err error
		if cl.Raft.IsLeader() {
			idx, err = w.ReadIndex(ctx)
		} else if _, addr := cl.Raft.Leader(); addr != "" {
			var resp wire.ReadIndexResponse
			err = cl.Call(ctx, addr, wire.MethodReadIndex, nil, &resp)
			idx = resp.Index
			var re *wire.Error
			if errors.As(err, &re) && re.Code == "" && strings.Contains(re.Msg, "unknown rpc method") {
				return nil // a leader of an older version: decide on the local replica, as it did
			}
		} else {
			err = ErrNotLeader
			if err := w.noLeader(false); err != nil { // a read index: nothing to apply
				return err
			}
		}
		if err == nil {
			return w.waitStoreIndex(ctx, idx)
		}
		if !Retryable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return w.NoQuorumError(err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitStoreIndex waits until the local store applied the entry at idx.
func (w *Writer) waitStoreIndex(ctx context.Context, idx uint64) error {
	cl := w.cfg
	ch, cancel := cl.Store.Subscribe()
	defer cancel()
	for {
		applied := cl.Store.Index()
		if applied >= idx {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: this node's replica did not catch up with the leader (applied %d of %d) in %s",
				ErrNoQuorum, applied, idx, cl.WriteTimeout)
		case <-ch:
		}
	}
}

// CheckServiceCommand is the leader's re-validation of a service write
// before it proposes it, whatever node forwarded it: a node with a bug or an
// older version must not store a spec this version refuses. The refusal
// travels back to the forwarding node as a 400.
func CheckServiceCommand(store *consensus.Store, cmd command.Command) error {
	var err error
	// Decoded commands are values; commands built here are pointers.
	switch c := cmd.(type) {
	case command.CreateService:
		err = handlers.CheckStoredSpec(store, c.Service.Spec, c.Service.ID)
	case *command.CreateService:
		err = handlers.CheckStoredSpec(store, c.Service.Spec, c.Service.ID)
	case command.UpdateService:
		err = handlers.CheckStoredSpec(store, c.Service.Spec, c.Service.ID)
	case *command.UpdateService:
		err = handlers.CheckStoredSpec(store, c.Service.Spec, c.Service.ID)
	case command.Batch:
		return checkServiceCommands(store, c.Commands)
	case *command.Batch:
		return checkServiceCommands(store, c.Commands)
	}
	if err != nil {
		return &wire.Error{Code: wire.CodeRefused, Msg: err.Error()}
	}
	return nil
}

func checkServiceCommands(store *consensus.Store, cmds []command.Command) error {
	for _, c := range cmds {
		if err := CheckServiceCommand(store, c); err != nil {
			return err
		}
	}
	return nil
}
