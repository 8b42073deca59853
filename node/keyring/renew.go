package keyring

// Certificate renewal. Node certificates live --cert-lifetime (30 days by
// default) and renew themselves at 1/2 to 2/3 of it (pki.RenewalTime; the
// point is fixed per node), or at once when the cluster CA changed (a
// rotation). The node keeps its key and sends a CSR signed with it over
// wire.MethodRenew, authenticated by its current certificate; the leader signs a new
// certificate for the caller's own node ID and records its serial as
// pending beside the current one (RenewalPlan). The new certificate is
// written (one atomic, durable file) and swapped into the TLS
// configurations: connections opened from then on use it, open ones keep
// theirs, nothing restarts. Only then does the node confirm it
// (wire.MethodRenewConfirm, ConfirmCert), and the leader revokes the
// certificate it replaces. The leader renews its own certificate without
// the RPCs.
//
// Why two steps: a renewal whose record commits but whose answer never
// reaches the node's disk — a leader change while committing, the call's
// timeout, a full disk, kill -9 — left the node only its old certificate,
// already revoked; peers, the renewal RPC and a re-join all refuse a
// revoked certificate, so the node was out of the cluster for good. Now
// the old one stays valid until the new one is installed; a node that
// asks again with it gets another certificate, and the unconfirmed one is
// revoked (at most one pending per node). A node that installed the
// pending one but whose confirmation was lost confirms it on a later pass
// (confirmIfPending), or by renewing with it.

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/wire"
)

// Issue signs csr for node id and records it (leader). The agent's
// handler of wire.MethodRenew calls it for the caller's own node ID (from
// its verified, unrevoked certificate); the CSR must ask for that ID and
// the node must still be in the cluster's state. presented is the serial
// of the certificate the node renews with ("" when it did not say: its
// current one).
//
// One issue per node at a time (issuing): it reads the node's record,
// signs, and proposes the new serial as pending (with its expiry,
// ApplyCertRecord; RenewalPlan), all under the node's lock, so each
// renewal replaces the pending serial current when it starts and a node
// has at most one unconfirmed certificate, which `node rm` revokes with
// the recorded one. While a member runs a release without pending
// certificates (protocol level 3) the renewal is recorded as those did
// (RenewalRecord: the old serial revoked at once).
// A certificate leaves the leader only once its record is committed: an
// Apply that fails (its entry may commit later, before any later one)
// hands out nothing.
func (k *Keeper) Issue(ctx context.Context, id string, csr []byte, presented string) (*wire.RenewResponse, error) {
	c := k.Store.Cluster()
	if c == nil {
		return nil, consensus.ErrNotBootstrapped
	}
	unlock, err := issuing.lock(ctx, nodeKey(c.ClusterID, id))
	if err != nil {
		return nil, fmt.Errorf("wait for node %s's other renewal: %w", api.ShortID(id), err)
	}
	defer unlock()
	n, err := k.Store.Node(id)
	if err != nil {
		return nil, &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("node %s is not a member of this cluster", api.ShortID(id))}
	}
	if c = k.Store.Cluster(); c == nil {
		return nil, consensus.ErrNotBootstrapped
	}
	if presented != "" && c.IsRevoked(presented) {
		// The RPC refuses a revoked certificate before; this is the
		// leader's own renewal, or a confirmation that revoked it since.
		return nil, &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("certificate %s of node %s is revoked", presented, api.ShortID(id))}
	}
	ca, err := ClusterCA(k.Dir, c)
	if err != nil {
		return nil, &wire.Error{Code: wire.CodeRefused, Msg: err.Error()}
	}
	certPEM, serial, err := ca.SignCSR(csr, id, []net.IP{net.ParseIP(n.Addr)}, time.Now().UTC(), k.CertLifetime)
	if err != nil {
		return nil, &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("certificate request refused: %v", err)}
	}
	notAfter, err := pki.CertExpiry(certPEM)
	if err != nil {
		return nil, fmt.Errorf("renewed certificate: %w", err)
	}
	_, err = ApplyCertRecord(ctx, k.Raft, RenewalPlan(n, presented, serial, c.CAFingerprint), serial, notAfter)
	if errors.Is(err, command.ErrUnsupported) {
		_, err = ApplyCertRecord(ctx, k.Raft, RenewalRecord(n, serial, c.CAFingerprint), serial, notAfter)
	}
	if err != nil {
		return nil, fmt.Errorf("record renewed certificate: %w", err)
	}
	return &wire.RenewResponse{CertPEM: certPEM, BundlePEM: TrustBundle(c), CrossPEM: c.CACrossPEM}, nil
}

