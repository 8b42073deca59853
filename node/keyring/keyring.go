package node

// Keys where they belong (issue 7). The replicated cluster record holds the
// CA certificate, but the CA private key and the join secret only sealed
// with a key-encryption key (KEK) that voters keep in DATA/cluster/kek
// (mode 0600). Every node stores the whole Raft log and snapshots, so a
// non-voter sees ciphertext only; the leader (always a voter) opens the CA
// key to sign certificates, and voters open the secret to print the token.
//
//   - init makes the KEK and proposes the bootstrap record already sealed
//     (the nonce is drawn before proposing: the FSM stays pure).
//   - A node that finds itself a voter in the Raft configuration without the
//     KEK pulls it from another voter (wire.MethodKEK, answered to voters only); a
//     node demoted to non-voter deletes its copy.
//   - A cluster whose record still holds the plaintext key or secret (made
//     before sealing) is migrated by its leader: it seals both and proposes
//     SealClusterKeys. The older log entries and snapshots that hold the
//     plaintext remain on every node until Raft compacts them (a snapshot,
//     then TrailingLogs later entries); nothing rewrites them earlier.
//   - `shoal token` on a node without the KEK asks the leader (wire.MethodToken).
//     The secret is kept sealed rather than only hashed so that the token
//     stays printable from any node, as Swarm's is; only voters can open it.
//
// keysLoop runs on every node and closes the gap between what the
// replicated record says and this node's TLS identity: KEK presence, the
// trust bundle (current CA, plus the previous one during a rotation),
// certificate renewal (renew.go) and, on the leader, migration and the end
// of a CA rotation.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/subtle"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/authz"
	"github.com/shoal-org/shoal/node/httpapi"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/wire"
)

// kekFile is the voters' key-encryption key under DATA/cluster.
const kekFile = "kek"

// Errors of the keys.
var (
	// errNoKEK: this node does not hold the key-encryption key (it is not a
	// voter, or was promoted a moment ago and has not received it yet).
	errNoKEK = errors.New("this node does not hold the cluster key-encryption key (only voters do)")
)

func kekPath(dataDir string) string { return filepath.Join(clusterDir(dataDir), kekFile) }

// aadCAKey and aadSecret bind a sealed blob to what it is and to its cluster.
func aadCAKey(clusterID string) []byte  { return []byte("shoal ca key\x00" + clusterID) }
func aadSecret(clusterID string) []byte { return []byte("shoal join secret\x00" + clusterID) }

