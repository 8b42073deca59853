package keyring

// Certificate expiries and the revocation trim. Every renewal revokes the
// certificate it replaces, and the revocation list lives in the cluster
// record on every node: copied on every write of the record, carried by
// every snapshot. A revoked certificate matters only until it expires —
// after its NotAfter no handshake accepts it anyway — so the leader
// records each certificate's expiry with the certificate (a join, a
// renewal: command.RecordCertExpiry in the same entry) and proposes
// command.TrimRevoked with its clock, less TrimMargin, once one has
// passed. The FSM reads no clock; it drops what the entry's time says has
// expired (consensus.ClusterState.ExpiredCerts). Serials revoked without
// a known expiry (before expiries were recorded, a removed node's) get an
// upper bound of it in the same entry (UnknownBound), and leave in turn.
//
// Both commands are of protocol level 2. While a member of the cluster
// runs a release without them (an upgrade in progress), the certificate is
// recorded as those releases did, without its expiry (ApplyCertRecord),
// and no trim is due: only RecordCertExpiry gives a serial an expiry.

import (
	"context"
	"errors"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

// TrimMargin is how long past its expiry a revoked certificate is kept
// listed: other nodes check certificates against their own clocks, which
// may lag the leader's (certificates are valid from pki.ClockSkew before
// they are signed for the same reason). The leader trims once a serial is
// twice this past its expiry, so it proposes a trim at most about once
// per TrimMargin, each taking every serial then TrimMargin past.
const TrimMargin = time.Hour

// Applier proposes a command (raftnode.Raft.Apply on the leader).
type Applier interface {
	Apply(ctx context.Context, cmd command.Command) (any, error)
}

// WithExpiry returns cmd, which records the certificate with serial that
// the leader just signed, and the record of that certificate's expiry
// (notAfter), in one batch: a replica that holds the serial holds its end.
func WithExpiry(cmd command.Command, serial string, notAfter time.Time) *command.Batch {
	b := &command.Batch{}
	switch c := cmd.(type) {
	case *command.Batch:
		b.Commands = append(b.Commands, c.Commands...)
	case command.Batch:
		b.Commands = append(b.Commands, c.Commands...)
	default:
		b.Commands = append(b.Commands, cmd)
	}
	b.Commands = append(b.Commands, &command.RecordCertExpiry{Serial: serial, NotAfter: notAfter})
	return b
}

// ApplyCertRecord proposes cmd, the record of a certificate the leader
// signed (JoinRecord, RenewalRecord), with the certificate's expiry
// (WithExpiry). While some member cannot apply that (command.ErrUnsupported,
// refused before anything was written) it proposes cmd alone, as releases
// before expiries did; that serial, once revoked, then stays revoked for
// good. A zero notAfter proposes cmd alone.
func ApplyCertRecord(ctx context.Context, r Applier, cmd command.Command, serial string, notAfter time.Time) (any, error) {
	if serial == "" || notAfter.IsZero() {
		return r.Apply(ctx, cmd)
	}
	res, err := r.Apply(ctx, WithExpiry(cmd, serial, notAfter))
	if errors.Is(err, command.ErrUnsupported) {
		return r.Apply(ctx, cmd)
	}
	return res, err
}

// TrimDue is the leader's decision at now, over its replica (c and its
// nodes): whether a trim is due — some recorded certificate that a trim
// would drop ended more than 2×TrimMargin ago — and the ExpiredBefore to
// propose, TrimMargin before now.
func TrimDue(c *consensus.ClusterState, nodes []*api.Node, now time.Time) (time.Time, bool) {
	if c == nil || len(c.CertExpiry) == 0 {
		return time.Time{}, false
	}
	current := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		current[n.CertSerial] = true
		if n.PendingCertSerial != "" {
			current[n.PendingCertSerial] = true
		}
	}
	isCurrent := func(s string) bool { return current[s] }
	if len(c.ExpiredCerts(now.Add(-2*TrimMargin), isCurrent)) == 0 {
		return time.Time{}, false
	}
	return now.Add(-TrimMargin).UTC(), true
}

// UnknownBound is the leader's decision at now whether revoked serials of
// unknown expiry need one (command.TrimRevoked.UnknownUntil), and which:
// now plus the longest lifetime a certificate revoked by now may have —
// lifetime (this leader's --cert-lifetime) or, when longer, what is left
// of the longest-lived certificate recorded (another manager that signs
// with a longer one). Without a lifetime (0) it bounds nothing. Pure.
//
// Such a serial was revoked before expiries were recorded, or is a
// removed node's (RemoveNode forgets its expiry): before, both stayed
// listed for good, so every renewal of a cluster made before expiries
// and every `node rm` grew the list that every record write copies and
// every snapshot carries. A certificate is signed before its serial is
// revoked, so it ends by then; the serial leaves the list 2×TrimMargin
// later (TrimDue), when no handshake accepts the certificate anyway. For
// a removed host that means it learns of its removal (node/revocation)
// only while its certificate could still be used; after, it can reach no
// one with it, and `shoal leave` resets it.
func UnknownBound(c *consensus.ClusterState, lifetime time.Duration, now time.Time) (time.Time, bool) {
	if c == nil || lifetime <= 0 {
		return time.Time{}, false
	}
	unknown := false
	for _, s := range c.Revoked {
		if _, ok := c.CertExpiry[s]; !ok {
			unknown = true
			break
		}
	}
	if !unknown {
		return time.Time{}, false
	}
	longest := lifetime
	for _, end := range c.CertExpiry {
		longest = max(longest, end.Sub(now))
	}
	return now.Add(longest).UTC(), true
}

// trimRevoked proposes a TrimRevoked when one is due at now (TrimDue) or
// revoked serials of unknown expiry need a bound (UnknownBound). Leader
// only; a refusal or failure waits for a later pass.
func (k *Keeper) trimRevoked(ctx context.Context, c *consensus.ClusterState, now time.Time) {
	// Bounds only once some expiry is recorded: before, a member may run
	// a release without TrimRevoked, and the gate would refuse every pass.
	bound, bounds := UnknownBound(c, k.CertLifetime, now)
	bounds = bounds && len(c.CertExpiry) > 0
	// The pass runs on every change of the store: read the nodes only
	// when some certificate has ended at all.
	ended := len(c.ExpiredCerts(now.Add(-2*TrimMargin), func(string) bool { return false })) > 0
	if !ended && !bounds {
		return
	}
	before, due := TrimDue(c, k.Store.Nodes(), now)
	if !due && !bounds {
		return
	}
	if !due {
		before = now.Add(-TrimMargin).UTC()
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	res, err := k.Raft.Apply(wctx, &command.TrimRevoked{ExpiredBefore: before, UnknownUntil: bound})
	switch {
	case errors.Is(err, command.ErrUnsupported):
		k.Log.Debug("trim the revocation list: a member runs an older release", "err", err)
	case err != nil:
		k.Log.Warn("trim the revocation list", "err", err)
	default:
		k.Log.Info("trimmed the revocation list of certificates that have expired", "serials", res, "expired_before", before.Format(time.RFC3339))
	}
}