// issuing serializes Issue per node. The agent builds a Keeper per call
// (node/keyring.go), so the locks cannot live in a Keeper: one table per
// process, keyed by cluster and node ID (nodeKey).
var issuing keyedLocks

// nodeKey names node id of cluster clusterID in the leader's per-node
// tables.
func nodeKey(clusterID, id string) string { return clusterID + "\x00" + id }

// keyedLocks is a mutex per key, made on first use and dropped when no one
// holds or waits for it.
type keyedLocks struct {
	mu    sync.Mutex
	locks map[string]*keyedLock
}

type keyedLock struct {
	ch   chan struct{} // holds a token while locked
	refs int           // holders and waiters; guarded by keyedLocks.mu
}

// lock takes key's lock, waiting until it is free or ctx ends, and
// returns its unlock, which must be called once.
func (l *keyedLocks) lock(ctx context.Context, key string) (unlock func(), err error) {
	l.mu.Lock()
	if l.locks == nil {
		l.locks = map[string]*keyedLock{}
	}
	e := l.locks[key]
	if e == nil {
		e = &keyedLock{ch: make(chan struct{}, 1)}
		l.locks[key] = e
	}
	e.refs++
	l.mu.Unlock()
	release := func() {
		l.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(l.locks, key)
		}
		l.mu.Unlock()
	}
	select {
	case e.ch <- struct{}{}:
		return func() { <-e.ch; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}

// waiting is how many hold or wait for key's lock.
func (l *keyedLocks) waiting(key string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.locks[key]; e != nil {
		return e.refs
	}
	return 0
}

// RenewalPlan is the command that records node n's renewed certificate
// serial, issued by the CA with fingerprint caFP, when the node renewed
// with the certificate of serial presented ("": its current one). The new
// serial is pending (command.StageNodeCert) until the node confirms it
// installed it; the current one stays valid. A renewal asked for again
// with the current certificate (the last answer was lost) revokes only
// the unconfirmed pending serial. A renewal with the pending certificate
// proves the node installed it: that confirms it (revoking the one it
// replaced) in the same entry.
func RenewalPlan(n *api.Node, presented, serial, caFP string) command.Command {
	stage := &command.StageNodeCert{ID: n.ID, Serial: serial, CAFingerprint: caFP}
	p := n.PendingCertSerial
	switch {
	case p == "":
	case presented == p:
		return &command.Batch{Commands: []command.Command{&command.ConfirmNodeCert{ID: n.ID, Serial: p}, stage}}
	case p != serial:
		stage.Revoke = []string{p}
	}
	return stage
}

// RenewalRecord is the renewal as releases before pending certificates
// record it (command.SetNodeCert, while some member cannot apply
// StageNodeCert): node n's new certificate serial, issued by the CA with
// fingerprint caFP, and the revocation of the ones it replaces (the
// current one and an unconfirmed pending one; none when the serial is the
// same).
func RenewalRecord(n *api.Node, serial, caFP string) *command.SetNodeCert {
	cmd := &command.SetNodeCert{ID: n.ID, Serial: serial, CAFingerprint: caFP}
	for _, s := range []string{n.CertSerial, n.PendingCertSerial} {
		if s != "" && s != serial {
			cmd.Revoke = append(cmd.Revoke, s)
		}
	}
	return cmd
}

// ConfirmCert records that node id installed its pending certificate of
// serial (leader): it becomes the node's current one and the one it
// replaces is revoked (command.ConfirmNodeCert). The agent's handler of
// wire.MethodRenewConfirm calls it for the caller's own node ID. The
// caller need not present the new certificate: a renewal keeps the node's
// key, so holding the old one proves holding the new one's key as well,
// and a confirmation only revokes the caller's own old certificate.
// Confirming the current serial again is a no-op; any other serial is
// refused.
func (k *Keeper) ConfirmCert(ctx context.Context, id, serial string) error {
	if serial == "" {
		return &wire.Error{Code: wire.CodeRefused, Msg: "confirm certificate: no serial given"}
	}
	if _, err := k.Raft.Apply(ctx, &command.ConfirmNodeCert{ID: id, Serial: serial}); err != nil {
		return fmt.Errorf("confirm node %s certificate %s: %w", api.ShortID(id), serial, err)
	}
	return nil
}

// ConfirmDue reports whether this node must confirm its certificate of
// serial mine: its record n names it as the pending one. Pure.
func ConfirmDue(n *api.Node, mine string) bool {
	return n != nil && mine != "" && n.PendingCertSerial == mine
}

// confirmIfPending confirms this node's installed certificate when its
// replica still shows it pending (the confirmation after the install
// failed, or the leader changed), and returns how long until the next
// check is needed (0: nothing to do).
func (k *Keeper) confirmIfPending(ctx context.Context, st *keysState) time.Duration {
	cur := k.TLS.Certificate()
	if cur.Leaf == nil {
		return 0
	}
	n, err := k.Store.Node(k.Self)
	if err != nil || !ConfirmDue(n, pki.Serial(cur.Leaf)) {
		st.confirmFailures, st.nextConfirm = 0, time.Time{}
		return 0
	}
	now := time.Now()
	if now.Before(st.nextConfirm) {
		return st.nextConfirm.Sub(now)
	}
	if err := k.confirm(ctx, pki.Serial(cur.Leaf)); err != nil {
		st.confirmFailures++
		backoff := RenewBackoff(st.confirmFailures)
		st.nextConfirm = now.Add(backoff)
		k.Log.Warn("confirm the renewed certificate failed; retrying", "in", backoff, "err", err)
		return backoff
	}
	st.confirmFailures, st.nextConfirm = 0, time.Time{}
	return 0
}

// confirm tells the leader this node installed its certificate of serial:
// here when it leads, else over wire.MethodRenewConfirm.
func (k *Keeper) confirm(ctx context.Context, serial string) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if k.Raft.IsLeader() {
		return k.ConfirmCert(cctx, k.Self, serial)
	}
	_, addr := k.Raft.Leader()
	if addr == "" {
		return errors.New("no leader to confirm the renewed certificate with")
	}
	return k.Call(cctx, addr, wire.MethodRenewConfirm, wire.RenewConfirmRequest{Serial: serial}, nil)
}