// loadKEK reads this node's KEK; errNoKEK when it has none.
func (a *Agent) loadKEK() ([]byte, error) {
	b, err := os.ReadFile(kekPath(a.cfg.DataDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, errNoKEK
	}
	if err != nil {
		return nil, fmt.Errorf("read key-encryption key: %w", err)
	}
	if len(b) != pki.KEKSize {
		return nil, fmt.Errorf("key-encryption key %s has %d bytes, want %d", kekPath(a.cfg.DataDir), len(b), pki.KEKSize)
	}
	return b, nil
}

func (a *Agent) saveKEK(kek []byte) error {
	if err := writeFileAtomic(kekPath(a.cfg.DataDir), kek, 0o600); err != nil {
		return fmt.Errorf("write key-encryption key: %w", err)
	}
	return nil
}

// kekFor returns this node's KEK if it opens c's sealed fields.
func (a *Agent) kekFor(c *consensus.ClusterState) ([]byte, error) {
	kek, err := a.loadKEK()
	if err != nil {
		return nil, err
	}
	if c.KEKID != "" && pki.KEKID(kek) != c.KEKID {
		return nil, fmt.Errorf("%w: the one held here is %s, the record is sealed with %s", errNoKEK, pki.KEKID(kek), c.KEKID)
	}
	return kek, nil
}

// sealedClusterRecord builds the bootstrap record of a new cluster: the CA
// key and the join secret sealed with kek.
func sealedClusterRecord(clusterID string, ca *pki.CA, secret string, kek []byte) (consensus.ClusterState, error) {
	caKey, err := pki.Seal(kek, ca.KeyPEM(), aadCAKey(clusterID))
	if err != nil {
		return consensus.ClusterState{}, fmt.Errorf("seal CA key: %w", err)
	}
	sec, err := pki.Seal(kek, []byte(secret), aadSecret(clusterID))
	if err != nil {
		return consensus.ClusterState{}, fmt.Errorf("seal join secret: %w", err)
	}
	return consensus.ClusterState{
		ClusterID:         clusterID,
		CACertPEM:         ca.CertPEM(),
		CAFingerprint:     ca.Fingerprint(),
		KEKID:             pki.KEKID(kek),
		CAKeySealed:       caKey,
		TokenSecretHash:   pki.HashSecret(secret),
		TokenSecretSealed: sec,
	}, nil
}

// clusterCA opens the CA of the record with this node's KEK (a leader's
// job). A record made before sealing still has the key in the clear.
func (a *Agent) clusterCA(c *consensus.ClusterState) (*pki.CA, error) {
	keyPEM := c.CAKeyPEM
	if len(c.CAKeySealed) > 0 {
		kek, err := a.kekFor(c)
		if err != nil {
			return nil, fmt.Errorf("open the cluster CA key: %w", err)
		}
		if keyPEM, err = pki.Open(kek, c.CAKeySealed, aadCAKey(c.ClusterID)); err != nil {
			return nil, fmt.Errorf("open the cluster CA key: %w", err)
		}
	}
	if len(keyPEM) == 0 {
		return nil, errors.New("the cluster record holds no CA key")
	}
	ca, err := pki.LoadCA(c.CACertPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load cluster CA: %w", err)
	}
	return ca, nil
}

// joinSecret opens the join secret of the record with this node's KEK.
func (a *Agent) joinSecret(c *consensus.ClusterState) (string, error) {
	if len(c.TokenSecretSealed) == 0 {
		if c.TokenSecret != "" {
			return c.TokenSecret, nil
		}
		return "", errors.New("the cluster record holds no join secret")
	}
	kek, err := a.kekFor(c)
	if err != nil {
		return "", err
	}
	b, err := pki.Open(kek, c.TokenSecretSealed, aadSecret(c.ClusterID))
	if err != nil {
		return "", fmt.Errorf("open the join secret: %w", err)
	}
	return string(b), nil
}

// verifyJoinSecret compares the hash of a presented secret with the
// record's in constant time.
func verifyJoinSecret(c *consensus.ClusterState, secret string) bool {
	got := pki.HashSecret(secret)
	return subtle.ConstantTimeCompare([]byte(got), []byte(c.TokenSecretHash)) == 1
}

// checkJoinReply refuses a join answer whose CA is not the one the token
// pins, or whose certificate is not for this node's ID and key, before
// anything is written.
func checkJoinReply(tok pki.Token, nodeID string, keyPEM []byte, resp *wire.JoinResponse) error {
	fp, err := pki.FingerprintPEM(resp.CAPEM)
	if err != nil {
		return fmt.Errorf("join reply: CA certificate: %w", err)
	}
	if fp != tok.CAFingerprint {
		return fmt.Errorf("join reply: %w: the CA sent back has fingerprint %s, the token pins %s", pki.ErrCAMismatch, fp, tok.CAFingerprint)
	}
	bundle := resp.CAPEM
	if _, _, err := pki.NodeTLS(resp.CertPEM, keyPEM, bundle, resp.CrossPEM); err != nil {
		return fmt.Errorf("join reply: certificate: %w", err)
	}
	cert, err := pki.ParseCertPEM(resp.CertPEM)
	if err != nil {
		return fmt.Errorf("join reply: %w", err)
	}
	if cert.Subject.CommonName != nodeID {
		return fmt.Errorf("join reply: %w: certificate for %q, this node is %q", pki.ErrNodeIDMismatch, cert.Subject.CommonName, nodeID)
	}
	return nil
}

// trustBundle is the PEM this node should trust for record c: the current
// CA, then the previous one while a rotation is under way.
func trustBundle(c *consensus.ClusterState) []byte {
	out := slices.Clone(c.CACertPEM)
	if len(c.PrevCACertPEM) > 0 {
		out = append(out, c.PrevCACertPEM...)
	}
	return out
}

// ---- RPC handlers ----

// handleKEKRPC hands the KEK to another voter. Allowed callers: nodes that
// are voters in this node's current Raft configuration, other than itself.
func (a *Agent) handleKEKRPC(peerID string) (*wire.KEKResponse, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	servers, err := cl.raft.Servers()
	if err != nil {
		return nil, err
	}
	voter := false
	for _, s := range servers {
		if s.ID == peerID && s.Voter {
			voter = true
		}
	}
	if !voter || peerID == a.id.NodeID {
		return nil, &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("node %s is not a voter: the key-encryption key goes to voters only", shortID(peerID))}
	}
	kek, err := a.loadKEK()
	if err != nil {
		return nil, &wire.Error{Code: wire.CodeRefused, Msg: err.Error()}
	}
	a.log.Info("handed the key-encryption key to a voter", "node_id", shortID(peerID))
	return &wire.KEKResponse{KEK: kek}, nil
}

