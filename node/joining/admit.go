package joining

// The leader's side: admission of a joiner (secret, node ID, certificate,
// state record, Raft non-voter), removal of a node (`leave`, `node rm`),
// and the demotion of a node that lost its raft log. Any node may receive
// these RPCs; the agent forwards them to the leader, and a Leader only
// ever runs on it.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/consensus/raftnode"
	"github.com/shoal-org/shoal/node/keyring"
	"github.com/shoal-org/shoal/node/membership"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/wire"
)

// Raft is the part of raftnode.Raft the leader's membership changes use.
type Raft interface {
	Apply(ctx context.Context, cmd command.Command) (any, error)
	Servers() ([]raftnode.Server, error)
	// QueueNonvoter queues the addition of a non-voter; the channel gets
	// its outcome (raftnode.Raft.QueueNonvoter). Every addition of a
	// non-voter goes through it.
	QueueNonvoter(id, addr string) <-chan error
	AddVoter(ctx context.Context, id, addr string) error
	DemoteVoter(ctx context.Context, id string) error
	RemoveServer(ctx context.Context, id string) error
}

// Leader is the leader's side of membership. The agent builds one from
// its running cluster for each call, after checking that it leads.
type Leader struct {
	Self       string // this node's ID
	GossipAddr string // this node's gossip address, one of a joiner's peers
	Store      *consensus.Store
	Raft       Raft
	// Alive reports whether gossip sees node id alive (this node is).
	Alive func(id string) bool
	// Peers are the gossip addresses of the other members.
	Peers func() []string
	// CA opens the cluster CA of the record (node/keyring).
	CA func(c *consensus.ClusterState) (*pki.CA, error)
	// PullKEK fetches the key that opens the CA from another voter
	// (keyring.Keeper.PullKEK); nil: CA is not retried.
	PullKEK func(ctx context.Context, c *consensus.ClusterState) error
	// KEKWait bounds a join's wait for that key (0: DefaultKEKWait).
	KEKWait time.Duration
	// AdmitID decides whether the joiner may have the node ID it asks for
	// and returns the serials to revoke (keyring.AdmitJoinID).
	AdmitID      func(c *consensus.ClusterState, req wire.JoinRequest) ([]string, error)
	CertLifetime time.Duration
	Epoch        uint64 // this cluster instance's epoch (node/epoch)
	// Removing holds the IDs of nodes being removed (ID → struct{}), so
	// the leader loop does not re-admit them meanwhile; owned by the
	// agent's cluster.
	Removing *sync.Map
	// ApplyRemoval commits the removal of a node's record with the first
	// step of a gossip key rotation (revocation.Rotator.Remove).
	ApplyRemoval func(ctx context.Context, rm *command.RemoveNode) error
	Log          *slog.Logger
}

// AdmitWait bounds how long a join waits for the node's raft admission.
// Raft takes one configuration change at a time, each after the previous
// one committed, so a storm of joins (100 agents at once) queues behind
// each other; past the bound the join answers anyway, since the node's
// record is committed and its addition stays queued (raftnode's admit
// queue; the leader loop adds a recorded, live node that is neither in
// raft nor queued: admitMissing). Waiting longer only made joins time out
// and retry, which loaded the leader further (issue 10).
const AdmitWait = 3 * time.Second

