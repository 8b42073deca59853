package joining

// The joiner's side of `shoal join`. A joining node has nothing but the
// token: it pins the cluster CA by the fingerprint in the token, proves it
// knows the secret, and gets back a certificate signed by the leader, the
// CA, the gossip keyring and a few peers to gossip with. Nothing is written
// on the joining node until the leader has said yes, and nothing stays
// behind when a step after that fails: DATA/cluster goes as a whole.

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/api/atomicfile"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/clusterport"
	"github.com/shoal-org/shoal/node/epoch"
	"github.com/shoal-org/shoal/node/keyring"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/revocation"
	"github.com/shoal-org/shoal/node/wire"
)

// DefaultPort is the cluster port a join address without one gets.
const DefaultPort = "2377"

// joinTimeout bounds the join RPC and the wait for the replica after it.
const joinTimeout = 20 * time.Second

// ConnectTimeout bounds one connect and TLS handshake of a join to the
// leader's cluster port (the agent's Call uses it). A leader admitting many
// nodes at once on a loaded machine (100 agents joining together, issue 10)
// answers its handshakes late; the members' one second made a quarter of
// those joins fail with "i/o timeout" and the user retry by hand.
const ConnectTimeout = 4 * time.Second

// Pauses between two join calls whose connect timed out (callPatiently).
const (
	connectRetryFirst = 250 * time.Millisecond
	connectRetryMax   = 2 * time.Second
)

// Self is this node as a join request and its state record describe it.
type Self struct {
	NodeID      string
	Hostname    string
	Addr        string // the advertised address
	ClusterPort int
	GossipPort  int
}

// ClusterFile is DATA/cluster/cluster.json; written last, its presence
// marks the cluster state complete.
type ClusterFile struct {
	ClusterID string `json:"cluster_id"`
}

// ClusterDir is where a node's cluster state lives under its data dir;
// `leave` drops it in one move.
func ClusterDir(dataDir string) string { return filepath.Join(dataDir, "cluster") }

// Joiner is the joining node's side. The agent builds one per join; it
// holds no state of its own between calls. The caller serialises joins
// (and init and leave) and checks that the node is in no cluster yet.
type Joiner struct {
	Self    Self
	DataDir string
	// Key returns the key the certificate is requested for (kept in
	// DATA/join-key.pem until the join is done, so a retried join asks
	// for the same key) and the certificate of an earlier membership, if
	// any (node/keyring).
	Key func() (*ecdsa.PrivateKey, []byte, error)
	// Call makes one RPC to addr with cfg (the agent's caller).
	Call func(ctx context.Context, addr string, cfg *tls.Config, method string, body, out any) error
	// Start starts the cluster half from the files the join wrote, with
	// the gossip peers of the reply; Store then returns its replica.
	Start func(peers []string) error
	Store func() (*consensus.Store, error)
	Log   *slog.Logger
}

