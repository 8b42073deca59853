package node

// Init, join and leave. A joining node has nothing but the token: it pins
// the cluster CA by the fingerprint in the token, proves it knows the secret,
// and gets back a certificate signed by the leader, the CA, the gossip
// keyring and a few peers to gossip with. Nothing is written on the joining
// node until the leader has said yes.

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	goruntime "runtime"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/clusterport"
	"github.com/shoal-org/shoal/node/epoch"
	"github.com/shoal-org/shoal/node/keyring"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/wire"
)

// initCluster bootstraps a new cluster with this node as its only voter.
// seed is the snapshot file of `init --from-snapshot` (nil otherwise): the
// new cluster keeps its address pools; the caller then restores it
// (snapshot.go).
func (a *Agent) initCluster(ctx context.Context, seed *consensus.SnapshotFile) (api.InitResponse, error) {
	a.joinMu.Lock()
	defer a.joinMu.Unlock()
	if cl, err := a.clusterOrErr(); err == nil {
		return api.InitResponse{}, fmt.Errorf("%w %s: run `shoal leave` first", ErrAlreadyInCluster, cl.id)
	}
	now := time.Now().UTC()
	clusterID := newID()
	ca, err := pki.NewCA(clusterID, now)
	if err != nil {
		return api.InitResponse{}, fmt.Errorf("create cluster CA: %w", err)
	}
	certPEM, keyPEM, serial, err := ca.IssueNodeCertFor(a.id.NodeID, []net.IP{net.ParseIP(a.cfg.AdvertiseAddr)}, now, a.cfg.CertLifetime)
	if err != nil {
		return api.InitResponse{}, fmt.Errorf("issue node certificate: %w", err)
	}
	gossipKey := make([]byte, 32)
	if _, err := rand.Read(gossipKey); err != nil {
		return api.InitResponse{}, err
	}
	kek := pki.NewKEK()
	record, err := keyring.SealedRecord(clusterID, ca, pki.NewSecret(), kek)
	if err != nil {
		return api.InitResponse{}, err
	}
	if err := a.writeClusterFiles(clusterID, certPEM, keyPEM, ca.CertPEM(), [][]byte{gossipKey}, nil); err != nil {
		return api.InitResponse{}, err
	}
	if err := a.saveKEK(kek); err != nil {
		_ = os.RemoveAll(clusterDir(a.cfg.DataDir))
		return api.InitResponse{}, err
	}
	node := a.selfNode(now, serial)
	node.Voter = true
	record.GossipKeys = [][]byte{gossipKey}
	record.ClusterCIDR = a.cfg.ClusterCIDR
	record.VIPCIDR = a.cfg.VIPCIDR
	if cidr, vip := snapshotPools(seed); cidr != "" && vip != "" {
		record.ClusterCIDR, record.VIPCIDR = cidr, vip
	}
	record.VoterTarget = 1
	record.CreatedAt = now
	b := &bootstrapInfo{cluster: record, node: node}
	if err := a.startCluster(a.ctx, startOpts{bootstrap: b}); err != nil {
		_ = os.RemoveAll(clusterDir(a.cfg.DataDir))
		return api.InitResponse{}, err
	}
	a.log.Info("cluster initialised", "cluster_id", clusterID)
	return a.tokenResponse(ctx)
}

// tokenResponse builds the join command from the replicated cluster record.
func (a *Agent) tokenResponse(ctx context.Context) (api.InitResponse, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return api.InitResponse{}, err
	}
	// A token read from a replica behind a rotation (or a CA rotation) made
	// through another node would be refused at once: read the record as of
	// now.
	if err := a.syncReplica(ctx, cl); err != nil {
		return api.InitResponse{}, fmt.Errorf("read the join token: %w", err)
	}
	c := cl.store.Cluster()
	if c == nil {
		return api.InitResponse{}, errors.New("the cluster record is not replicated to this node yet")
	}
	fp, err := pki.FingerprintPEM(c.CACertPEM)
	if err != nil {
		return api.InitResponse{}, err
	}
	secret, err := a.currentSecret(ctx, cl, c)
	if err != nil {
		return api.InitResponse{}, err
	}
	tok := pki.FormatToken(fp, secret)
	return api.InitResponse{
		ClusterID:   c.ClusterID,
		NodeID:      a.id.NodeID,
		Token:       tok,
		JoinCommand: fmt.Sprintf("shoal join --token %s %s", tok, a.cfg.clusterAddr()),
	}, nil
}