// handleTokenRPC tells (or, on the leader, rotates) the join secret.
// Allowed callers: any node of the cluster's state — root on any node is
// an admin (DESIGN.md, trust model), so a node may print the token as it
// may forward any write.
func (a *Agent) handleTokenRPC(ctx context.Context, peerID string, req wire.TokenRequest) (*wire.TokenResponse, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	if _, err := cl.store.Node(peerID); err != nil {
		return nil, &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("node %s is not a member of this cluster", shortID(peerID))}
	}
	if req.Rotate {
		if !cl.raft.IsLeader() {
			return nil, ErrNotLeader
		}
		// Rotating is an admin action: a worker's root may not do it.
		c, _ := callerOf(cl, authz.Admin, peerID)
		if err := authz.Authorize(c, consensus.RotateToken{}, nil); err != nil {
			return nil, err
		}
		secret, err := a.rotateSecretAsLeader(ctx, cl)
		if err != nil {
			return nil, err
		}
		return &wire.TokenResponse{Secret: secret}, nil
	}
	c := cl.store.Cluster()
	if c == nil {
		return nil, consensus.ErrNotBootstrapped
	}
	secret, err := a.joinSecret(c)
	if err != nil {
		if cl.raft.IsLeader() {
			return nil, &wire.Error{Code: wire.CodeRefused, Msg: err.Error()}
		}
		return nil, ErrNotLeader // let the caller find a voter that can open it
	}
	return &wire.TokenResponse{Secret: secret}, nil
}

// rotateSecretAsLeader draws a new join secret, seals it and records it.
func (a *Agent) rotateSecretAsLeader(ctx context.Context, cl *cluster) (string, error) {
	c := cl.store.Cluster()
	if c == nil {
		return "", consensus.ErrNotBootstrapped
	}
	kek, err := a.kekFor(c)
	if err != nil {
		return "", &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("rotate token: %v", err)}
	}
	secret := pki.NewSecret()
	sealed, err := pki.Seal(kek, []byte(secret), aadSecret(c.ClusterID))
	if err != nil {
		return "", err
	}
	if _, err := cl.raft.Apply(ctx, &consensus.RotateToken{SecretHash: pki.HashSecret(secret), SecretSealed: sealed}); err != nil {
		return "", fmt.Errorf("rotate token: %w", err)
	}
	return secret, nil
}

// currentSecret returns the join secret, opened here when this node holds
// the KEK, else asked of the leader.
func (a *Agent) currentSecret(ctx context.Context, cl *cluster, c *consensus.ClusterState) (string, error) {
	if s, err := a.joinSecret(c); err == nil {
		return s, nil
	}
	var resp wire.TokenResponse
	err := a.forwardToLeader(ctx, cl, func(ctx context.Context, addr string) error {
		return callRPC(ctx, addr, cl.client, wire.MethodToken, wire.TokenRequest{}, &resp, nil)
	})
	if err != nil {
		return "", fmt.Errorf("ask the leader for the join token: %w", err)
	}
	return resp.Secret, nil
}

// rotateSecret rotates the join secret on the leader (here or remote).
func (a *Agent) rotateSecret(ctx context.Context, cl *cluster) error {
	if cl.raft.IsLeader() {
		_, err := a.rotateSecretAsLeader(ctx, cl)
		return err
	}
	return a.forwardToLeader(ctx, cl, func(ctx context.Context, addr string) error {
		return callRPC(ctx, addr, cl.client, wire.MethodToken, wire.TokenRequest{Rotate: true}, nil, nil)
	})
}

// ---- the keys loop ----

// keysState is what keysLoop knows of this node's TLS files; only the loop
// goroutine touches it.
type keysState struct {
	bundle, cross []byte
	nextRenew     time.Time // earliest retry after a failed renewal
	failures      int
	lastKEKPull   time.Time
}