// Admit checks the secret and the request, signs the certificate, records
// the node and adds it to Raft as a non-voter; the reply carries what the
// joiner needs (wire.JoinResponse). Refusals are *wire.Error.
func (l *Leader) Admit(ctx context.Context, req wire.JoinRequest) (*wire.JoinResponse, error) {
	c := l.Store.Cluster()
	if c == nil {
		return nil, errors.New("the cluster record is not replicated to this node yet")
	}
	if !keyring.VerifyJoinSecret(c, req.Secret) {
		return nil, &wire.Error{Code: wire.CodeRefused, Msg: "invalid join token: wrong or rotated secret (get the current one with `shoal token`)"}
	}
	ip, err := CheckRequest(req)
	if err != nil {
		return nil, err
	}
	revoke, err := l.AdmitID(c, req)
	if err != nil {
		return nil, err
	}
	ca, err := l.openCA(ctx, c)
	if err != nil {
		return nil, &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("the leader cannot sign certificates yet: %v", err)}
	}
	now := time.Now().UTC()
	certPEM, serial, err := ca.SignCSR(req.CSR, req.NodeID, []net.IP{ip}, now, l.CertLifetime)
	if err != nil {
		return nil, &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("certificate request refused: %v", err)}
	}
	keyFP, err := pki.CSRKeyFingerprint(req.CSR)
	if err != nil {
		return nil, &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("certificate request refused: %v", err)}
	}
	var old *api.Node
	if n, err := l.Store.Node(req.NodeID); err == nil {
		old = n
	}
	notAfter, err := pki.CertExpiry(certPEM)
	if err != nil {
		return nil, fmt.Errorf("signed certificate: %w", err)
	}
	n := AdmittedNode(req, serial, keyFP, now, old)
	if _, err := keyring.ApplyCertRecord(ctx, l.Raft, keyring.JoinRecord(n, revoke), serial, notAfter); err != nil {
		return nil, fmt.Errorf("record node: %w", err)
	}
	raftAddr := net.JoinHostPort(req.Addr, strconv.Itoa(req.ClusterPort))
	// Queued, the addition goes on when this join stops waiting for it:
	// raft adds the nodes of a storm of joins back to back.
	wait := time.NewTimer(AdmitWait)
	select {
	case err = <-l.Raft.QueueNonvoter(req.NodeID, raftAddr):
	case <-wait.C:
		err = consensus.ErrTimeout
	case <-ctx.Done():
		err = ctx.Err()
	}
	wait.Stop()
	if err != nil && !AdmitLater(err) {
		return nil, fmt.Errorf("add node to raft: %w", err)
	}
	if err != nil {
		l.Log.Info("node recorded; its raft admission waits behind other configuration changes (queued)",
			"node_id", req.NodeID, "err", err)
	}
	// The keyring as of an index past the node's record, both from one
	// view (wire.JoinResponse.Index).
	snap := l.Store.Snapshot()
	keys := c.GossipKeys
	if sc := snap.Cluster(); sc != nil {
		keys = sc.GossipKeys
	}
	peers := append(l.Peers(), l.GossipAddr)
	l.Log.Info("node joined", "node_id", req.NodeID, "hostname", req.Hostname, "addr", req.Addr)
	return &wire.JoinResponse{
		ClusterID: c.ClusterID, CertPEM: certPEM, CAPEM: c.CACertPEM,
		GossipKeys: keys, Peers: membership.Dedupe(peers, ""), Epoch: l.Epoch,
		PrevCAPEM: c.PrevCACertPEM, CrossPEM: c.CACrossPEM, Index: snap.Index(),
	}, nil
}

// StillAdmitted is the rule a queued raft addition asks just before it
// runs (raftnode.Raft.SetAdmitCheck), for a join's and the leader loop's
// alike: not while the node is being removed (removing), nor once its
// record is gone from store (removed or left while it waited).
func StillAdmitted(store *consensus.Store, removing func(id string) bool) func(id string) error {
	return func(id string) error {
		if removing(id) {
			return fmt.Errorf("node %s is being removed", api.ShortID(id))
		}
		if _, err := store.Node(id); err != nil {
			return fmt.Errorf("node %s: no record any more: %w", api.ShortID(id), err)
		}
		return nil
	}
}

// CheckRequest refuses a join request that lacks what the node's record
// and certificate need, and returns the joiner's address.
func CheckRequest(req wire.JoinRequest) (net.IP, error) {
	ip := net.ParseIP(req.Addr)
	if ip == nil || req.NodeID == "" || req.Hostname == "" || req.ClusterPort <= 0 || req.GossipPort <= 0 {
		return nil, &wire.Error{Code: wire.CodeRefused, Msg: "join request is missing node ID, hostname, address or ports"}
	}
	if p := api.HostnameProblem(req.Hostname); p != "" {
		return nil, &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("join request: hostname %q: %s", req.Hostname, p)}
	}
	if req.ClusterPort > 65535 || req.GossipPort > 65535 {
		return nil, &wire.Error{Code: wire.CodeRefused, Msg: "join request: ports must be 1-65535"}
	}
	return ip, nil
}

// DefaultKEKWait bounds how long a join waits for the leader to get the
// key that opens the CA: well within the joiner's RPC timeout (20 s), and
// longer than the keys loop's longest pause (5 s).
const DefaultKEKWait = 8 * time.Second

// kekRetry is the pause between two pulls of the key during a join.
const kekRetry = 250 * time.Millisecond