// rotateToken replaces the join secret; the old token stops working at once.
func (a *Agent) rotateToken(ctx context.Context) (api.InitResponse, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return api.InitResponse{}, err
	}
	if err := a.localWriteAllowed(cl); err != nil {
		return api.InitResponse{}, err
	}
	if err := a.rotateSecret(ctx, cl); err != nil {
		return api.InitResponse{}, err
	}
	return a.tokenResponse(ctx)
}

func (a *Agent) writeClusterFiles(clusterID string, certPEM, keyPEM, caPEM []byte, keys [][]byte, peers []string) error {
	dir := clusterDir(a.cfg.DataDir)
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
	if err := writeJSONFile(filepath.Join(dir, "keyring.json"), keys); err != nil {
		return fail(err)
	}
	if len(peers) > 0 {
		if err := writeJSONFile(filepath.Join(dir, "peers.json"), peers); err != nil {
			return fail(err)
		}
	}
	// cluster.json last: its presence marks the cluster state complete.
	if err := writeJSONFile(filepath.Join(dir, "cluster.json"), clusterFile{ClusterID: clusterID}); err != nil {
		return fail(err)
	}
	return nil
}

// selfNode describes this node for the state store.
func (a *Agent) selfNode(now time.Time, serial string) api.Node {
	return api.Node{
		ID:           a.id.NodeID,
		Hostname:     a.id.Hostname,
		Addr:         a.cfg.AdvertiseAddr,
		ClusterPort:  a.cfg.ClusterPort,
		GossipPort:   a.cfg.GossipPort,
		Status:       api.NodeReady,
		Availability: api.AvailabilityActive,
		Labels:       map[string]string{},
		Resources:    hostResources(),
		CertSerial:   serial,
		CreatedAt:    now,
		UpdatedAt:    now,
	}
}