// Join asks the cluster at req.Addr to admit this node and, once it has,
// writes the cluster files and starts the cluster half. It returns once
// the replica shows this node as the leader admitted it (or after
// joinTimeout), so `node ls` right after join is complete.
func (j *Joiner) Join(ctx context.Context, req api.JoinRequest) error {
	tok, err := pki.ParseToken(strings.TrimSpace(req.Token))
	if err != nil {
		return fmt.Errorf("invalid join token: %w", err)
	}
	addr := DialAddr(req.Addr)
	pending := filepath.Join(j.DataDir, keyring.PendingJoinKeyFile)
	_, statErr := os.Stat(pending)
	hadPending := statErr == nil
	key, oldCert, err := j.Key()
	if err != nil {
		return err
	}
	csr, err := pki.NewCSR(key, j.Self.NodeID)
	if err != nil {
		return err
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		return err
	}
	jreq := wire.JoinRequest{
		Secret: tok.Secret, CSR: csr, NodeID: j.Self.NodeID, Hostname: j.Self.Hostname,
		Addr: j.Self.Addr, ClusterPort: j.Self.ClusterPort, GossipPort: j.Self.GossipPort,
		Resources: HostResources(), OldCertPEM: oldCert,
	}
	var resp wire.JoinResponse
	cctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	if err := j.callPatiently(cctx, addr, pki.JoinTLS(tok.CAFingerprint), jreq, &resp); err != nil {
		// A refusal (or a request that never left) admitted nothing, so no
		// retry needs this key: a key made for this attempt goes, and a
		// refused join leaves the data dir as it was (DESIGN.md, Security).
		if !hadPending && notAdmitted(err) {
			_ = os.Remove(pending)
		}
		return Explain(addr, err)
	}
	// Nothing is written unless the answer is for this token's cluster.
	if err := keyring.CheckJoinReply(tok, j.Self.NodeID, keyPEM, &resp); err != nil {
		return fmt.Errorf("join %s: %w", addr, err)
	}
	dir := ClusterDir(j.DataDir)
	bundle := append(append([]byte{}, resp.CAPEM...), resp.PrevCAPEM...)
	if err := pki.WriteTrust(keyring.PKIDir(dir), bundle, resp.CrossPEM); err != nil {
		_ = os.RemoveAll(dir)
		return err
	}
	if err := WriteClusterFiles(dir, resp.ClusterID, resp.CertPEM, keyPEM, bundle, resp.GossipKeys, resp.Peers); err != nil {
		return err
	}
	if resp.Epoch > 0 {
		if err := epoch.Write(dir, resp.Epoch); err != nil {
			_ = os.RemoveAll(dir)
			return err
		}
	}
	if resp.Index > 0 {
		if err := errors.Join(revocation.WriteIndexFile(filepath.Join(dir, revocation.JoinIndexFile), resp.Index),
			revocation.WriteIndexFile(filepath.Join(dir, revocation.KeyringIndexFile), resp.Index)); err != nil {
			_ = os.RemoveAll(dir)
			return fmt.Errorf("write cluster files: %w", err)
		}
	}
	if err := j.Start(resp.Peers); err != nil {
		_ = os.RemoveAll(dir)
		return err
	}
	// Wait until the replicated state has caught up far enough to show this
	// node as the leader admitted it now (not a record of a previous
	// membership that the replay passes through).
	store, err := j.Store()
	if err != nil {
		return err
	}
	for cctx.Err() == nil {
		if n, err := store.Node(j.Self.NodeID); err == nil && n.Status == api.NodeReady && revocation.ReplicaCurrent(store.Index(), resp.Index) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The key now lives with the certificate; a later join starts afresh.
	_ = os.Remove(filepath.Join(j.DataDir, keyring.PendingJoinKeyFile))
	j.Log.Info("joined cluster", "cluster_id", resp.ClusterID, "via", addr)
	return nil
}

// callPatiently makes the join call, and makes it again while the connect
// to addr times out, until ctx ends: a busy leader completes its handshake
// late, and a call that never connected admitted nothing (notAdmitted), so
// asking again is safe. Any other failure (a refusal, a CA that fails the
// token's pin, nothing listening) ends it at once.
func (j *Joiner) callPatiently(ctx context.Context, addr string, cfg *tls.Config, req wire.JoinRequest, out *wire.JoinResponse) error {
	pause := connectRetryFirst
	for {
		err := j.Call(ctx, addr, cfg, wire.MethodJoin, req, out)
		if err == nil || !connectTimedOut(err) || ctx.Err() != nil {
			return err
		}
		j.Log.Info("the cluster port did not complete the handshake in time; asking again", "addr", addr, "err", err)
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		pause = min(2*pause, connectRetryMax)
	}
}

// connectTimedOut reports whether err is a connect or handshake that ran
// out of time (clusterport.DialError wrapping a timeout).
func connectTimedOut(err error) bool {
	var ne net.Error
	return clusterport.IsDialError(err) && errors.As(err, &ne) && ne.Timeout()
}

// notAdmitted reports whether a failed join call certainly admitted
// nothing: the leader refused it, the server's CA failed the token's pin,
// or the connection was never made. A timeout or a lost reply may hide an
// admission, whose retry must prove itself with the same key; so may a
// "not the leader" answer, which is also what a leader says when it lost
// its leadership while committing the join's record (the record may be
// applied). Before, that answer dropped the key, and every later join of
// the node was refused as an impostor of its own ID until `node rm`.
func notAdmitted(err error) bool {
	var re *wire.Error
	if errors.As(err, &re) {
		return re.Code != wire.CodeNotLeader
	}
	return errors.Is(err, pki.ErrCAMismatch) || clusterport.IsDialError(err)
}

// DialAddr is the address a join dials: addr, with DefaultPort when it
// names no port.
func DialAddr(addr string) string {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return net.JoinHostPort(addr, DefaultPort)
	}
	return addr
}

