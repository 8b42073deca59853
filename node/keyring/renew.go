package node

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
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/wire"
)

// handleRenewRPC signs a new certificate for the caller. Allowed callers:
// the node itself only — the certificate is issued for the caller's node ID
// (from its verified, unrevoked certificate), and the CSR must ask for that
// ID; the node must still be in the cluster's state. Leader only.
func (a *Agent) handleRenewRPC(ctx context.Context, peerID string, req wire.RenewRequest) (*wire.RenewResponse, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	if !cl.raft.IsLeader() {
		return nil, ErrNotLeader
	}
	return a.issueRenewal(ctx, cl, peerID, req.CSR)
}

// issueRenewal signs csr for node id and records it (leader).
func (a *Agent) issueRenewal(ctx context.Context, cl *cluster, id string, csr []byte) (*wire.RenewResponse, error) {
	n, err := cl.store.Node(id)
	if err != nil {
		return nil, &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("node %s is not a member of this cluster", shortID(id))}
	}
	c := cl.store.Cluster()
	if c == nil {
		return nil, consensus.ErrNotBootstrapped
	}
	ca, err := a.clusterCA(c)
	if err != nil {
		return nil, &wire.Error{Code: wire.CodeRefused, Msg: err.Error()}
	}
	certPEM, serial, err := ca.SignCSR(csr, id, []net.IP{net.ParseIP(n.Addr)}, time.Now().UTC(), a.cfg.CertLifetime)
	if err != nil {
		return nil, &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("certificate request refused: %v", err)}
	}
	cmd := &consensus.SetNodeCert{ID: id, Serial: serial, CAFingerprint: c.CAFingerprint}
	if n.CertSerial != "" && n.CertSerial != serial {
		cmd.Revoke = []string{n.CertSerial}
	}
	if _, err := cl.raft.Apply(ctx, cmd); err != nil {
		return nil, fmt.Errorf("record renewed certificate: %w", err)
	}
	return &wire.RenewResponse{CertPEM: certPEM, BundlePEM: trustBundle(c), CrossPEM: c.CACrossPEM}, nil
}

// renewIfDue renews this node's certificate when it is due or was not
// issued by the record's current CA, and returns how long until the next
// check is needed.
func (a *Agent) renewIfDue(ctx context.Context, cl *cluster, dir string, c *consensus.ClusterState, st *keysState) time.Duration {
	cur := cl.tls.Certificate()
	if cur.Leaf == nil {
		return time.Minute
	}
	now := time.Now()
	wait := pki.RenewIn(cur.Leaf.NotBefore, cur.Leaf.NotAfter, now, pki.Spread(a.id.NodeID))
	if caCert, err := pki.ParseCertPEM(c.CACertPEM); err == nil && cur.Leaf.CheckSignatureFrom(caCert) != nil {
		wait = 0 // the CA rotated: renew now
	}
	if wait > 0 {
		return wait
	}
	if now.Before(st.nextRenew) {
		return st.nextRenew.Sub(now)
	}
	if err := a.renewCert(ctx, cl, dir, cur.Leaf); err != nil {
		st.failures++
		backoff := min(250*time.Millisecond<<min(st.failures, 6), 15*time.Second)
		st.nextRenew = now.Add(backoff)
		a.log.Warn("certificate renewal failed; retrying", "in", backoff, "err", err)
		return backoff
	}
	st.failures = 0
	st.nextRenew = time.Time{}
	st.bundle, st.cross = nil, nil // re-read the trust from the record next pass
	return 0
}

// renewCert gets a new certificate for this node's key and swaps it in.
func (a *Agent) renewCert(ctx context.Context, cl *cluster, dir string, old *x509.Certificate) error {
	_, keyPEM, err := pki.LoadKeyPair(dir)
	if err != nil {
		return err
	}
	key, err := pki.ParseKeyPEM(keyPEM)
	if err != nil {
		return err
	}
	csr, err := pki.NewCSR(key, a.id.NodeID)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var resp *wire.RenewResponse
	if cl.raft.IsLeader() {
		resp, err = a.issueRenewal(cctx, cl, a.id.NodeID, csr)
	} else {
		_, addr := cl.raft.Leader()
		if addr == "" {
			return errors.New("no leader to renew the certificate with")
		}
		resp = &wire.RenewResponse{}
		err = callRPC(cctx, addr, cl.client, wire.MethodRenew, wire.RenewRequest{CSR: csr}, resp, nil)
	}
	if err != nil {
		return err
	}
	return a.installCert(cl, dir, resp, keyPEM, old)
}

// installCert checks a renewed certificate, writes it and the trust it came
// with, and swaps it into the TLS configurations.
func (a *Agent) installCert(cl *cluster, dir string, resp *wire.RenewResponse, keyPEM []byte, old *x509.Certificate) error {
	tc, pool, err := pki.NodeTLS(resp.CertPEM, keyPEM, resp.BundlePEM, resp.CrossPEM)
	if err != nil {
		return fmt.Errorf("renewed certificate: %w", err)
	}
	if tc.Leaf.Subject.CommonName != a.id.NodeID {
		return fmt.Errorf("renewed certificate is for %q: %w", tc.Leaf.Subject.CommonName, pki.ErrNodeIDMismatch)
	}
	if err := pki.WriteTrust(dir, resp.BundlePEM, resp.CrossPEM); err != nil {
		return err
	}
	if err := pki.WriteKeyPair(dir, resp.CertPEM, keyPEM); err != nil {
		return err
	}
	cl.tls.Set(tc, pool)
	a.log.Info("certificate renewed", "serial", pki.Serial(tc.Leaf), "old_serial", pki.Serial(old),
		"expires", tc.Leaf.NotAfter.UTC().Format(time.RFC3339))
	return nil
}

// pkiDir is where a node's certificate, key and trusted CAs live.
func pkiDir(dataDir string) string { return filepath.Join(clusterDir(dataDir), "pki") }