func hostResources() api.Resources {
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

// joinCluster is `shoal join` on this node.
func (a *Agent) joinCluster(ctx context.Context, req api.JoinRequest) error {
	a.joinMu.Lock()
	defer a.joinMu.Unlock()
	if cl, err := a.clusterOrErr(); err == nil {
		return fmt.Errorf("%w %s: run `shoal leave` first", ErrAlreadyInCluster, cl.id)
	}
	tok, err := pki.ParseToken(strings.TrimSpace(req.Token))
	if err != nil {
		return fmt.Errorf("invalid join token: %w", err)
	}
	addr := req.Addr
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(addr, "2377")
	}
	key, oldCert, err := a.joinKey()
	if err != nil {
		return err
	}
	csr, err := pki.NewCSR(key, a.id.NodeID)
	if err != nil {
		return err
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		return err
	}
	jreq := wire.JoinRequest{
		Secret: tok.Secret, CSR: csr, NodeID: a.id.NodeID, Hostname: a.id.Hostname,
		Addr: a.cfg.AdvertiseAddr, ClusterPort: a.cfg.ClusterPort, GossipPort: a.cfg.GossipPort,
		Resources: hostResources(), OldCertPEM: oldCert,
	}
	var resp wire.JoinResponse
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := callRPC(cctx, addr, pki.JoinTLS(tok.CAFingerprint), wire.MethodJoin, jreq, &resp, nil); err != nil {
		return explainJoinError(addr, err)
	}
	// Nothing is written unless the answer is for this token's cluster.
	if err := keyring.CheckJoinReply(tok, a.id.NodeID, keyPEM, &resp); err != nil {
		return fmt.Errorf("join %s: %w", addr, err)
	}
	bundle := append(append([]byte{}, resp.CAPEM...), resp.PrevCAPEM...)
	if err := pki.WriteTrust(pkiDir(a.cfg.DataDir), bundle, resp.CrossPEM); err != nil {
		_ = os.RemoveAll(clusterDir(a.cfg.DataDir))
		return err
	}
	if err := a.writeClusterFiles(resp.ClusterID, resp.CertPEM, keyPEM, bundle, resp.GossipKeys, resp.Peers); err != nil {
		return err
	}
	if resp.Epoch > 0 {
		if err := epoch.Write(clusterDir(a.cfg.DataDir), resp.Epoch); err != nil {
			_ = os.RemoveAll(clusterDir(a.cfg.DataDir))
			return err
		}
	}
	if resp.Index > 0 {
		dir := clusterDir(a.cfg.DataDir)
		if err := errors.Join(writeIndexFile(filepath.Join(dir, joinIndexFile), resp.Index),
			writeIndexFile(filepath.Join(dir, keyringIndexFile), resp.Index)); err != nil {
			_ = os.RemoveAll(dir)
			return fmt.Errorf("write cluster files: %w", err)
		}
	}
	if err := a.startCluster(a.ctx, startOpts{joinPeers: resp.Peers}); err != nil {
		_ = os.RemoveAll(clusterDir(a.cfg.DataDir))
		return err
	}
	// Wait until the replicated state has caught up far enough to show this
	// node as the leader admitted it now (not a record of a previous
	// membership that the replay passes through), so `node ls` right after
	// join is complete.
	cl, err := a.clusterOrErr()
	if err != nil {
		return err
	}
	for cctx.Err() == nil {
		if n, err := cl.store.Node(a.id.NodeID); err == nil && n.Status == api.NodeReady && replicaCurrent(cl.store.Index(), resp.Index) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The key now lives with the certificate; a later join starts afresh.
	_ = os.Remove(filepath.Join(a.cfg.DataDir, keyring.PendingJoinKeyFile))
	a.log.Info("joined cluster", "cluster_id", resp.ClusterID, "via", addr)
	return nil
}

// explainJoinError turns transport failures into what the user must know.
func explainJoinError(addr string, err error) error {
	var re *wire.Error
	switch {
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

// handleJoinRPC admits a node. Any node may receive it; it is forwarded to
// the leader, which checks the secret, signs the certificate, records the
// node and adds it to Raft as a non-voter.
func (a *Agent) handleJoinRPC(ctx context.Context, req wire.JoinRequest) (*wire.JoinResponse, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, &wire.Error{Code: wire.CodeRefused, Msg: "this node is not part of a cluster"}
	}
	if !cl.raft.IsLeader() {
		var resp wire.JoinResponse
		err := a.forwardToLeader(ctx, cl, func(ctx context.Context, addr string) error {
			return callRPC(ctx, addr, cl.client, wire.MethodJoin, req, &resp, nil)
		})
		if err != nil {
			return nil, err
		}
		return &resp, nil
	}
	c := cl.store.Cluster()
	if c == nil {
		return nil, errors.New("the cluster record is not replicated to this node yet")
	}
	if !keyring.VerifyJoinSecret(c, req.Secret) {
		return nil, &wire.Error{Code: wire.CodeRefused, Msg: "invalid join token: wrong or rotated secret (get the current one with `shoal token`)"}
	}
	ip := net.ParseIP(req.Addr)
	if ip == nil || req.NodeID == "" || req.Hostname == "" || req.ClusterPort <= 0 || req.GossipPort <= 0 {
		return nil, &wire.Error{Code: wire.CodeRefused, Msg: "join request is missing node ID, hostname, address or ports"}
	}
	revoke, err := a.admitJoinID(cl, c, req)
	if err != nil {
		return nil, err
	}
	ca, err := a.clusterCA(c)
	if err != nil {
		return nil, &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("the leader cannot sign certificates yet: %v", err)}
	}
	now := time.Now().UTC()
	certPEM, serial, err := ca.SignCSR(req.CSR, req.NodeID, []net.IP{ip}, now, a.cfg.CertLifetime)
	if err != nil {
		return nil, &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("certificate request refused: %v", err)}
	}
	keyFP, err := pki.CSRKeyFingerprint(req.CSR)
	if err != nil {
		return nil, &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("certificate request refused: %v", err)}
	}
	n := api.Node{
		ID: req.NodeID, Hostname: req.Hostname, Addr: req.Addr,
		ClusterPort: req.ClusterPort, GossipPort: req.GossipPort,
		Status: api.NodeReady, Availability: api.AvailabilityActive, Labels: map[string]string{},
		Resources: req.Resources, CertSerial: serial, CertKey: keyFP, CreatedAt: now, UpdatedAt: now,
	}
	if old, err := cl.store.Node(req.NodeID); err == nil {
		n.Labels = old.Labels
		n.Availability = old.Availability
		n.Role = old.Role
		n.CreatedAt = old.CreatedAt
	}
	if _, err := cl.raft.Apply(ctx, keyring.JoinRecord(n, revoke)); err != nil {
		return nil, fmt.Errorf("record node: %w", err)
	}
	raftAddr := net.JoinHostPort(req.Addr, strconv.Itoa(req.ClusterPort))
	actx, cancel := context.WithTimeout(ctx, joinAdmitWait)
	err = cl.raft.AddNonvoter(actx, req.NodeID, raftAddr)
	cancel()
	if err != nil && !admitLater(err) {
		return nil, fmt.Errorf("add node to raft: %w", err)
	}
	if err != nil {
		a.log.Info("node recorded; its raft admission waits behind other configuration changes (the leader loop admits it)",
			"node_id", req.NodeID, "err", err)
	}
	// The keyring as of an index past the node's record, both from one
	// view (wire.JoinResponse.Index).
	snap := cl.store.Snapshot()
	keys := c.GossipKeys
	if sc := snap.Cluster(); sc != nil {
		keys = sc.GossipKeys
	}
	peers := cl.members.PeerAddrs()
	peers = append(peers, a.selfGossipAddr())
	a.log.Info("node joined", "node_id", req.NodeID, "hostname", req.Hostname, "addr", req.Addr)
	return &wire.JoinResponse{
		ClusterID: c.ClusterID, CertPEM: certPEM, CAPEM: c.CACertPEM,
		GossipKeys: keys, Peers: dedupe(peers, ""), Epoch: cl.fence.Local(),
		PrevCAPEM: c.PrevCACertPEM, CrossPEM: c.CACrossPEM, Index: snap.Index(),
	}, nil
}

