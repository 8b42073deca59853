package keyring

// The keys RPCs and routes end to end: who may call them (an admin — a
// member of the replica that is not a worker — to read or rotate the token
// or rotate the CA; the node itself for a renewal), which
// need the leader, and the forwarding to it. The agent (node/rpcserver)
// only finds the running cluster and hands its Keeper the call; the
// admin check (node/authz over the replica) and the forwarding (node/writes)
// come in as the Keeper's Authorize and Forward.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/wire"
)

// ForwardFunc runs call against the current leader, retrying across
// leader changes until the agent's write timeout.
type ForwardFunc func(ctx context.Context, call func(ctx context.Context, addr string) error) error

// notMember refuses a caller the replica does not list.
func notMember(peerID string) error {
	return &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("node %s is not a member of this cluster", api.ShortID(peerID))}
}

// AnswerToken tells (or, on the leader, rotates) the join secret
// (wire.MethodToken). Allowed callers: a node of the cluster's state whose
// root is an admin — Authorize's consent to command.RotateToken, for a read as
// for a rotation. Reading the token is admitting a node: a worker's root
// that read it could join a second identity of its own, which the join
// records as a manager, and change the cluster through it (DESIGN.md,
// trust model: a worker's root cannot change the cluster).
func (k *Keeper) AnswerToken(ctx context.Context, peerID string, req wire.TokenRequest) (*wire.TokenResponse, error) {
	if _, err := k.Store.Node(peerID); err != nil {
		return nil, notMember(peerID)
	}
	if err := k.authorize(peerID, command.RotateToken{}); err != nil {
		k.logWarn("refused a join token request", "node_id", api.ShortID(peerID), "rotate", req.Rotate, "err", err)
		if req.Rotate {
			return nil, err
		}
		return nil, fmt.Errorf("workers cannot read the join token: %w", err)
	}
	if req.Rotate {
		if !k.Raft.IsLeader() {
			return nil, consensus.ErrNotLeader
		}
		secret, err := k.RotateSecret(ctx)
		if err != nil {
			return nil, err
		}
		return &wire.TokenResponse{Secret: secret}, nil
	}
	c := k.Store.Cluster()
	if c == nil {
		return nil, consensus.ErrNotBootstrapped
	}
	secret, err := JoinSecret(k.Dir, c)
	if err != nil {
		if k.Raft.IsLeader() {
			return nil, &wire.Error{Code: wire.CodeRefused, Msg: err.Error()}
		}
		return nil, consensus.ErrNotLeader // let the caller find a voter that can open it
	}
	return &wire.TokenResponse{Secret: secret}, nil
}

// authorize is Authorize, failing closed for a keeper built without it
// (who may act cannot be told then).
func (k *Keeper) authorize(peerID string, cmd command.Command) error {
	if k.Authorize == nil {
		return &wire.Error{Code: wire.CodeForbidden, Msg: fmt.Sprintf("node %s: no authorization to check the request against", api.ShortID(peerID))}
	}
	return k.Authorize(peerID, cmd)
}

// logWarn logs a refusal when the keeper has a logger.
func (k *Keeper) logWarn(msg string, args ...any) {
	if k.Log != nil {
		k.Log.Warn(msg, args...)
	}
}

// CurrentSecret returns the join secret of c, opened here when this node
// holds the KEK, else asked of the leader. A worker is refused either way
// (the leader would refuse it too, AnswerToken): a worker that still holds
// the KEK (a voter the autopilot has not demoted yet) must not print what
// its role may not read.
func (k *Keeper) CurrentSecret(ctx context.Context, c *consensus.ClusterState) (string, error) {
	if n, err := k.Store.Node(k.Self); err == nil && n.Role == api.RoleWorker {
		return "", &wire.Error{Code: wire.CodeForbidden, Msg: fmt.Sprintf(
			"this node (%s) is a worker: workers cannot read the join token; run `shoal token` on a manager", n.Hostname)}
	}
	if s, err := JoinSecret(k.Dir, c); err == nil {
		return s, nil
	}
	var resp wire.TokenResponse
	err := k.Forward(ctx, func(ctx context.Context, addr string) error {
		return k.Call(ctx, addr, wire.MethodToken, wire.TokenRequest{}, &resp)
	})
	if err != nil {
		return "", fmt.Errorf("ask the leader for the join token: %w", err)
	}
	return resp.Secret, nil
}