// Explain turns a failed join RPC into what the user must know: a refusal
// with the leader's reason, a token for another cluster, nothing listening,
// something that is not a Shoal node; anything else wrapped with addr.
func Explain(addr string, err error) error {
	var re *wire.Error
	switch {
	case errors.As(err, &re) && re.Code == wire.CodeNotLeader:
		return fmt.Errorf("join %s: the cluster changed leader during the join (%s); run the same join again: it keeps this node's key", addr, re.Msg)
	case errors.As(err, &re):
		return fmt.Errorf("join refused by %s: %s", addr, re.Msg)
	case errors.Is(err, pki.ErrCAMismatch):
		return fmt.Errorf("join %s: the node there belongs to a different cluster than this token (CA fingerprint mismatch)", addr)
	case strings.Contains(err.Error(), "connection refused"):
		return fmt.Errorf("join %s: connection refused: no shoal agent in a cluster listens there", addr)
	case clusterport.IsDialError(err) && (strings.Contains(err.Error(), "tls:") || strings.Contains(err.Error(), "first record") || strings.Contains(err.Error(), "EOF")):
		return fmt.Errorf("join %s: not a Shoal cluster node (TLS handshake failed: %v)", addr, err)
	default:
		return fmt.Errorf("join %s: %w", addr, err)
	}
}

// WriteClusterFiles writes a new member's cluster state into dir
// (DATA/cluster): its key pair and the CA bundle, the gossip keyring, the
// gossip peers (if any) and, last, cluster.json. On failure dir is removed.
func WriteClusterFiles(dir, clusterID string, certPEM, keyPEM, caPEM []byte, keys [][]byte, peers []string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	fail := func(err error) error {
		_ = os.RemoveAll(dir)
		return fmt.Errorf("write cluster files: %w", err)
	}
	if err := pki.WriteKeyPair(filepath.Join(dir, "pki"), certPEM, keyPEM); err != nil {
		return fail(err)
	}
	if err := pki.WriteCACert(filepath.Join(dir, "pki"), caPEM); err != nil {
		return fail(err)
	}
	if err := atomicfile.WriteJSON(filepath.Join(dir, "keyring.json"), keys); err != nil {
		return fail(err)
	}
	if len(peers) > 0 {
		if err := atomicfile.WriteJSON(filepath.Join(dir, "peers.json"), peers); err != nil {
			return fail(err)
		}
	}
	// cluster.json last: its presence marks the cluster state complete.
	if err := atomicfile.WriteJSON(filepath.Join(dir, "cluster.json"), ClusterFile{ClusterID: clusterID}); err != nil {
		return fail(err)
	}
	return nil
}

// ClusterFiles is a member's cluster state as WriteClusterFiles left it.
type ClusterFiles struct {
	ClusterID string
	Cert      tls.Certificate
	Pool      *x509.CertPool // the trusted CAs
	Keys      [][]byte       // the gossip keyring
	Peers     []string       // gossip peers last seen; none when unreadable
}

// ReadClusterFiles reads the cluster state in dir (DATA/cluster) that a
// cluster instance starts from.
func ReadClusterFiles(dir string) (ClusterFiles, error) {
	var f ClusterFiles
	var cf ClusterFile
	if err := readJSONFile(filepath.Join(dir, "cluster.json"), &cf); err != nil {
		return f, fmt.Errorf("read cluster state: %w", err)
	}
	f.ClusterID = cf.ClusterID
	var err error
	if f.Cert, f.Pool, err = pki.LoadNodeTLS(filepath.Join(dir, "pki")); err != nil {
		return f, fmt.Errorf("load node certificate: %w", err)
	}
	if err := readJSONFile(filepath.Join(dir, "keyring.json"), &f.Keys); err != nil {
		return f, fmt.Errorf("read gossip keyring: %w", err)
	}
	_ = readJSONFile(filepath.Join(dir, "peers.json"), &f.Peers)
	return f, nil
}

func readJSONFile(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// SelfNode is the state record of this node as init describes it (a
// joiner's is AdmittedNode, made by the leader).
func SelfNode(s Self, res api.Resources, now time.Time, serial string) api.Node {
	return api.Node{
		ID:           s.NodeID,
		Hostname:     s.Hostname,
		Addr:         s.Addr,
		ClusterPort:  s.ClusterPort,
		GossipPort:   s.GossipPort,
		Status:       api.NodeReady,
		Availability: api.AvailabilityActive,
		Labels:       map[string]string{},
		Resources:    res,
		CertSerial:   serial,
		CreatedAt:    now,
		UpdatedAt:    now,
		// Ready since the cluster began (BootstrapCluster carries the
		// whole node, as UpsertNode does: no protocol level).
		StatusChangedAt: now,
	}
}

// HostResources is what this host offers: its CPUs and MemTotal.
func HostResources() api.Resources {
	r := api.Resources{NanoCPUs: int64(goruntime.NumCPU()) * 1e9}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		defer f.Close()
		s := bufio.NewScanner(f)
		for s.Scan() {
			var kb int64
			if n, _ := fmt.Sscanf(s.Text(), "MemTotal: %d kB", &kb); n == 1 {
				r.MemoryBytes = kb * 1024
				break
			}
		}
	}
	return r
}