// RenewIn is how long until the certificate leaf must be renewed at now:
// at its node's fixed point between 1/2 and 2/3 of its life
// (pki.RenewIn with pki.Spread(nodeID)), or at once (0) when the record's
// CA did not sign it (rotated, from CARotated).
func RenewIn(leaf *x509.Certificate, rotated bool, nodeID string, now time.Time) time.Duration {
	if rotated {
		return 0 // renew now
	}
	return pki.RenewIn(leaf.NotBefore, leaf.NotAfter, now, pki.Spread(nodeID))
}

// CARotated reports whether the CA of caCertPEM did not sign leaf (an
// unreadable CA tells nothing: false).
func CARotated(leaf *x509.Certificate, caCertPEM []byte) bool {
	caCert, err := pki.ParseCertPEM(caCertPEM)
	return err == nil && leaf.CheckSignatureFrom(caCert) != nil
}

// caCheck is CARotated for the last (leaf, CA) pair asked: the keeper's
// pass runs on every store change, and the check is an ECDSA verify.
type caCheck struct {
	leaf    *x509.Certificate
	ca      []byte
	rotated bool
}

func (c *caCheck) rotatedFor(leaf *x509.Certificate, caCertPEM []byte) bool {
	if c.leaf != leaf || !bytes.Equal(c.ca, caCertPEM) {
		c.leaf, c.ca, c.rotated = leaf, caCertPEM, CARotated(leaf, caCertPEM)
	}
	return c.rotated
}