// openCA opens the cluster CA of record c. A voter promoted a moment ago
// may lead before it pulled the key-encryption key from another voter
// (only voters hold it; the keys loop pulls it at its next pass): rather
// than refuse the join ("only voters hold the key-encryption key"), the
// leader pulls the key itself and retries, for up to KEKWait.
func (l *Leader) openCA(ctx context.Context, c *consensus.ClusterState) (*pki.CA, error) {
	ca, err := l.CA(c)
	if err == nil || l.PullKEK == nil || !errors.Is(err, keyring.ErrNoKEK) {
		return ca, err
	}
	wait := l.KEKWait
	if wait <= 0 {
		wait = DefaultKEKWait
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	l.Log.Info("a join waits for the key-encryption key, which this leader pulls from another voter", "err", err)
	for {
		if perr := l.PullKEK(wctx, c); perr != nil {
			l.Log.Debug("pull key-encryption key for a join", "err", perr)
		}
		if ca, err = l.CA(c); err == nil || !errors.Is(err, keyring.ErrNoKEK) {
			return ca, err
		}
		select {
		case <-wctx.Done():
			return nil, err
		case <-time.After(kekRetry):
		}
	}
}

// AdmittedNode is the state record of an admitted joiner: ready since now
// (StatusChangedAt: its status begins with the admission, and `node
// inspect` showed year 1 for a node that never went down), active, with
// the new certificate's serial and key. A node that joins again under its
// ID (old, nil otherwise) keeps what operators set on it — labels,
// availability, role — and its creation time. No protocol level: the
// record travels whole in UpsertNode, whose api.Node has always carried
// status_changed_at, so every release stores it alike.
func AdmittedNode(req wire.JoinRequest, serial, keyFP string, now time.Time, old *api.Node) api.Node {
	n := api.Node{
		ID: req.NodeID, Hostname: req.Hostname, Addr: req.Addr,
		ClusterPort: req.ClusterPort, GossipPort: req.GossipPort,
		Status: api.NodeReady, Availability: api.AvailabilityActive, Labels: map[string]string{},
		Resources: req.Resources, CertSerial: serial, CertKey: keyFP, CreatedAt: now, UpdatedAt: now,
		StatusChangedAt: now,
	}
	if old != nil {
		n.Labels = old.Labels
		n.Availability = old.Availability
		n.Role = old.Role
		n.CreatedAt = old.CreatedAt
	}
	return n
}

// AdmitLater reports whether a failed raft admission of a recorded node
// can be left to the leader loop: the change timed out in raft's queue or
// the join's wait for it ran out. A lost leadership is not: the record may
// not be committed, and the joiner must ask the new leader.
func AdmitLater(err error) bool {
	return errors.Is(err, consensus.ErrTimeout) || errors.Is(err, context.DeadlineExceeded)
}

// Admin runs a membership operation of the admin RPC: "leave" (a node
// removes itself; peerID is the caller by its certificate), "drain-self"
// (the first step of a leave, DrainSelf) or "remove".
func (l *Leader) Admin(ctx context.Context, peerID string, req wire.AdminRequest) error {
	switch req.Op {
	case "leave":
		if peerID != req.NodeID {
			return &wire.Error{Code: wire.CodeRefused, Msg: "a node may only remove itself with leave"}
		}
		return l.Remove(ctx, req.NodeID, true)
	case "remove":
		return l.Remove(ctx, req.NodeID, req.Force)
	case "drain-self":
		if peerID != req.NodeID {
			return &wire.Error{Code: wire.CodeRefused, Msg: "a node may only drain itself before it leaves"}
		}
		return l.DrainSelf(ctx, req.NodeID)
	default:
		return fmt.Errorf("unknown admin op %q", req.Op)
	}
}

// Remove hands over a voter's vote, removes the node from Raft and from
// the state, and revokes its certificate. Without force a ready, live node
// is refused: it should leave by itself.
func (l *Leader) Remove(ctx context.Context, id string, force bool) error {
	n, err := l.Store.Node(id)
	if err != nil {
		return &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("node %s: %v", id, err)}
	}
	if id == l.Self {
		return &wire.Error{Code: wire.CodeRefused, Msg: "the leader cannot remove itself; run `shoal leave` on it"}
	}
	if !force && n.Status == api.NodeReady && l.Alive(id) {
		return &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("node %s is ready: run `shoal leave` on it, or use --force", n.Hostname)}
	}
	// Out of Raft first (so the node never sees the entry below and stops
	// its tasks before the other nodes stop routing to them), then out of
	// the state; meanwhile the leader loop must not re-admit it.
	l.Removing.Store(id, struct{}{})
	defer l.Removing.Delete(id)
	servers, err := l.Raft.Servers()
	if err != nil {
		return err
	}
	for _, s := range servers {
		if s.ID == id && s.Voter {
			l.PromoteReplacement(ctx, id)
			break
		}
	}
	if err := l.Raft.RemoveServer(ctx, id); err != nil {
		return fmt.Errorf("remove %s from raft: %w", api.ShortID(id), err)
	}
	if err := l.ApplyRemoval(ctx, &command.RemoveNode{ID: id, Now: time.Now().UTC()}); err != nil {
		return fmt.Errorf("remove node record: %w", err)
	}
	l.Log.Info("node removed", "node_id", id, "hostname", n.Hostname)
	return nil
}