// RotateSecretOnLeader rotates the join secret on the leader: here when
// this node leads, else forwarded.
func (k *Keeper) RotateSecretOnLeader(ctx context.Context) error {
	if k.Raft.IsLeader() {
		_, err := k.RotateSecret(ctx)
		return err
	}
	return k.Forward(ctx, func(ctx context.Context, addr string) error {
		return k.Call(ctx, addr, wire.MethodToken, wire.TokenRequest{Rotate: true}, nil)
	})
}

// AnswerRenew signs a new certificate for the caller (wire.MethodRenew).
// Allowed callers: the node itself only — the certificate is issued for
// the caller's node ID (from its verified, unrevoked certificate), and the
// CSR must ask for that ID; the node must still be in the cluster's state
// (Issue). Leader only.
func (k *Keeper) AnswerRenew(ctx context.Context, peerID string, req wire.RenewRequest) (*wire.RenewResponse, error) {
	if !k.Raft.IsLeader() {
		return nil, consensus.ErrNotLeader
	}
	c := k.Store.Cluster()
	if c == nil {
		return nil, consensus.ErrNotBootstrapped
	}
	key, at, most := nodeKey(c.ClusterID, peerID), time.Now(), renewAllowance(k.CertLifetime)
	if !renewals.take(key, at, most) {
		return nil, &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("node %s renewed its certificate %d times within %s: try again later", api.ShortID(peerID), most, renewWindow)}
	}
	resp, err := k.Issue(ctx, peerID, req.CSR, req.Serial)
	if err != nil {
		renewals.undo(key, at)
	}
	return resp, err
}

// AnswerRenewConfirm records that the caller installed its renewed
// certificate (wire.MethodRenewConfirm; ConfirmCert). Allowed callers:
// the node itself only — it confirms the pending certificate of its own
// node ID. Leader only.
func (k *Keeper) AnswerRenewConfirm(ctx context.Context, peerID string, req wire.RenewConfirmRequest) error {
	if !k.Raft.IsLeader() {
		return consensus.ErrNotLeader
	}
	return k.ConfirmCert(ctx, peerID, req.Serial)
}

// renewals is AnswerRenew's per-node bound. The agent builds a Keeper per
// call (node/keyring.go), so a count kept in the Keeper started at zero on
// every renewal and never refused one: one table per process, keyed by
// cluster and node ID (nodeKey), as Issue's locks are.
var renewals renewLimiter

// renewMax renewals per node within renewWindow: a renewal revokes the
// certificate it replaces, and the revocation list (in Raft, on every
// node) keeps its serial until that certificate has expired (expiry.go),
// so a member that renewed in a loop grew every node's state by a
// certificate lifetime's worth of serials and made the leader sign and
// propose without bound. A node
// renews at 1/2–2/3 of its certificate's life, once after a CA rotation
// and once after an address change: six an hour leave room for all of
// those at once; a refused node retries after its backoff.
const (
	renewMax    = 6
	renewWindow = time.Hour
)

// renewAllowance is how many renewals a node may make within renewWindow
// when the leader signs certificates that live lifetime: renewMax, plus
// the scheduled renewals of so short a lifetime (--cert-lifetime may be as
// short as a minute: a node then renews every 30 to 40 seconds, and must
// never be refused for it, or its certificate expires).
func renewAllowance(lifetime time.Duration) int {
	if half := lifetime / 2; half > 0 {
		return renewMax + int(renewWindow/half)
	}
	return renewMax
}

// renewLimiter counts each node's renewals within renewWindow (leader,
// in memory: a new leader starts afresh, which only resets the count),
// by a key that names the node (nodeKey).
// A renewal takes its slot before it is signed, so concurrent requests of
// one node cannot all pass a check made before any of them is counted;
// one that fails on the leader's side (no quorum) gives its slot back, so
// a node is not held up once the leader recovers.
type renewLimiter struct {
	mu     sync.Mutex
	recent map[string][]time.Time
}

