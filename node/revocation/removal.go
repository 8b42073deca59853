package revocation

// Removal: `shoal node rm` is final for the removed host, even when it was
// down at the time (or alive, with --force) and comes back later with its
// old cluster state. The leader's RemoveNode deletes the node record and
// revokes its certificate in one committed entry; the removed host never
// sees that entry (it is out of the Raft configuration first), so it must
// learn about it from a peer:
//
//   - Hint. Every node whose replica is live (it knows a leader and holds
//     its own record) looks for gossip members whose node ID is not in its
//     nodes table and sends each a small memberlist user message (best
//     effort, every HintEvery) naming its own cluster address. A hint
//     proves nothing — a node that just joined may be gossiping before a
//     lagging replica holds its record — it only says "ask".
//   - Backstop. A node that has seen no Raft leader for removalLeaderless
//     asks too (gossip keys may be rotated one day, and then no hint would
//     reach a removed host).
//   - Question. The node dials peers (the hint's sender first, then nodes of
//     its own replica) WITHOUT its certificate — a revoked one is refused at
//     the handshake — and asks the narrow `removal` RPC: "is node ID X with
//     certificate serial S removed?". That method is the only one besides
//     join and ping that a caller without a certificate may use, and it
//     grants nothing: its answer is a boolean about public facts.
//   - Statement. The answer counts only when it is positive AND comes from
//     a witness the asking node trusts by what it holds itself: a server
//     whose certificate verifies against the cluster CA and names another
//     node, not revoked, that the replica knows with that very certificate
//     serial — or, when the replica has no record of it, that is a server of
//     the node's last Raft configuration. (A restarted removed node's
//     replica is empty: hashicorp/raft applies the log only once a leader
//     reports the commit index, and no leader talks to a removed node. Its
//     configuration, though, is read from the log at start.) The server
//     says "removed" only when the serial is revoked in its replica and no
//     node record carries the ID: a committed RemoveNode, never the mere
//     absence of information.
//
// A node that is only partitioned never resets: nobody can reach it, or
// whoever answers says "not removed". The removed node then resets (the
// agent does that, node/revocation.go: it needs the whole agent): it stops
// its cluster parts (leaving gossip, so peers drop it at once), removes
// its task containers, its overlay and load balancer state, and moves
// DATA/cluster aside to DATA/cluster.removed, so the data dir (identity,
// images) stays usable and `shoal join` works again. `shoal leave` on a
// removed node asks the same question first and, on a positive statement,
// resets locally without needing a quorum.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"github.com/shoal-org/shoal/node/resync"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/raftnode"
	"github.com/shoal-org/shoal/node/membership"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/wire"
)

// Timing of hints and questions.
const (
	// HintEvery is how often a node hints one suspect member.
	HintEvery = 3 * time.Second
	// CheckGap is the least time between two questions of a node.
	CheckGap = time.Second
	// Leaderless is how long a node goes without a Raft leader
	// before it asks on its own, and then how often it asks again.
	Leaderless = 10 * time.Second
	// AskTimeout bounds one round of questions.
	AskTimeout = 3 * time.Second
	// IdleTick is how often the loop looks without a wake-up
	// while there is a leader and nobody to hint or ask about: the
	// leaderless clock then starts at most this late, against the
	// Leaderless it waits anyway (issue 10: an idle node's wake-ups).
	IdleTick = 5 * time.Second
	// AskMax is how many peers one round asks at most.
	AskMax = 5
	// SuspectGrace is how long a gossip member stays unknown to this
	// node's replica before it is hinted. Why: a joiner's record is
	// written before it joins gossip, but a replica may apply it seconds
	// later when many nodes join at once; each hint makes the member ask
	// AskMax peers over TLS, and with 100 agents joining at once the
	// hints about members that were only new (and the questions they
	// set off) took ~8 % of the machine's CPU while the leader starved
	// (perf). A removed node still running is told this much later.
	SuspectGrace = 5 * time.Second
)

// DueHints lists the suspects (sorted, as Suspects returns them) to hint
// now: unknown for SuspectGrace (since: when each first was a suspect)
// and not hinted within HintEvery (lastHint). It forgets, in both maps,
// members that are no longer suspects and records the new ones in since.
func DueHints(suspects []string, since, lastHint map[string]time.Time, now time.Time) []string {
	for _, m := range []map[string]time.Time{since, lastHint} {
		for id := range m {
			if !slices.Contains(suspects, id) {
				delete(m, id)
			}
		}
	}
	var due []string
	for _, id := range suspects {
		first, ok := since[id]
		if !ok {
			since[id], first = now, now
		}
		if now.Sub(first) < SuspectGrace || now.Sub(lastHint[id]) < HintEvery {
			continue
		}
		due = append(due, id)
	}
	return due
}