// DrainSelf drains node id at its own request, as the first step of its
// leave (node's leave). Why: a removal leaves the slots of the node's
// at-most-once tasks empty for their disconnect grace plus stop grace,
// since the cluster cannot tell when a removed node has stopped them
// (node/scheduler calm.go); drained, the node stops them and says so, and
// their replacements start at once. The node asks for itself only: a
// worker may not change another node. Idempotent.
func (l *Leader) DrainSelf(ctx context.Context, id string) error {
	n, err := l.Store.Node(id)
	if err != nil {
		return &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("node %s: %v", id, err)}
	}
	if n.Availability == api.AvailabilityDrain {
		return nil
	}
	upd := &command.UpdateNode{ID: id, Update: api.NodeUpdate{Availability: api.AvailabilityDrain}, Now: time.Now().UTC()}
	if _, err := l.Raft.Apply(ctx, upd); err != nil {
		return fmt.Errorf("drain %s before it leaves: %w", api.ShortID(id), err)
	}
	l.Log.Info("node drained before it leaves", "node_id", id, "hostname", n.Hostname)
	return nil
}

// LeaveDrainSlack is how much longer than the longest stop grace of its
// at-most-once tasks a leaving node waits for them to stop once drained
// (AtMostOnceActive): the stop itself, its report and its commit.
const LeaveDrainSlack = 10 * time.Second

// AtMostOnceActive counts the tasks on node that are not terminal and run
// an at-most-once spec, the tasks a leave drains first (DrainSelf), and
// returns the longest stop grace among them (the default where a spec
// names none).
func AtMostOnceActive(tasks []*api.Task, node string, defaultGrace time.Duration) (n int, grace time.Duration) {
	for _, t := range tasks {
		if t.NodeID != node || !t.Spec.AtMostOnce || api.TaskTerminal(t.State) {
			continue
		}
		n++
		grace = max(grace, cmp.Or(t.Spec.StopGracePeriod, defaultGrace))
	}
	return n, grace
}

// PromoteReplacement promotes one live non-voter so that removing (or
// demoting) the voter leaving keeps the number of voters. Best effort.
func (l *Leader) PromoteReplacement(ctx context.Context, leaving string) {
	servers, err := l.Raft.Servers()
	if err != nil {
		return
	}
	if s, ok := Replacement(servers, leaving, l.Alive); ok {
		if err := l.Raft.AddVoter(ctx, s.ID, s.Addr); err == nil {
			l.Log.Info("promoted voter to replace a departing one", "node_id", s.ID, "replaces", leaving)
		}
	}
}

// Replacement picks the non-voter to promote in place of the voter
// leaving: the first live one of the configuration, if any.
func Replacement(servers []raftnode.Server, leaving string, alive func(id string) bool) (raftnode.Server, bool) {
	for _, s := range servers {
		if s.Voter || s.ID == leaving || !alive(s.ID) {
			continue
		}
		return s, true
	}
	return raftnode.Server{}, false
}

// Rejoin runs for a node that lost its raft log (peerID, the caller by its
// certificate): it makes that node a non-voter, promoting a live non-voter
// first when there is one so the number of voters holds. Idempotent.
func (l *Leader) Rejoin(ctx context.Context, peerID string) error {
	if peerID == l.Self {
		return &wire.Error{Code: wire.CodeRefused, Msg: "the leader does not rejoin itself"}
	}
	n, err := l.Store.Node(peerID)
	if err != nil {
		return &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("rejoin: node %s: %v", api.ShortID(peerID), err)}
	}
	servers, err := l.Raft.Servers()
	if err != nil {
		return err
	}
	for _, s := range servers {
		if s.ID != peerID {
			continue
		}
		if s.Voter {
			l.PromoteReplacement(ctx, peerID)
			if err := l.Raft.DemoteVoter(ctx, peerID); err != nil {
				return fmt.Errorf("rejoin: demote %s: %w", api.ShortID(peerID), err)
			}
			l.Log.Warn("node lost its raft log: demoted to non-voter until it has the leader's snapshot",
				"node_id", peerID, "hostname", n.Hostname)
		}
		return nil
	}
	// Through the admit queue, as a join's and the leader loop's
	// additions: one addition per node, after the same admission rule.
	select {
	case err = <-l.Raft.QueueNonvoter(peerID, net.JoinHostPort(n.Addr, strconv.Itoa(n.ClusterPort))):
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("rejoin: add %s as non-voter: %w", api.ShortID(peerID), err)
	}
	l.Log.Warn("node lost its raft log: re-added as non-voter", "node_id", peerID, "hostname", n.Hostname)
	return nil
}
