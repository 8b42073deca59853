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
// expired (consensus.ClusterState.ExpiredCerts). What stays revoked for
// good: serials revoked before expiries were recorded (nothing bounds
// their lifetime), and a removed node's (the removal question is answered
// from it).
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
	}
	isCurrent := func(s string) bool { return current[s] }
	if len(c.ExpiredCerts(now.Add(-2*TrimMargin), isCurrent)) == 0 {
		return time.Time{}, false
	}
	return now.Add(-TrimMargin).UTC(), true
}

// trimRevoked proposes a TrimRevoked when one is due at now (TrimDue).
// Leader only; a refusal or failure waits for a later pass.
func (k *Keeper) trimRevoked(ctx context.Context, c *consensus.ClusterState, now time.Time) {
	// The pass runs on every change of the store: read the nodes only
	// when some certificate has ended at all.
	if len(c.ExpiredCerts(now.Add(-2*TrimMargin), func(string) bool { return false })) == 0 {
		return
	}
	before, due := TrimDue(c, k.Store.Nodes(), now)
	if !due {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	res, err := k.Raft.Apply(wctx, &command.TrimRevoked{ExpiredBefore: before})
	switch {
	case errors.Is(err, command.ErrUnsupported):
		k.Log.Debug("trim the revocation list: a member runs an older release", "err", err)
	case err != nil:
		k.Log.Warn("trim the revocation list", "err", err)
	default:
		k.Log.Info("trimmed the revocation list of certificates that have expired", "serials", res, "expired_before", before.Format(time.RFC3339))
	}
}
