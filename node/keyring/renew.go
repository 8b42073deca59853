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
func (k *Keeper) Issue(ctx context.Context, id string, csr []byte) (*wire.RenewResponse, error) {
	n, err := k.Store.Node(id)
	if err != nil {
		return nil, &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("node %s is not a member of this cluster", api.ShortID(id))}
	}
	c := k.Store.Cluster()
	if c == nil {
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
	if _, err := k.Raft.Apply(ctx, RenewalRecord(n, serial, c.CAFingerprint)); err != nil {
		return nil, fmt.Errorf("record renewed certificate: %w", err)
	}
	return &wire.RenewResponse{CertPEM: certPEM, BundlePEM: TrustBundle(c), CrossPEM: c.CACrossPEM}, nil
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