// hintType is the first byte of a removal hint user message.
const hintType byte = 'R'

// maxField bounds the node ID and serial of a question.
const maxField = 128

// Hint is a gossip user message telling a member the sender's replica
// does not know it: "ask whether you were removed".
type Hint struct {
	From string `json:"from"` // sender's node ID
	Addr string `json:"addr"` // sender's cluster address, where to ask
}

// Verdict is the server's half of the statement: the asker is removed
// when its certificate serial is revoked and no node record carries its ID.
// A serial revoked while a record exists (the node re-joined, or its
// certificate was replaced) is not a removal.
func Verdict(serialRevoked, recordExists bool) bool {
	return serialRevoked && !recordExists
}

// Witness is what the asking node knows of the server that answered.
type Witness struct {
	ID      string    // common name of the server's verified certificate
	Serial  string    // its serial
	Record  *api.Node // the asker's replica's record of ID; nil if none
	Revoked bool      // the serial is revoked in the asker's replica
	InRaft  bool      // ID is a server of the asker's last Raft configuration
}

// AcceptableWitness reports whether a server may make statements about this
// node: another node, not revoked, that the asker's replica knows with the
// certificate it recorded, or — when the replica has no record of it (an
// empty replica after a restart) — that the asker's Raft configuration
// lists. A certificate merely signed by the CA is not enough.
func AcceptableWitness(self string, w Witness) error {
	switch {
	case w.ID == "" || w.ID == self:
		return fmt.Errorf("witness %q: not another node", w.ID)
	case w.Revoked:
		return fmt.Errorf("witness %s: certificate %s revoked", api.ShortID(w.ID), w.Serial)
	case w.Record == nil && !w.InRaft:
		return fmt.Errorf("witness %s: neither in the replica nor in the raft configuration", api.ShortID(w.ID))
	case w.Record != nil && w.Record.CertSerial != "" && w.Record.CertSerial != w.Serial && w.Record.PendingCertSerial != w.Serial:
		// A renewed certificate the witness installed but has not
		// confirmed yet (api.Node.PendingCertSerial) is its own too.
		return fmt.Errorf("witness %s: certificate %s, the replica knows %s", api.ShortID(w.ID), w.Serial, w.Record.CertSerial)
	}
	return nil
}

// IsStatement is the asking node's decision: only a positive answer
// from an acceptable witness counts. A failed call, a refusal or "not
// removed" is the absence of a statement, never a reason to reset.
func IsStatement(self string, w Witness, answer *wire.RemovalResponse, callErr error) bool {
	return callErr == nil && answer != nil && answer.Removed && AcceptableWitness(self, w) == nil
}