// keysLoop keeps this node's keys in line with the replicated record; see
// the top of the file. It returns when ctx ends.
func (a *Agent) keysLoop(ctx context.Context, cl *cluster) {
	dir := filepath.Join(clusterDir(a.cfg.DataDir), "pki")
	st := &keysState{}
	st.bundle, _ = pki.LoadCACert(dir)
	st.cross, _ = pki.LoadCross(dir)
	storeCh, cancel := cl.store.Subscribe()
	defer cancel()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-storeCh:
		case <-timer.C:
		}
		wait := a.keysPass(ctx, cl, dir, st)
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
	}
}

// keysPass runs one pass and returns how long to wait for the next one
// when nothing changes.
func (a *Agent) keysPass(ctx context.Context, cl *cluster, dir string, st *keysState) time.Duration {
	c := cl.store.Cluster()
	if c == nil {
		return time.Second
	}
	a.syncKEK(ctx, cl, c, st)
	if err := a.syncTrust(cl, dir, c, st); err != nil {
		a.log.Warn("update trusted CAs", "err", err)
	}
	if cl.raft.IsLeader() {
		a.leaderKeys(ctx, cl, c)
	}
	wait := a.renewIfDue(ctx, cl, dir, c, st)
	return min(wait, 5*time.Second)
}

