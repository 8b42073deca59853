package keyring

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
//     node demoted to non-voter deletes its copy. A leader that must open the
//     CA for a join before its keys loop pulled the key pulls it at once
//     (PullKEK), and the join waits for it, bounded (node/joining).
//   - A cluster whose record still holds the plaintext key or secret (made
//     before sealing) is migrated by its leader: it seals both and proposes
//     SealClusterKeys. The older log entries and snapshots that hold the
//     plaintext remain on every node until Raft compacts them (a snapshot,
//     then TrailingLogs later entries); nothing rewrites them earlier.
//   - `shoal token` on a node without the KEK asks the leader (wire.MethodToken).
//     The secret is kept sealed rather than only hashed so that the token
//     stays printable from any node, as Swarm's is; only voters can open it.
//
// Keeper.Run is the keys loop every node runs. It closes the gap between
// what the replicated record says and this node's TLS identity: KEK
// presence, the trust bundle (current CA, plus the previous one during a
// rotation), certificate renewal (renew.go) and, on the leader, migration
// and the end of a CA rotation. A cluster instance (node/instance)
// constructs a Keeper from its parts, and the agent answers the RPCs
// through it (node/rpcserver; rpc.go: who may call them, and the
// forwarding to the leader through the Keeper's Forward).

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/subtle"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/api/atomicfile"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/consensus/raftnode"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/resync"
	"github.com/shoal-org/shoal/node/wire"
)

// KEKFile is the voters' key-encryption key under DATA/cluster.
const KEKFile = "kek"

// Errors of the keys.
var (
	// ErrNoKEK: this node does not hold the key-encryption key (it is not a
	// voter, or was promoted a moment ago and has not received it yet).
	ErrNoKEK = errors.New("this node does not hold the cluster key-encryption key (only voters do)")
)

// KEKPath is where the KEK lives under dir, DATA/cluster.
func KEKPath(dir string) string { return filepath.Join(dir, KEKFile) }

// PKIDir is where a node's certificate, key and trusted CAs live under
// dir, DATA/cluster.
func PKIDir(dir string) string { return filepath.Join(dir, "pki") }

// aadCAKey and aadSecret bind a sealed blob to what it is and to its cluster.
func aadCAKey(clusterID string) []byte  { return []byte("shoal ca key\x00" + clusterID) }
func aadSecret(clusterID string) []byte { return []byte("shoal join secret\x00" + clusterID) }

// LoadKEK reads the KEK under dir (DATA/cluster); ErrNoKEK when there is
// none.
func LoadKEK(dir string) ([]byte, error) {
	b, err := os.ReadFile(KEKPath(dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoKEK
	}
	if err != nil {
		return nil, fmt.Errorf("read key-encryption key: %w", err)
	}
	if len(b) != pki.KEKSize {
		return nil, fmt.Errorf("key-encryption key %s has %d bytes, want %d", KEKPath(dir), len(b), pki.KEKSize)
	}
	return b, nil
}

// SaveKEK writes kek under dir (DATA/cluster), 0600, atomically.
func SaveKEK(dir string, kek []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write key-encryption key: %w", err)
	}
	if err := atomicfile.WriteFile(KEKPath(dir), kek, 0o600); err != nil {
		return fmt.Errorf("write key-encryption key: %w", err)
	}
	return nil
}

// KEKFor returns the KEK under dir if it opens c's sealed fields.
func KEKFor(dir string, c *consensus.ClusterState) ([]byte, error) {
	kek, err := LoadKEK(dir)
	if err != nil {
		return nil, err
	}
	if c.KEKID != "" && pki.KEKID(kek) != c.KEKID {
		return nil, fmt.Errorf("%w: the one held here is %s, the record is sealed with %s", ErrNoKEK, pki.KEKID(kek), c.KEKID)
	}
	return kek, nil
}

