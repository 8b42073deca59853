package node

import (
	"crypto/x509"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/instance"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/wire"
)

// replica is a state store built through the FSM, as Raft would build it.
type replica struct {
	t     *testing.T
	fsm   *fsm.FSM
	store *consensus.Store
	idx   uint64
}

func newReplica(t *testing.T) *replica {
	s := consensus.NewStore()
	r := &replica{t: t, fsm: fsm.New(s), store: s}
	r.apply(command.BootstrapCluster{
		Cluster: consensus.ClusterState{ClusterID: "c1", GossipKeys: [][]byte{make([]byte, 32)},
			ClusterCIDR: "10.42.0.0/16", VIPCIDR: "10.43.0.0/16", TokenSecretHash: "x"},
		Node: api.Node{ID: "boot", Hostname: "boot", Addr: "127.0.0.1", Status: api.NodeReady, CertSerial: "b0"},
	})
	return r
}

func (r *replica) apply(cmd command.Command) {
	r.t.Helper()
	r.idx++
	if res := r.fsm.ApplyCommand(r.idx, cmd); res.Err != nil {
		r.t.Fatalf("apply %T: %v", cmd, res.Err)
	}
}

func (r *replica) node(id, serial string) {
	r.t.Helper()
	r.apply(command.UpsertNode{Node: api.Node{ID: id, Hostname: id, Addr: "127.0.0.1", ClusterPort: 1,
		Status: api.NodeReady, CertSerial: serial}})
}

// TestAskRemoved: the asking side trusts a positive answer only from a
// witness its own replica knows by that certificate.
func TestAskRemoved(t *testing.T) {
	s := startRPCServer(t)
	srvReplica := newReplica(t)
	asker := newTestAgent(t)
	// The asker's own certificate, on disk as startCluster would find it.
	certPEM, keyPEM, serial, err := s.pki.ca.IssueNodeCert(asker.id.NodeID, []net.IP{net.ParseIP("127.0.0.1")}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(instance.Dir(asker.cfg.DataDir), "pki")
	if err := pki.WriteKeyPair(dir, certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteCACert(dir, s.pki.ca.CertPEM()); err != nil {
		t.Fatal(err)
	}
	srvReplica.node(asker.id.NodeID, serial)
	s.a.cl = &instance.Instance{Host: s.a.host(), Store: srvReplica.store}

	askerReplica := newReplica(t)
	askerReplica.node(asker.id.NodeID, serial)
	asker.cl = &instance.Instance{Host: asker.host(), Store: askerReplica.store}

	ask := func() bool {
		ctx := rpcCtx(t)
		_, removed := asker.cl.AskRemoved(ctx, []string{s.addr})
		return removed
	}
	if ask() {
		t.Fatal("removed while the server knows the node")
	}
	srvReplica.apply(command.RemoveNode{ID: asker.id.NodeID, Now: time.Now()})
	if ask() {
		t.Fatal("a positive answer from a server the asker's replica does not know counted")
	}
	// The server's certificate is the one startRPCServer presents.
	askerReplica.node(s.a.id.NodeID, serialOf(t, s))
	if !ask() {
		t.Fatal("a positive answer from a known member did not count")
	}
	askerReplica.node(s.a.id.NodeID, "not-its-serial")
	if ask() {
		t.Fatal("a positive answer from another certificate than the replica's counted")
	}
}

// serialOf returns the serial of the certificate the server presents.
func serialOf(t *testing.T, s *rpcServer) string {
	t.Helper()
	var serial string
	cfg := pki.AnonymousClientTLS(s.pki.ca.Pool(), func(leaf *x509.Certificate) error {
		serial = pki.Serial(leaf)
		return nil
	})
	if err := instance.Call(rpcCtx(t), s.addr, cfg, wire.MethodPing, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	return serial
}