// syncKEK pulls the KEK when this node is a voter without it, and deletes
// it when the configuration lists this node as a non-voter.
func (a *Agent) syncKEK(ctx context.Context, cl *cluster, c *consensus.ClusterState, st *keysState) {
	servers, err := cl.raft.Servers()
	if err != nil {
		return
	}
	var me *consensus.Server
	for i := range servers {
		if servers[i].ID == a.id.NodeID {
			me = &servers[i]
		}
	}
	if me == nil {
		return // not in the configuration (yet): change nothing
	}
	_, haveErr := a.kekFor(c)
	if !me.Voter {
		if _, err := os.Stat(kekPath(a.cfg.DataDir)); err == nil {
			if err := os.Remove(kekPath(a.cfg.DataDir)); err != nil {
				a.log.Warn("remove key-encryption key after demotion", "err", err)
			} else {
				a.log.Info("removed the key-encryption key: this node is no longer a voter")
			}
		}
		return
	}
	if haveErr == nil || c.KEKID == "" || time.Since(st.lastKEKPull) < time.Second {
		return
	}
	st.lastKEKPull = time.Now()
	leaderID, _ := cl.raft.Leader()
	slices.SortStableFunc(servers, func(x, y consensus.Server) int {
		switch {
		case x.ID == leaderID:
			return -1
		case y.ID == leaderID:
			return 1
		}
		return 0
	})
	for _, s := range servers {
		if !s.Voter || s.ID == a.id.NodeID {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		var resp wire.KEKResponse
		err := callRPC(cctx, s.Addr, cl.client, wire.MethodKEK, nil, &resp, nil)
		cancel()
		if err != nil {
			a.log.Debug("pull key-encryption key", "from", shortID(s.ID), "err", err)
			continue
		}
		if pki.KEKID(resp.KEK) != c.KEKID {
			a.log.Warn("a voter sent a key-encryption key that does not open the record", "from", shortID(s.ID))
			continue
		}
		if err := a.saveKEK(resp.KEK); err != nil {
			a.log.Warn("save key-encryption key", "err", err)
			return
		}
		a.log.Info("received the key-encryption key from a voter", "from", shortID(s.ID))
		return
	}
}

// syncTrust makes this node trust what the record says (the current CA,
// and the previous one during a rotation), keeping the issuer of its own
// certificate so that it never locks itself out.
func (a *Agent) syncTrust(cl *cluster, dir string, c *consensus.ClusterState, st *keysState) error {
	bundle := trustBundle(c)
	cross := c.CACrossPEM
	if bytes.Equal(bundle, st.bundle) && bytes.Equal(cross, st.cross) {
		return nil
	}
	cur := cl.tls.Certificate()
	if cur.Leaf != nil {
		cas, err := pki.ParseCertsPEM(bundle)
		if err != nil {
			return fmt.Errorf("trust bundle of the record: %w", err)
		}
		issued := false
		for _, ca := range cas {
			if cur.Leaf.CheckSignatureFrom(ca) == nil {
				issued = true
			}
		}
		if !issued && len(cur.Certificate) > 1 {
			// Keep the issuer of the certificate in use until it renews.
			if issuer, err := x509.ParseCertificate(cur.Certificate[len(cur.Certificate)-1]); err == nil {
				bundle = append(bundle, pki.EncodeCertsPEM(issuer)...)
			}
		}
	}
	certPEM, keyPEM, err := pki.LoadKeyPair(dir)
	if err != nil {
		return err
	}
	tc, pool, err := pki.NodeTLS(certPEM, keyPEM, bundle, cross)
	if err != nil {
		return err
	}
	if err := pki.WriteTrust(dir, bundle, cross); err != nil {
		return err
	}
	cl.tls.Set(tc, pool)
	st.bundle, st.cross = bundle, slices.Clone(cross)
	a.log.Info("trusted CAs updated", "ca", c.CAFingerprint, "rotating", len(c.PrevCACertPEM) > 0)
	return nil
}

// leaderKeys is the leader's part: migrate a plaintext record, and end a
// CA rotation once every node has a certificate from the new CA.
func (a *Agent) leaderKeys(ctx context.Context, cl *cluster, c *consensus.ClusterState) {
	if len(c.CAKeyPEM) > 0 || c.TokenSecret != "" {
		if err := a.migrateClusterKeys(ctx, cl, c); err != nil {
			a.log.Warn("seal the cluster keys", "err", err)
		}
		return
	}
	if len(c.PrevCACertPEM) == 0 {
		return
	}
	for _, id := range c.RotationPending {
		if _, err := cl.store.Node(id); err == nil {
			return // still waiting for this node
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := cl.raft.Apply(wctx, &consensus.FinishCARotation{CAFingerprint: c.CAFingerprint}); err != nil {
		a.log.Warn("finish CA rotation", "err", err)
		return
	}
	a.log.Info("CA rotation complete: the previous CA is no longer trusted", "ca", c.CAFingerprint)
}

// migrateClusterKeys seals the plaintext CA key and join secret of a
// record made before sealing and proposes the sealed form. The entries that
// carried the plaintext stay in older snapshots and log segments until Raft
// compacts them.
func (a *Agent) migrateClusterKeys(ctx context.Context, cl *cluster, c *consensus.ClusterState) error {
	kek, err := a.loadKEK()
	switch {
	case errors.Is(err, errNoKEK) && c.KEKID == "":
		kek = pki.NewKEK()
		if err := a.saveKEK(kek); err != nil {
			return err
		}
	case err != nil:
		return err
	case c.KEKID != "" && pki.KEKID(kek) != c.KEKID:
		return fmt.Errorf("%w: waiting for the voters' key", errNoKEK)
	}
	cmd := &consensus.SealClusterKeys{KEKID: pki.KEKID(kek), CAKeySealed: c.CAKeySealed}
	fp, err := pki.FingerprintPEM(c.CACertPEM)
	if err != nil {
		return err
	}
	cmd.CAFingerprint = fp
	if len(c.CAKeyPEM) > 0 {
		if cmd.CAKeySealed, err = pki.Seal(kek, c.CAKeyPEM, aadCAKey(c.ClusterID)); err != nil {
			return err
		}
	}
	if c.TokenSecret != "" {
		if cmd.TokenSecretSealed, err = pki.Seal(kek, []byte(c.TokenSecret), aadSecret(c.ClusterID)); err != nil {
			return err
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := cl.raft.Apply(wctx, cmd); err != nil {
		return err
	}
	a.log.Info("sealed the cluster CA key and join secret; older snapshots and log entries keep the plaintext until Raft compacts them")
	return nil
}

// ---- CA rotation ----

// handleCARotateRPC starts a CA rotation on the leader. Allowed callers:
// any node of the cluster's state (an admin operation from any node's API,
// as forwarded writes are).
func (a *Agent) handleCARotateRPC(ctx context.Context, peerID string) (*wire.CARotateResponse, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	if _, err := cl.store.Node(peerID); err != nil {
		return nil, &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("node %s is not a member of this cluster", shortID(peerID))}
	}
	if !cl.raft.IsLeader() {
		return nil, ErrNotLeader
	}
	fp, err := a.rotateCAAsLeader(ctx, cl)
	if err != nil {
		return nil, err
	}
	return &wire.CARotateResponse{CAFingerprint: fp}, nil
}

// rotateCAAsLeader makes a new CA, cross-signs it with the current one,
// seals its key and proposes RotateCA. The nodes' keys loops then trust
// both CAs, renew their certificates from the new one, and the leader drops
// the old CA once every node has.
func (a *Agent) rotateCAAsLeader(ctx context.Context, cl *cluster) (string, error) {
	c := cl.store.Cluster()
	if c == nil {
		return "", consensus.ErrNotBootstrapped
	}
	if len(c.PrevCACertPEM) > 0 {
		return "", &wire.Error{Code: "in_use", Msg: fmt.Sprintf("a CA rotation is under way: %d nodes have no certificate from the new CA yet", len(c.RotationPending))}
	}
	if c.KEKID == "" || c.CAFingerprint == "" {
		return "", &wire.Error{Code: wire.CodeRefused, Msg: "the cluster keys are being sealed; try again in a moment"}
	}
	old, err := a.clusterCA(c)
	if err != nil {
		return "", &wire.Error{Code: wire.CodeRefused, Msg: err.Error()}
	}
	kek, err := a.kekFor(c)
	if err != nil {
		return "", &wire.Error{Code: wire.CodeRefused, Msg: err.Error()}
	}
	now := time.Now().UTC()
	next, err := pki.NewCA(c.ClusterID, now)
	if err != nil {
		return "", err
	}
	cross, err := old.CrossSign(next.Cert(), now)
	if errors.Is(err, pki.ErrNotCA) {
		// A CA made before cross-signing: the rotation relies on the trust
		// bundle alone (nodes trust both CAs as soon as they apply it).
		a.log.Warn("the current CA cannot cross-sign; rotating with a trust bundle only", "err", err)
		cross = nil
	} else if err != nil {
		return "", err
	}
	sealed, err := pki.Seal(kek, next.KeyPEM(), aadCAKey(c.ClusterID))
	if err != nil {
		return "", err
	}
	cmd := &consensus.RotateCA{
		CACertPEM: next.CertPEM(), CAFingerprint: next.Fingerprint(), CAKeySealed: sealed,
		CACrossPEM: cross, ExpectFingerprint: c.CAFingerprint,
	}
	if _, err := cl.raft.Apply(ctx, cmd); err != nil {
		return "", fmt.Errorf("rotate CA: %w", err)
	}
	a.log.Info("CA rotation started", "old", c.CAFingerprint, "new", next.Fingerprint())
	return next.Fingerprint(), nil
}

// rotateCA is `shoal ca rotate` on this node: start the rotation on the
// leader, then wait (up to wait) until this node's replica shows it done.
func (a *Agent) rotateCA(ctx context.Context, wait time.Duration) (api.CARotateResponse, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return api.CARotateResponse{}, err
	}
	var fp string
	if cl.raft.IsLeader() {
		fp, err = a.rotateCAAsLeader(ctx, cl)
	} else {
		var resp wire.CARotateResponse
		err = a.forwardToLeader(ctx, cl, func(ctx context.Context, addr string) error {
			return callRPC(ctx, addr, cl.client, wire.MethodCARotate, nil, &resp, nil)
		})
		fp = resp.CAFingerprint
	}
	if err != nil {
		return api.CARotateResponse{}, err
	}
	out := api.CARotateResponse{CAFingerprint: fp}
	deadline := time.Now().Add(wait)
	for {
		c := cl.store.Cluster()
		if c != nil && c.CAFingerprint == fp && len(c.PrevCACertPEM) == 0 {
			out.Complete = true
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			if c != nil {
				for _, id := range c.RotationPending {
					if n, err := cl.store.Node(id); err == nil {
						out.Pending = append(out.Pending, n.Hostname)
					}
				}
			}
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	tok, err := a.tokenResponse(ctx)
	if err != nil {
		return out, err
	}
	out.Token, out.JoinCommand = tok.Token, tok.JoinCommand
	return out, nil
}

// ---- node IDs at join ----

// admitJoinID decides whether a joiner may have the node ID it asks for,
// and returns the serials to revoke when it may. An ID the cluster does not
// know (no node record, not in the Raft configuration) is the joiner's own
// fresh random ID: admitted. An ID the cluster knows belongs to a node that
// may be down but still holds a vote, labels and tasks: it is admitted only
// when the joiner proves it is that node — its old certificate from this
// cluster and a CSR signed by the same key (pki.VerifyRejoin) — and never
// while that node is alive. The old serials are then revoked.
func (a *Agent) admitJoinID(cl *cluster, c *consensus.ClusterState, req wire.JoinRequest) ([]string, error) {
	old, errNode := cl.store.Node(req.NodeID)
	known := errNode == nil || req.NodeID == a.id.NodeID
	if servers, err := cl.raft.Servers(); err == nil {
		for _, s := range servers {
			if s.ID == req.NodeID {
				known = true
			}
		}
	}
	if !known {
		return nil, nil
	}
	if errNode == nil && old.Status == api.NodeReady && a.isAlive(cl, req.NodeID) || req.NodeID == a.id.NodeID {
		return nil, &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("node %s is already a live member of this cluster", shortID(req.NodeID))}
	}
	if len(req.OldCertPEM) == 0 && errNode == nil && pki.VerifyRetriedJoin(req.CSR, req.NodeID, old.CertKey) == nil {
		// The same joiner again: its earlier join was applied but the reply
		// never reached it. The certificate it never got is revoked.
		if old.CertSerial != "" {
			return []string{old.CertSerial}, nil
		}
		return nil, nil
	}
	roots, err := pki.ParseCertsPEM(trustBundle(c))
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	serial, err := pki.VerifyRejoin(req.OldCertPEM, req.CSR, req.NodeID, roots, cl.store.IsRevoked)
	if err != nil {
		a.log.Warn("join refused: node ID taken", "node_id", shortID(req.NodeID), "err", err)
		return nil, &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf(
			"node ID %s belongs to a member of this cluster and the joiner did not prove it holds that node's key; "+
				"remove the old node with `shoal node rm` first, or join with a fresh node ID", shortID(req.NodeID))}
	}
	revoke := []string{serial}
	if errNode == nil && old.CertSerial != "" && old.CertSerial != serial {
		revoke = append(revoke, old.CertSerial)
	}
	return revoke, nil
}

// joinRecord is the command that records an admitted joiner, revoking the
// serials of a re-joining ID in the same entry.
func joinRecord(n api.Node, revoke []string) consensus.Command {
	if len(revoke) == 0 {
		return &consensus.UpsertNode{Node: n}
	}
	b := &consensus.Batch{}
	for _, s := range revoke {
		b.Commands = append(b.Commands, &consensus.RevokeCert{Serial: s})
	}
	b.Commands = append(b.Commands, &consensus.UpsertNode{Node: n})
	return b
}

// joinKey returns the key a joiner's CSR is signed with: the key of a
// certificate left in DATA/cluster/pki by an earlier membership (then the
// certificate goes along as proof for a re-join under the same ID), or a
// pending one (joinPendingKeyFile).
func (a *Agent) joinKey() (*ecdsa.PrivateKey, []byte, error) {
	if certPEM, keyPEM, err := pki.LoadKeyPair(pkiDir(a.cfg.DataDir)); err == nil {
		if key, err := pki.ParseKeyPEM(keyPEM); err == nil {
			if cert, err := pki.ParseCertPEM(certPEM); err == nil && cert.Subject.CommonName == a.id.NodeID && key.PublicKey.Equal(cert.PublicKey) {
				return key, certPEM, nil
			}
		}
	}
	key, err := a.pendingJoinKey()
	return key, nil, err
}

// joinPendingKeyFile holds a joiner's key until a join succeeds, outside
// DATA/cluster (which a failed join removes): a join whose reply was lost
// has been applied on the leader, and only a retry with the same key can
// prove it is the same joiner (pki.VerifyRetriedJoin).
const joinPendingKeyFile = "join-key.pem"

// pendingJoinKey loads the pending join key, or makes and stores one.
func (a *Agent) pendingJoinKey() (*ecdsa.PrivateKey, error) {
	path := filepath.Join(a.cfg.DataDir, joinPendingKeyFile)
	if b, err := os.ReadFile(path); err == nil {
		if key, err := pki.ParseKeyPEM(b); err == nil {
			return key, nil
		}
	}
	key, err := pki.NewKey()
	if err != nil {
		return nil, err
	}
	b, err := pki.EncodeKey(key)
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("store pending join key: %w", err)
	}
	return key, nil
}

// handleCARotate is POST /v1/ca/rotate[?wait=D].
func (a *Agent) handleCARotate(w http.ResponseWriter, r *http.Request) (any, error) {
	wait := time.Minute
	if s := r.URL.Query().Get("wait"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 || d > 10*time.Minute {
			return nil, httpapi.BadRequest("wait %q: want a duration between 1s and 10m", s)
		}
		wait = d
	}
	return a.rotateCA(r.Context(), wait)
}