// SealedRecord builds the bootstrap record of a new cluster: the CA key
// and the join secret sealed with kek.
func SealedRecord(clusterID string, ca *pki.CA, secret string, kek []byte) (consensus.ClusterState, error) {
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

// ClusterCA opens the CA of the record with the KEK under dir (a leader's
// job). A record made before sealing still has the key in the clear.
func ClusterCA(dir string, c *consensus.ClusterState) (*pki.CA, error) {
	keyPEM := c.CAKeyPEM
	if len(c.CAKeySealed) > 0 {
		kek, err := KEKFor(dir, c)
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

// JoinSecret opens the join secret of the record with the KEK under dir.
func JoinSecret(dir string, c *consensus.ClusterState) (string, error) {
	if len(c.TokenSecretSealed) == 0 {
		if c.TokenSecret != "" {
			return c.TokenSecret, nil
		}
		return "", errors.New("the cluster record holds no join secret")
	}
	kek, err := KEKFor(dir, c)
	if err != nil {
		return "", err
	}
	b, err := pki.Open(kek, c.TokenSecretSealed, aadSecret(c.ClusterID))
	if err != nil {
		return "", fmt.Errorf("open the join secret: %w", err)
	}
	return string(b), nil
}

// VerifyJoinSecret compares the hash of a presented secret with the
// record's in constant time.
func VerifyJoinSecret(c *consensus.ClusterState, secret string) bool {
	got := pki.HashSecret(secret)
	return subtle.ConstantTimeCompare([]byte(got), []byte(c.TokenSecretHash)) == 1
}

// CheckJoinReply refuses a join answer whose CA is not the one the token
// pins, or whose certificate is not for this node's ID and key, before
// anything is written.
func CheckJoinReply(tok pki.Token, nodeID string, keyPEM []byte, resp *wire.JoinResponse) error {
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

// TrustBundle is the PEM a node should trust for record c: the current
// CA, then the previous one while a rotation is under way.
func TrustBundle(c *consensus.ClusterState) []byte {
	out := slices.Clone(c.CACertPEM)
	if len(c.PrevCACertPEM) > 0 {
		out = append(out, c.PrevCACertPEM...)
	}
	return out
}

// ---- the keeper ----

// Raft is the part of raftnode.Raft the keeper uses.
type Raft interface {
	Servers() ([]raftnode.Server, error)
	Leader() (id, addr string)
	IsLeader() bool
	Apply(ctx context.Context, cmd command.Command) (any, error)
}

// CallFunc performs one RPC against the cluster port at addr with this
// node's certificate (instance.Call with the instance's client TLS).
type CallFunc func(ctx context.Context, addr, method string, body, out any) error

// Keeper keeps one node's keys and certificate in line with the
// replicated record of its cluster, and does the leader's key work. Its
// fields are set before use and not changed after; Run's state lives in
// Run, and the leader's per-node state (Issue's locks, AnswerRenew's
// counts) in tables of the package keyed by cluster and node, so the agent
// may build a Keeper per call.
type Keeper struct {
	// Self is this node's ID.
	Self string
	// Dir is DATA/cluster: the KEK, and the certificate under PKIDir(Dir).
	Dir   string
	Store *consensus.Store
	Raft  Raft
	// TLS is this node's certificate and trusted CAs, swapped on renewal.
	TLS  *pki.Source
	Call CallFunc
	// CertLifetime is how long the certificates this node signs as
	// leader live (--cert-lifetime).
	CertLifetime time.Duration
	Log          *slog.Logger

	// What the RPCs and routes of rpc.go need besides (nil where they are
	// not called): Forward runs a call against the leader, Authorize says
	// whether peerID may propose cmd (node/authz over the replica), Alive
	// whether gossip holds a node alive.
	Forward   ForwardFunc
	Authorize func(peerID string, cmd command.Command) error
	Alive     func(id string) bool
}

// keysState is what the keys loop knows of this node's TLS files; only the
// loop goroutine touches it.
type keysState struct {
	bundle, cross   []byte
	nextRenew       time.Time // earliest retry after a failed renewal
	failures        int
	nextConfirm     time.Time // earliest retry after a failed confirmation
	confirmFailures int
	lastKEKPull     time.Time
	ca              caCheck
}

// Run keeps this node's keys in line with the replicated record; see the
// top of the file. It returns when ctx ends.
func (k *Keeper) Run(ctx context.Context) {
	dir := PKIDir(k.Dir)
	st := &keysState{}
	st.bundle, _ = pki.LoadCACert(dir)
	st.cross, _ = pki.LoadCross(dir)
	storeCh, cancel := k.Store.Subscribe()
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
		wait := k.pass(ctx, dir, st)
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		// On the agent's grid: this loop's wake-up, every few seconds on
		// an idle node, is then the one a heartbeat makes anyway.
		timer.Reset(resync.After(time.Now(), wait))
	}
}

// pass runs one pass and returns how long to wait for the next one when
// nothing changes.
func (k *Keeper) pass(ctx context.Context, dir string, st *keysState) time.Duration {
	c := k.Store.Cluster()
	if c == nil {
		return time.Second
	}
	k.syncKEK(ctx, c, st)
	if err := k.syncTrust(dir, c, st); err != nil {
		k.Log.Warn("update trusted CAs", "err", err)
	}
	if k.Raft.IsLeader() {
		k.LeaderKeys(ctx, c)
	}
	wait := k.renewIfDue(ctx, dir, c, st)
	if cw := k.confirmIfPending(ctx, st); cw > 0 {
		wait = min(wait, cw)
	}
	return min(wait, 5*time.Second)
}

// syncKEK pulls the KEK when this node is a voter without it, and deletes
// it when the configuration lists this node as a non-voter.
func (k *Keeper) syncKEK(ctx context.Context, c *consensus.ClusterState, st *keysState) {
	servers, err := k.Raft.Servers()
	if err != nil {
		return
	}
	var me *raftnode.Server
	for i := range servers {
		if servers[i].ID == k.Self {
			me = &servers[i]
		}
	}
	if me == nil {
		return // not in the configuration (yet): change nothing
	}
	_, haveErr := KEKFor(k.Dir, c)
	if !me.Voter {
		if _, err := os.Stat(KEKPath(k.Dir)); err == nil {
			if err := os.Remove(KEKPath(k.Dir)); err != nil {
				k.Log.Warn("remove key-encryption key after demotion", "err", err)
			} else {
				k.Log.Info("removed the key-encryption key: this node is no longer a voter")
			}
		}
		return
	}
	if haveErr == nil || c.KEKID == "" || time.Since(st.lastKEKPull) < time.Second {
		return
	}
	st.lastKEKPull = time.Now()
	_ = k.pullKEK(ctx, c, servers)
}

// PullKEK fetches the KEK that opens record c from another voter now, if
// this node is a voter without it (nil when it holds it already). The
// keys loop pulls it within a pass of a promotion, but a voter promoted a
// moment ago can win an election first: a leader that must open the CA
// (a join) calls this instead of refusing until the loop's next pass.
// ErrNoKEK when no voter handed it (or this node is no voter).
func (k *Keeper) PullKEK(ctx context.Context, c *consensus.ClusterState) error {
	if _, err := KEKFor(k.Dir, c); err == nil || c.KEKID == "" {
		return nil
	}
	servers, err := k.Raft.Servers()
	if err != nil {
		return fmt.Errorf("pull key-encryption key: %w", err)
	}
	if !slices.ContainsFunc(servers, func(s raftnode.Server) bool { return s.ID == k.Self && s.Voter }) {
		return fmt.Errorf("%w: this node is not a voter", ErrNoKEK)
	}
	return k.pullKEK(ctx, c, servers)
}

// pullKEK asks the other voters of servers for the KEK of record c, the
// leader first, and saves the first that opens c. Concurrent pulls (the
// keys loop and a join) save the same key, atomically.
func (k *Keeper) pullKEK(ctx context.Context, c *consensus.ClusterState, servers []raftnode.Server) error {
	servers = slices.Clone(servers)
	leaderID, _ := k.Raft.Leader()
	slices.SortStableFunc(servers, func(x, y raftnode.Server) int {
		switch {
		case x.ID == leaderID:
			return -1
		case y.ID == leaderID:
			return 1
		}
		return 0
	})
	for _, s := range servers {
		if !s.Voter || s.ID == k.Self {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		var resp wire.KEKResponse
		err := k.Call(cctx, s.Addr, wire.MethodKEK, nil, &resp)
		cancel()
		if err != nil {
			k.Log.Debug("pull key-encryption key", "from", api.ShortID(s.ID), "err", err)
			continue
		}
		if pki.KEKID(resp.KEK) != c.KEKID {
			k.Log.Warn("a voter sent a key-encryption key that does not open the record", "from", api.ShortID(s.ID))
			continue
		}
		if err := SaveKEK(k.Dir, resp.KEK); err != nil {
			k.Log.Warn("save key-encryption key", "err", err)
			return err
		}
		k.Log.Info("received the key-encryption key from a voter", "from", api.ShortID(s.ID))
		return nil
	}
	return fmt.Errorf("%w: no other voter handed it", ErrNoKEK)
}

// syncTrust makes this node trust what the record says (the current CA,
// and the previous one during a rotation), keeping the issuer of its own
// certificate so that it never locks itself out.
func (k *Keeper) syncTrust(dir string, c *consensus.ClusterState, st *keysState) error {
	bundle := TrustBundle(c)
	cross := c.CACrossPEM
	if bytes.Equal(bundle, st.bundle) && bytes.Equal(cross, st.cross) {
		return nil
	}
	cur := k.TLS.Certificate()
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
	k.TLS.Set(tc, pool)
	st.bundle, st.cross = bundle, slices.Clone(cross)
	k.Log.Info("trusted CAs updated", "ca", c.CAFingerprint, "rotating", len(c.PrevCACertPEM) > 0)
	return nil
}

// LeaderKeys is the leader's part of a pass: migrate a plaintext record,
// end a CA rotation once every node has a certificate from the new CA, and
// trim the revocation list of certificates that have expired (expiry.go).
func (k *Keeper) LeaderKeys(ctx context.Context, c *consensus.ClusterState) {
	if len(c.CAKeyPEM) > 0 || c.TokenSecret != "" {
		if err := k.migrateClusterKeys(ctx, c); err != nil {
			k.Log.Warn("seal the cluster keys", "err", err)
		}
		return
	}
	if RotationDone(c, func(id string) bool { _, err := k.Store.Node(id); return err == nil }) {
		k.finishRotation(ctx, c)
	}
	k.trimRevoked(ctx, c, time.Now())
}

// finishRotation proposes the end of the CA rotation of record c.
func (k *Keeper) finishRotation(ctx context.Context, c *consensus.ClusterState) {
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := k.Raft.Apply(wctx, &command.FinishCARotation{CAFingerprint: c.CAFingerprint}); err != nil {
		k.Log.Warn("finish CA rotation", "err", err)
		return
	}
	k.Log.Info("CA rotation complete: the previous CA is no longer trusted", "ca", c.CAFingerprint)
}

// RotationDone reports whether the leader may end the CA rotation of
// record c: one is under way and no node it waits for is still a member
// (each renewed from the new CA, or left the cluster).
func RotationDone(c *consensus.ClusterState, isMember func(id string) bool) bool {
	if len(c.PrevCACertPEM) == 0 {
		return false
	}
	for _, id := range c.RotationPending {
		if isMember(id) {
			return false // still waiting for this node
		}
	}
	return true
}

// migrateClusterKeys seals the plaintext CA key and join secret of a
// record made before sealing and proposes the sealed form. The entries that
// carried the plaintext stay in older snapshots and log segments until Raft
// compacts them.
func (k *Keeper) migrateClusterKeys(ctx context.Context, c *consensus.ClusterState) error {
	kek, err := LoadKEK(k.Dir)
	switch {
	case errors.Is(err, ErrNoKEK) && c.KEKID == "":
		kek = pki.NewKEK()
		if err := SaveKEK(k.Dir, kek); err != nil {
			return err
		}
	case err != nil:
		return err
	case c.KEKID != "" && pki.KEKID(kek) != c.KEKID:
		return fmt.Errorf("%w: waiting for the voters' key", ErrNoKEK)
	}
	cmd := &command.SealClusterKeys{KEKID: pki.KEKID(kek), CAKeySealed: c.CAKeySealed}
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
	if _, err := k.Raft.Apply(wctx, cmd); err != nil {
		return err
	}
	k.Log.Info("sealed the cluster CA key and join secret; older snapshots and log entries keep the plaintext until Raft compacts them")
	return nil
}

// ---- what the RPCs do, once the agent let the caller in ----

// HandKEK hands the KEK to another voter. Allowed callers: nodes that are
// voters in this node's current Raft configuration, other than itself.
func (k *Keeper) HandKEK(peerID string) (*wire.KEKResponse, error) {
	servers, err := k.Raft.Servers()
	if err != nil {
		return nil, err
	}
	voter := false
	for _, s := range servers {
		if s.ID == peerID && s.Voter {
			voter = true
		}
	}
	if !voter || peerID == k.Self {
		return nil, &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("node %s is not a voter: the key-encryption key goes to voters only", api.ShortID(peerID))}
	}
	kek, err := LoadKEK(k.Dir)
	if err != nil {
		return nil, &wire.Error{Code: wire.CodeRefused, Msg: err.Error()}
	}
	k.Log.Info("handed the key-encryption key to a voter", "node_id", api.ShortID(peerID))
	return &wire.KEKResponse{KEK: kek}, nil
}

// RotateSecret draws a new join secret, seals it and records it (leader).
func (k *Keeper) RotateSecret(ctx context.Context) (string, error) {
	c := k.Store.Cluster()
	if c == nil {
		return "", consensus.ErrNotBootstrapped
	}
	kek, err := KEKFor(k.Dir, c)
	if err != nil {
		return "", &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("rotate token: %v", err)}
	}
	secret := pki.NewSecret()
	sealed, err := pki.Seal(kek, []byte(secret), aadSecret(c.ClusterID))
	if err != nil {
		return "", err
	}
	if _, err := k.Raft.Apply(ctx, &command.RotateToken{SecretHash: pki.HashSecret(secret), SecretSealed: sealed}); err != nil {
		return "", fmt.Errorf("rotate token: %w", err)
	}
	return secret, nil
}

// RotateCA makes a new CA, cross-signs it with the current one, seals its
// key and proposes RotateCA (leader). The nodes' keepers then trust both
// CAs, renew their certificates from the new one, and the leader drops the
// old CA once every node has. It returns the new CA's fingerprint.
func (k *Keeper) RotateCA(ctx context.Context) (string, error) {
	c := k.Store.Cluster()
	if c == nil {
		return "", consensus.ErrNotBootstrapped
	}
	if len(c.PrevCACertPEM) > 0 {
		return "", &wire.Error{Code: "in_use", Msg: fmt.Sprintf("a CA rotation is under way: %d nodes have no certificate from the new CA yet", len(c.RotationPending))}
	}
	if c.KEKID == "" || c.CAFingerprint == "" {
		return "", &wire.Error{Code: wire.CodeRefused, Msg: "the cluster keys are being sealed; try again in a moment"}
	}
	old, err := ClusterCA(k.Dir, c)
	if err != nil {
		return "", &wire.Error{Code: wire.CodeRefused, Msg: err.Error()}
	}
	kek, err := KEKFor(k.Dir, c)
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
		k.Log.Warn("the current CA cannot cross-sign; rotating with a trust bundle only", "err", err)
		cross = nil
	} else if err != nil {
		return "", err
	}
	sealed, err := pki.Seal(kek, next.KeyPEM(), aadCAKey(c.ClusterID))
	if err != nil {
		return "", err
	}
	cmd := &command.RotateCA{
		CACertPEM: next.CertPEM(), CAFingerprint: next.Fingerprint(), CAKeySealed: sealed,
		CACrossPEM: cross, ExpectFingerprint: c.CAFingerprint,
	}
	if _, err := k.Raft.Apply(ctx, cmd); err != nil {
		return "", fmt.Errorf("rotate CA: %w", err)
	}
	k.Log.Info("CA rotation started", "old", c.CAFingerprint, "new", next.Fingerprint())
	return next.Fingerprint(), nil
}

// WaitRotation waits, up to wait or until ctx ends, for this node's
// replica to show the CA rotation to the CA with fingerprint fp complete.
// When it is not, it returns the hostnames of the nodes the rotation
// still waits for.
func (k *Keeper) WaitRotation(ctx context.Context, fp string, wait time.Duration) (complete bool, pending []string) {
	deadline := time.Now().Add(wait)
	for {
		c := k.Store.Cluster()
		if c != nil && c.CAFingerprint == fp && len(c.PrevCACertPEM) == 0 {
			return true, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			if c != nil {
				for _, id := range c.RotationPending {
					if n, err := k.Store.Node(id); err == nil {
						pending = append(pending, n.Hostname)
					}
				}
			}
			return false, pending
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ---- node IDs at join ----

// JoinClaim is what the leader knows of a joiner's claim to a node ID.
type JoinClaim struct {
	Req wire.JoinRequest
	// Record is the replica's record of Req.NodeID; nil if none.
	Record *api.Node
	// InRaft: Req.NodeID is a server of the Raft configuration.
	InRaft bool
	// Leader: Req.NodeID is the deciding leader's own ID.
	Leader bool
	// Alive: gossip sees Req.NodeID alive (asked only of a ready record).
	Alive bool
	// Now is the leader's clock (zero: time.Now()).
	Now time.Time
}

// IDTakenError is AdmitJoinID's refusal of a known node ID whose joiner
// did not prove it holds that node's key.
type IDTakenError struct {
	NodeID string
	Err    error // why the proof failed
}

func (e *IDTakenError) Error() string { return e.Refusal().Error() }

func (e *IDTakenError) Unwrap() error { return e.Err }

// Refusal is the answer the joiner gets.
func (e *IDTakenError) Refusal() *wire.Error {
	return &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf(
		"node ID %s belongs to a member of this cluster and the joiner did not prove it holds that node's key; "+
			"remove the old node with `shoal node rm` first, or join with a fresh node ID", api.ShortID(e.NodeID))}
}

// AdmitJoinID decides whether a joiner may have the node ID it asks for,
// and returns the serials to revoke when it may. An ID the cluster does not
// know (no node record, not in the Raft configuration) is the joiner's own
// fresh random ID: admitted. An ID the cluster knows belongs to a node that
// may be down but still holds a vote, labels and tasks: it is admitted only
// when the joiner proves it is that node — its old certificate from this
// cluster and a CSR signed by the same key (pki.VerifyRejoin), the key the
// record was certified for (its CertKey, when it has one; else an expired
// certificate must be the record's own) — and never
// while that node is alive. The old serials are then revoked. A failed
// proof is an *IDTakenError.
//
// Why the record's key: VerifyRejoin accepts an expired certificate (a
// node away for long still holds its key) unless it is revoked, and a
// revoked serial leaves the list once its certificate has expired
// (consensus/fsm TrimRevoked). A node keeps its key across renewals, so
// only a certificate of another membership of the ID has another key — one
// the node gave up when it was removed and joined afresh — and it must
// not take the record of the membership that followed.
func AdmitJoinID(in JoinClaim, c *consensus.ClusterState, isRevoked func(serial string) bool) ([]string, error) {
	req, old := in.Req, in.Record
	known := old != nil || in.Leader || in.InRaft
	if !known {
		return nil, nil
	}
	if old != nil && old.Status == api.NodeReady && in.Alive || in.Leader {
		return nil, &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("node %s is already a live member of this cluster", api.ShortID(req.NodeID))}
	}
	if len(req.OldCertPEM) == 0 && old != nil && pki.VerifyRetriedJoin(req.CSR, req.NodeID, old.CertKey) == nil {
		// The same joiner again: its earlier join was applied but the reply
		// never reached it. The certificate it never got is revoked.
		var revoke []string
		for _, s := range []string{old.CertSerial, old.PendingCertSerial} {
			if s != "" {
				revoke = append(revoke, s)
			}
		}
		return revoke, nil
	}
	roots, err := pki.ParseCertsPEM(TrustBundle(c))
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	serial, err := pki.VerifyRejoin(req.OldCertPEM, req.CSR, req.NodeID, roots, isRevoked)
	if err != nil {
		return nil, &IDTakenError{NodeID: req.NodeID, Err: err}
	}
	switch {
	case old != nil && old.CertKey != "":
		if err := pki.VerifyRetriedJoin(req.CSR, req.NodeID, old.CertKey); err != nil {
			return nil, &IDTakenError{NodeID: req.NodeID, Err: err}
		}
	case old != nil && old.CertSerial != "" && serial != old.CertSerial:
		// A record from before CertKey: an expired certificate of the ID
		// other than the record's proves nothing. Every other serial of
		// the ID was revoked when the record moved on (a renewal, a
		// re-join, a removal), and a revoked serial leaves the list once
		// its certificate has expired — one of unknown expiry too, now
		// (UnknownBound) — so an earlier membership's certificate (a key
		// the ID gave up when it was removed) passes VerifyRejoin again.
		now := in.Now
		if now.IsZero() {
			now = time.Now()
		}
		if end, err := pki.CertExpiry(req.OldCertPEM); err != nil || !now.Before(end) {
			return nil, &IDTakenError{NodeID: req.NodeID, Err: fmt.Errorf("expired certificate %s is not the one node %s's record holds (%s)", serial, api.ShortID(req.NodeID), old.CertSerial)}
		}
	}
	revoke := []string{serial}
	if old != nil {
		// The record's certificate, and a renewed one it never confirmed.
		for _, s := range []string{old.CertSerial, old.PendingCertSerial} {
			if s != "" && s != serial {
				revoke = append(revoke, s)
			}
		}
	}
	return revoke, nil
}

// JoinRecord is the command that records an admitted joiner, revoking the
// serials of a re-joining ID in the same entry.
func JoinRecord(n api.Node, revoke []string) command.Command {
	if len(revoke) == 0 {
		return &command.UpsertNode{Node: n}
	}
	b := &command.Batch{}
	for _, s := range revoke {
		b.Commands = append(b.Commands, &command.RevokeCert{Serial: s})
	}
	b.Commands = append(b.Commands, &command.UpsertNode{Node: n})
	return b
}

// JoinKey returns the key a joiner's CSR is signed with: the key of a
// certificate left in DATA/cluster/pki by an earlier membership (then the
// certificate goes along as proof for a re-join under the same ID), or a
// pending one (PendingJoinKeyFile under dataDir).
func JoinKey(dataDir, clusterDir, nodeID string) (*ecdsa.PrivateKey, []byte, error) {
	if certPEM, keyPEM, err := pki.LoadKeyPair(PKIDir(clusterDir)); err == nil {
		if key, err := pki.ParseKeyPEM(keyPEM); err == nil {
			if cert, err := pki.ParseCertPEM(certPEM); err == nil && cert.Subject.CommonName == nodeID && key.PublicKey.Equal(cert.PublicKey) {
				return key, certPEM, nil
			}
		}
	}
	key, err := pendingJoinKey(dataDir)
	return key, nil, err
}

// PendingJoinKeyFile holds a joiner's key until a join succeeds, outside
// DATA/cluster (which a failed join removes): a join whose reply was lost
// has been applied on the leader, and only a retry with the same key can
// prove it is the same joiner (pki.VerifyRetriedJoin).
const PendingJoinKeyFile = "join-key.pem"

// pendingJoinKey loads the pending join key, or makes and stores one.
func pendingJoinKey(dataDir string) (*ecdsa.PrivateKey, error) {
	path := filepath.Join(dataDir, PendingJoinKeyFile)
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
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("store pending join key: %w", err)
	}
	if err := atomicfile.WriteFile(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("store pending join key: %w", err)
	}
	return key, nil
}