// joinAdmitWait bounds how long a join waits for the node's raft
// admission. Raft takes one configuration change at a time, each after the
// previous one committed, so a storm of joins (100 agents at once) queues
// behind each other; past the bound the join answers anyway, since the
// node's record is committed and the leader loop admits every recorded,
// live node missing from raft (admitMissing). Waiting longer only made
// joins time out and retry, which loaded the leader further (issue 10).
const joinAdmitWait = 3 * time.Second

// admitLater reports whether a failed raft admission of a recorded node
// can be left to the leader loop: the change timed out in raft's queue or
// the join's wait for it ran out. A lost leadership is not: the record may
// not be committed, and the joiner must ask the new leader.
func admitLater(err error) bool {
	return errors.Is(err, consensus.ErrTimeout) || errors.Is(err, context.DeadlineExceeded)
}

func (a *Agent) isAlive(cl *cluster, id string) bool {
	if id == a.id.NodeID {
		return true
	}
	_, ok := cl.members.AliveSet()[id]
	return ok
}

// forwardToLeader runs call against the current leader, retrying across
// leader changes until the write timeout.
func (a *Agent) forwardToLeader(ctx context.Context, cl *cluster, call func(ctx context.Context, addr string) error) error {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.WriteTimeout)
	defer cancel()
	var last error
	for {
		_, addr := cl.raft.Leader()
		if addr != "" {
			err := call(ctx, addr)
			if err == nil {
				return nil
			}
			var re *wire.Error
			if errors.As(err, &re) && re.Code != wire.CodeNotLeader {
				return err // an answer, not a transport problem
			}
			last = err
		}
		select {
		case <-ctx.Done():
			return a.noQuorumError(cl, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// leave takes this node out of its cluster: the leader hands a voter's vote
// to another node first, then removes it; this node then drops its cluster
// state.
func (a *Agent) leave(ctx context.Context) error {
	a.joinMu.Lock()
	defer a.joinMu.Unlock()
	cl, err := a.clusterOrErr()
	if err != nil {
		return err
	}
	servers, _ := cl.raft.Servers()
	alone := len(servers) <= 1
	if !alone {
		// A removed node needs no cluster to leave it (node/revocation).
		actx, cancel := context.WithTimeout(ctx, removalAskTimeout)
		by, removed := a.askRemoved(actx, cl, nil)
		cancel()
		if removed {
			return a.resetAfterRemovalLocked(cl, by)
		}
		if cl.raft.IsLeader() {
			if err := cl.raft.TransferLeadership(ctx); err != nil {
				return fmt.Errorf("hand leadership over before leaving: %w", err)
			}
		}
		err := a.forwardToLeader(ctx, cl, func(ctx context.Context, addr string) error {
			err := callRPC(ctx, addr, cl.client, wire.MethodAdmin, wire.AdminRequest{Op: "leave", NodeID: a.id.NodeID}, nil, nil)
			var re *wire.Error
			if err == nil || errors.As(err, &re) {
				return err
			}
			// The leader closes a removed node's connections once the
			// removal is applied (node/revocation), which may be before this
			// node read the answer to its own leave; every retry is then
			// refused for the revoked certificate. The removal question
			// (no certificate needed) tells whether the leave went through.
			actx, cancel := context.WithTimeout(ctx, removalAskTimeout)
			defer cancel()
			if by, removed := a.askRemoved(actx, cl, []string{addr}); removed {
				a.log.Info("leave: the answer was lost, but the cluster says this node is out", "err", err, "told_by", shortID(by))
				return nil
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("leave: %w", err)
		}
	}
	// The cluster rescheduled this node's tasks elsewhere; their containers
	// here go with the rest of the cluster state.
	if err := a.dropCluster(ctx, false); err != nil {
		return err
	}
	a.log.Info("left the cluster")
	return nil
}

// handleAdminRPC runs membership operations that only the leader may do.
func (a *Agent) handleAdminRPC(ctx context.Context, peerID string, req wire.AdminRequest) error {
	cl, err := a.clusterOrErr()
	if err != nil {
		return err
	}
	if !cl.raft.IsLeader() {
		return ErrNotLeader
	}
	switch req.Op {
	case "leave":
		if peerID != req.NodeID {
			return &wire.Error{Code: wire.CodeRefused, Msg: "a node may only remove itself with leave"}
		}
		return a.removeNodeAsLeader(ctx, cl, req.NodeID, true)
	case "remove":
		return a.removeNodeAsLeader(ctx, cl, req.NodeID, req.Force)
	default:
		return fmt.Errorf("unknown admin op %q", req.Op)
	}
}

// removeNodeAsLeader hands over a voter's vote, removes the node from Raft
// and from the state, and revokes its certificate.
func (a *Agent) removeNodeAsLeader(ctx context.Context, cl *cluster, id string, force bool) error {
	n, err := cl.store.Node(id)
	if err != nil {
		return &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("node %s: %v", id, err)}
	}
	if id == a.id.NodeID {
		return &wire.Error{Code: wire.CodeRefused, Msg: "the leader cannot remove itself; run `shoal leave` on it"}
	}
	if !force && n.Status == api.NodeReady && a.isAlive(cl, id) {
		return &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("node %s is ready: run `shoal leave` on it, or use --force", n.Hostname)}
	}
	// Out of Raft first (so the node never sees the entry below and stops
	// its tasks before the other nodes stop routing to them), then out of
	// the state; meanwhile the leader loop must not re-admit it.
	cl.removing.Store(id, struct{}{})
	defer cl.removing.Delete(id)
	servers, err := cl.raft.Servers()
	if err != nil {
		return err
	}
	for _, s := range servers {
		if s.ID == id && s.Voter {
			a.promoteReplacement(ctx, cl, id)
			break
		}
	}
	if err := cl.raft.RemoveServer(ctx, id); err != nil {
		return fmt.Errorf("remove %s from raft: %w", shortID(id), err)
	}
	if err := a.applyRemoval(ctx, cl, &consensus.RemoveNode{ID: id, Now: time.Now().UTC()}); err != nil {
		return fmt.Errorf("remove node record: %w", err)
	}
	a.log.Info("node removed", "node_id", id, "hostname", n.Hostname)
	return nil
}

// promoteReplacement promotes one healthy non-voter so that removing the
// voter `leaving` keeps the number of voters.
func (a *Agent) promoteReplacement(ctx context.Context, cl *cluster, leaving string) {
	servers, err := cl.raft.Servers()
	if err != nil {
		return
	}
	alive := cl.members.AliveSet()
	for _, s := range servers {
		if s.Voter || s.ID == leaving {
			continue
		}
		if _, ok := alive[s.ID]; !ok {
			continue
		}
		if err := cl.raft.AddVoter(ctx, s.ID, s.Addr); err == nil {
			a.log.Info("promoted voter to replace a departing one", "node_id", s.ID, "replaces", leaving)
		}
		return
	}
}
