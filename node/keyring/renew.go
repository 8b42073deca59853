package keyring

// Certificate renewal. Node certificates live --cert-lifetime (30 days by
// default) and renew themselves at 1/2 to 2/3 of it (pki.RenewalTime; the
// point is fixed per node), or at once when the cluster CA changed (a
// rotation). The node keeps its key and sends a CSR signed with it over
// wire.MethodRenew, authenticated by its current certificate; the leader signs a new
// certificate for the caller's own node ID, records the serial and revokes
// the previous one. The new certificate is written (one atomic file) and
// swapped into the TLS configurations: connections opened from then on use
// it, open ones keep theirs, nothing restarts. The leader renews its own
// certificate without the RPC.

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
// the node must still be in the cluster's state.
//
// One issue per node at a time (issuing): it reads the node's record,
// signs, and proposes the new serial (with its expiry, ApplyCertRecord)
// and the revocation of the one it read, all under the node's lock, so
// each renewal revokes the serial current when it starts. Two renewals
// that read the same record both revoked only that serial and left the
// node two valid certificates, one unrecorded, which `node rm` (revoking
// the recorded one) did not reach.
// A certificate leaves the leader only once its record is committed: an
// Apply that fails (its entry may commit later, before any later one)
// hands out nothing.
func (k *Keeper) Issue(ctx context.Context, id string, csr []byte) (*wire.RenewResponse, error) {
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
	if _, err := ApplyCertRecord(ctx, k.Raft, RenewalRecord(n, serial, c.CAFingerprint), serial, notAfter); err != nil {
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

// RenewalRecord is the command that records node n's new certificate
// serial, issued by the CA with fingerprint caFP, and revokes the one it
// replaces (none when it had none, or the serial is the same).
func RenewalRecord(n *api.Node, serial, caFP string) *command.SetNodeCert {
	cmd := &command.SetNodeCert{ID: n.ID, Serial: serial, CAFingerprint: caFP}
	if n.CertSerial != "" && n.CertSerial != serial {
		cmd.Revoke = []string{n.CertSerial}
	}
	return cmd
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
		resp, err = k.Issue(cctx, k.Self, csr)
	} else {
		_, addr := k.Raft.Leader()
		if addr == "" {
			return errors.New("no leader to renew the certificate with")
		}
		resp = &wire.RenewResponse{}
		err = k.Call(cctx, addr, wire.MethodRenew, wire.RenewRequest{CSR: csr}, resp)
	}
	if err != nil {
		return err
	}
	return k.installCert(dir, resp, keyPEM, old)
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