// take counts a renewal of node id at now, unless it already made most
// within the window.
func (l *renewLimiter) take(id string, now time.Time, most int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	ts := l.pruneLocked(id, now)
	if len(ts) >= most {
		return false
	}
	l.recent[id] = append(ts, now)
	return true
}

// undo gives back the slot take counted at at.
func (l *renewLimiter) undo(id string, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if i := slices.Index(l.recent[id], at); i >= 0 {
		l.recent[id] = slices.Delete(l.recent[id], i, i+1)
	}
}

// pruneLocked drops renewals older than the window (and nodes with none
// left) and returns id's.
func (l *renewLimiter) pruneLocked(id string, now time.Time) []time.Time {
	if l.recent == nil {
		l.recent = map[string][]time.Time{}
	}
	for k, ts := range l.recent {
		ts = slices.DeleteFunc(ts, func(t time.Time) bool { return now.Sub(t) >= renewWindow })
		if len(ts) == 0 {
			delete(l.recent, k)
		} else {
			l.recent[k] = ts
		}
	}
	return l.recent[id]
}

// AnswerCARotate starts a CA rotation on the leader (wire.MethodCARotate).
// Allowed callers: any node of the cluster's state whose root is an admin
// (an admin operation from any node's API, as forwarded writes are): a
// rotation changes the cluster as a token rotation does, so it needs
// Authorize's consent to command.RotateToken, which a worker's root lacks.
func (k *Keeper) AnswerCARotate(ctx context.Context, peerID string) (*wire.CARotateResponse, error) {
	if _, err := k.Store.Node(peerID); err != nil {
		return nil, notMember(peerID)
	}
	if err := k.authorize(peerID, command.RotateToken{}); err != nil {
		k.logWarn("refused a CA rotation", "node_id", api.ShortID(peerID), "err", err)
		return nil, err
	}
	if !k.Raft.IsLeader() {
		return nil, consensus.ErrNotLeader
	}
	fp, err := k.RotateCA(ctx)
	if err != nil {
		return nil, err
	}
	return &wire.CARotateResponse{CAFingerprint: fp}, nil
}

// RotateCAAndWait is `shoal ca rotate` on this node: start the rotation on
// the leader (here or forwarded), then wait (up to wait) until this node's
// replica shows it done. The caller adds the new token.
func (k *Keeper) RotateCAAndWait(ctx context.Context, wait time.Duration) (api.CARotateResponse, error) {
	var fp string
	var err error
	if k.Raft.IsLeader() {
		fp, err = k.RotateCA(ctx)
	} else {
		var resp wire.CARotateResponse
		err = k.Forward(ctx, func(ctx context.Context, addr string) error {
			return k.Call(ctx, addr, wire.MethodCARotate, nil, &resp)
		})
		fp = resp.CAFingerprint
	}
	if err != nil {
		return api.CARotateResponse{}, err
	}
	out := api.CARotateResponse{CAFingerprint: fp}
	out.Complete, out.Pending = k.WaitRotation(ctx, fp, wait)
	return out, nil
}

// AdmitID decides whether a joiner may have the node ID it asks for
// (AdmitJoinID, from what this leader's replica, Raft configuration and
// gossip — Alive — say of the ID) and returns the serials to revoke when
// it may.
func (k *Keeper) AdmitID(c *consensus.ClusterState, req wire.JoinRequest) ([]string, error) {
	in := JoinClaim{Req: req, Leader: req.NodeID == k.Self, Now: time.Now()}
	if n, err := k.Store.Node(req.NodeID); err == nil {
		in.Record = n
		in.Alive = n.Status == api.NodeReady && k.Alive(req.NodeID)
	}
	if servers, err := k.Raft.Servers(); err == nil {
		for _, s := range servers {
			if s.ID == req.NodeID {
				in.InRaft = true
			}
		}
	}
	revoke, err := AdmitJoinID(in, c, k.Store.IsRevoked)
	var taken *IDTakenError
	if errors.As(err, &taken) {
		k.Log.Warn("join refused: node ID taken", "node_id", api.ShortID(req.NodeID), "err", taken.Err)
		return nil, taken.Refusal()
	}
	return revoke, err
}