// Suspects lists the gossip members (sorted) that the replica does
// not know: each may be a removed node still running with its old state.
func Suspects(self string, alive map[string]membership.Meta, known func(id string) bool) []string {
	var out []string
	for id := range alive {
		if id != self && !known(id) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// Tick is the removal loop's period: a second while it counts a
// leaderless stretch or has members to hint or hints to follow up, else
// IdleTick (gossip changes wake it at once either way).
func Tick(leaderKnown bool, pending int) time.Duration {
	if !leaderKnown || pending > 0 {
		return time.Second
	}
	return IdleTick
}

// ShouldAsk decides whether the node asks now: after a hint, or after
// a long time without a leader; never twice within CheckGap, and
// without hints only every Leaderless.
func ShouldAsk(now, lastAsk, leaderlessSince time.Time, hinted bool) bool {
	if !lastAsk.IsZero() && now.Sub(lastAsk) < CheckGap {
		return false
	}
	if hinted {
		return true
	}
	if leaderlessSince.IsZero() || now.Sub(leaderlessSince) < Leaderless {
		return false
	}
	return lastAsk.IsZero() || now.Sub(lastAsk) >= Leaderless
}

// EncodeHint and ParseHint frame a hint as a user message.
func EncodeHint(h Hint) []byte {
	b, _ := json.Marshal(h)
	return append([]byte{hintType}, b...)
}

// ParseHint decodes a user message EncodeHint framed; false for any other
// message or a malformed hint.
func ParseHint(msg []byte) (Hint, bool) {
	var h Hint
	if len(msg) < 2 || msg[0] != hintType || json.Unmarshal(msg[1:], &h) != nil {
		return Hint{}, false
	}
	if _, _, err := net.SplitHostPort(h.Addr); err != nil || len(h.From) > maxField {
		return Hint{}, false
	}
	return h, true
}

// AskList picks whom to ask: first (hint senders), then others, at
// most limit, without self or duplicates.
func AskList(first, others []string, self string, limit int) []string {
	out := membership.Dedupe(append(slices.Clone(first), others...), self)
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}

// CheckQuestion refuses a removal question without a node ID and a
// serial, or with one too long.
func CheckQuestion(req wire.RemovalRequest) error {
	if req.NodeID == "" || req.Serial == "" || len(req.NodeID) > maxField || len(req.Serial) > maxField {
		return &wire.Error{Code: wire.CodeRefused, Msg: "removal question needs a node ID and a certificate serial"}
	}
	return nil
}

// Answer is the server's side of the removal question, from the replica
// store: "is node X with serial S removed?". Callers need no certificate
// (see the top of this file).
func Answer(store *consensus.Store, req wire.RemovalRequest) (*wire.RemovalResponse, error) {
	if err := CheckQuestion(req); err != nil {
		return nil, err
	}
	_, nerr := store.Node(req.NodeID)
	return &wire.RemovalResponse{Removed: Verdict(store.IsRevoked(req.Serial), nerr == nil)}, nil
}

// ---- the asking node ----

// Raft is the part of raftnode.Raft the removal loop reads.
type Raft interface {
	Leader() (id, addr string)
	Servers() ([]raftnode.Server, error)
}

// HintGossip is the part of membership.Membership the removal loop uses.
type HintGossip interface {
	Subscribe() (<-chan struct{}, func())
	UserMessages() <-chan []byte
	AliveSet() map[string]membership.Meta
	SendBestEffort(id string, msg []byte) error
}

// CallFunc performs one RPC against the cluster port at addr with cfg
// (instance.Call).
type CallFunc func(ctx context.Context, addr string, cfg *tls.Config, method string, body, out any) error

// Removal is the removed node's side: the loop that hints unknown members
// and asks whether this node was removed. Its fields are set before use
// and not changed after.
type Removal struct {
	// Self is this node's ID, ClusterAddr its cluster address (host:port).
	Self, ClusterAddr string
	// PKIDir holds this node's certificate and trusted CAs.
	PKIDir string
	Store  *consensus.Store
	// Raft is nil for a cluster without Raft (tests).
	Raft Raft
	// Gossip is needed by Run only.
	Gossip HintGossip
	Call   CallFunc
	Log    *slog.Logger
}

// Run hints unknown gossip members, and asks whether this node was
// removed when hinted or leaderless. On a positive statement it calls
// removed with the witness's ID and returns: the reset stops the cluster
// this loop belongs to, so removed must hand it to another goroutine.
func (r *Removal) Run(ctx context.Context, removed func(by string)) {
	memberCh, stop := r.Gossip.Subscribe()
	defer stop()
	period := time.Second
	tick := resync.NewTicker(period)
	defer tick.Stop()
	hinted := map[string]bool{}     // cluster addresses that hinted
	since := map[string]time.Time{} // suspects, when first seen (DueHints)
	lastHint := map[string]time.Time{}
	var lastAsk, leaderlessSince time.Time
	for {
		if p := Tick(leaderlessSince.IsZero(), len(since)+len(hinted)); p != period {
			period = p
			tick.Reset(p)
		}
		select {
		case <-ctx.Done():
			return
		case msg := <-r.Gossip.UserMessages():
			if h, ok := ParseHint(msg); ok && h.From != r.Self {
				hinted[h.Addr] = true
			}
		case <-memberCh:
		case <-tick.C:
		}
		now := time.Now()
		r.sendHints(since, lastHint, now)
		if id := r.leader(); id != "" {
			leaderlessSince = time.Time{}
		} else if leaderlessSince.IsZero() {
			leaderlessSince = now
		}
		if !ShouldAsk(now, lastAsk, leaderlessSince, len(hinted) > 0) {
			continue
		}
		lastAsk = now
		first := make([]string, 0, len(hinted))
		for addr := range hinted {
			first = append(first, addr)
		}
		clear(hinted)
		actx, cancel := context.WithTimeout(ctx, AskTimeout)
		by, ok := r.Ask(actx, first)
		cancel()
		if ok {
			removed(by)
			return
		}
	}
}

func (r *Removal) leader() string {
	if r.Raft == nil {
		return ""
	}
	id, _ := r.Raft.Leader()
	return id
}

// sendHints hints the suspect members DueHints names; since and lastHint
// are the loop's memory of when each became a suspect and was hinted. A node whose replica is not live (no
// leader, or no record of itself: just restarted, or removed itself) sends
// none, or it would suspect everybody.
func (r *Removal) sendHints(since, lastHint map[string]time.Time, now time.Time) {
	var suspects []string
	if _, err := r.Store.Node(r.Self); err == nil && r.leader() != "" {
		suspects = Suspects(r.Self, r.Gossip.AliveSet(), func(id string) bool {
			_, err := r.Store.Node(id)
			return err == nil
		})
	}
	msg := EncodeHint(Hint{From: r.Self, Addr: r.ClusterAddr})
	for _, id := range DueHints(suspects, since, lastHint, now) {
		lastHint[id] = now
		if err := r.Gossip.SendBestEffort(id, msg); err != nil {
			r.Log.Debug("removal hint", "to", api.ShortID(id), "err", err)
		} else {
			r.Log.Debug("gossip member unknown to the state: hinted it to ask whether it was removed", "member", api.ShortID(id))
		}
	}
}

// Ask asks up to AskMax peers — the given addresses first, then nodes of
// the replica, then servers of the Raft configuration, each group in
// random order — whether this node was removed, all at once. It reports
// the first positive statement (IsStatement) and the witness that made
// it; anything else is "not removed".
func (r *Removal) Ask(ctx context.Context, first []string) (string, bool) {
	cert, pool, err := pki.LoadNodeTLS(r.PKIDir)
	if err != nil || cert.Leaf == nil {
		r.Log.Warn("removal check: load own certificate", "err", err)
		return "", false
	}
	req := wire.RemovalRequest{NodeID: r.Self, Serial: pki.Serial(cert.Leaf)}
	inRaft := map[string]bool{}
	var raftAddrs []string
	if r.Raft != nil {
		if servers, err := r.Raft.Servers(); err == nil {
			for _, s := range servers {
				inRaft[s.ID] = true
				raftAddrs = append(raftAddrs, s.Addr)
			}
		}
	}
	rand.Shuffle(len(raftAddrs), func(i, j int) { raftAddrs[i], raftAddrs[j] = raftAddrs[j], raftAddrs[i] })
	addrs := AskList(first, append(r.replicaClusterAddrs(), raftAddrs...), r.ClusterAddr, AskMax)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		by      string
		removed bool
	}
	results := make(chan result, len(addrs))
	var wg sync.WaitGroup
	for _, addr := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var w Witness
			tlsCfg := pki.AnonymousClientTLS(pool, func(leaf *x509.Certificate) error {
				w = Witness{ID: leaf.Subject.CommonName, Serial: pki.Serial(leaf)}
				if n, err := r.Store.Node(w.ID); err == nil {
					w.Record = n
				}
				w.Revoked = r.Store.IsRevoked(w.Serial)
				w.InRaft = inRaft[w.ID]
				return AcceptableWitness(r.Self, w)
			})
			var resp wire.RemovalResponse
			err := r.Call(ctx, addr, tlsCfg, wire.MethodRemoval, req, &resp)
			if err != nil {
				r.Log.Debug("removal check", "peer", addr, "err", err)
			}
			results <- result{by: w.ID, removed: IsStatement(r.Self, w, &resp, err)}
		}()
	}
	go func() { wg.Wait(); close(results) }()
	for res := range results {
		if res.removed {
			return res.by, true
		}
	}
	return "", false
}

// replicaClusterAddrs lists the cluster addresses of the other nodes of the
// replica, shuffled.
func (r *Removal) replicaClusterAddrs() []string {
	var out []string
	for _, n := range r.Store.Nodes() {
		if n.ID == r.Self || n.Addr == "" || n.ClusterPort == 0 {
			continue
		}
		out = append(out, net.JoinHostPort(n.Addr, fmt.Sprint(n.ClusterPort)))
	}
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}