// RenewBackoff is how long to wait after the failures-th failed renewal
// in a row: 500 ms doubling, at most 15 s.
func RenewBackoff(failures int) time.Duration {
	return min(250*time.Millisecond<<min(failures, 6), 15*time.Second)
}

// renewIfDue renews this node's certificate when it is due or was not
// issued by the record's current CA, and returns how long until the next
// check is needed.
func (k *Keeper) renewIfDue(ctx context.Context, dir string, c *consensus.ClusterState, st *keysState) time.Duration {
	cur := k.TLS.Certificate()
	if cur.Leaf == nil {
		return time.Minute
	}
	now := time.Now()
	if wait := RenewIn(cur.Leaf, st.ca.rotatedFor(cur.Leaf, c.CACertPEM), k.Self, now); wait > 0 {
		return wait
	}
	if now.Before(st.nextRenew) {
		return st.nextRenew.Sub(now)
	}
	if err := k.renewCert(ctx, dir, cur.Leaf); err != nil {
		st.failures++
		backoff := RenewBackoff(st.failures)
		st.nextRenew = now.Add(backoff)
		k.Log.Warn("certificate renewal failed; retrying", "in", backoff, "err", err)
		return backoff
	}
	st.failures = 0
	st.nextRenew = time.Time{}
	st.bundle, st.cross = nil, nil // re-read the trust from the record next pass
	return 0
}

// renewCert gets a new certificate for this node's key and swaps it in.
func (k *Keeper) renewCert(ctx context.Context, dir string, old *x509.Certificate) error {
	_, keyPEM, err := pki.LoadKeyPair(dir)
	if err != nil {
		return err
	}
	key, err := pki.ParseKeyPEM(keyPEM)
	if err != nil {
		return err
	}
	csr, err := pki.NewCSR(key, k.Self)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var resp *wire.RenewResponse
	if k.Raft.IsLeader() {
		resp, err = k.Issue(cctx, k.Self, csr, pki.Serial(old))
	} else {
		_, addr := k.Raft.Leader()
		if addr == "" {
			return errors.New("no leader to renew the certificate with")
		}
		resp = &wire.RenewResponse{}
		err = k.Call(cctx, addr, wire.MethodRenew, wire.RenewRequest{CSR: csr, Serial: pki.Serial(old)}, resp)
	}
	if err != nil {
		return err
	}
	if err := k.installCert(dir, resp, keyPEM, old); err != nil {
		return err
	}
	// Installed (durably): the old certificate may go. A failure here is
	// retried by confirmIfPending once the replica shows the pending
	// serial; until then the old certificate stays valid.
	if serial := pki.Serial(k.TLS.Certificate().Leaf); serial != "" {
		if err := k.confirm(ctx, serial); err != nil {
			k.Log.Warn("confirm the renewed certificate; retrying later", "err", err)
		}
	}
	return nil
}

// installCert checks a renewed certificate, writes it and the trust it came
// with, and swaps it into the TLS configurations.
func (k *Keeper) installCert(dir string, resp *wire.RenewResponse, keyPEM []byte, old *x509.Certificate) error {
	tc, pool, err := pki.NodeTLS(resp.CertPEM, keyPEM, resp.BundlePEM, resp.CrossPEM)
	if err != nil {
		return fmt.Errorf("renewed certificate: %w", err)
	}
	if tc.Leaf.Subject.CommonName != k.Self {
		return fmt.Errorf("renewed certificate is for %q: %w", tc.Leaf.Subject.CommonName, pki.ErrNodeIDMismatch)
	}
	if err := pki.WriteTrust(dir, resp.BundlePEM, resp.CrossPEM); err != nil {
		return err
	}
	if err := pki.WriteKeyPair(dir, resp.CertPEM, keyPEM); err != nil {
		return err
	}
	k.TLS.Set(tc, pool)
	k.Log.Info("certificate renewed", "serial", pki.Serial(tc.Leaf), "old_serial", pki.Serial(old),
		"expires", tc.Leaf.NotAfter.UTC().Format(time.RFC3339))
	return nil
}
