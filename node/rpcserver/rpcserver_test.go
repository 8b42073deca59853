package rpcserver

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/clusterport"
	"github.com/shoal-org/shoal/node/instance"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/wire"
	"github.com/shoal-org/shoal/node/writes"
)

// errNoCluster stands in for the agent's ErrNoCluster.
var errNoCluster = errors.New("this node is not part of a cluster: run `shoal init` or `shoal join`")

// testPKI is a cluster CA that mints node certificates for loopback.
type testPKI struct {
	t  *testing.T
	ca *pki.CA
}

func newTestPKI(t *testing.T, clusterID string) *testPKI {
	t.Helper()
	ca, err := pki.NewCA(clusterID, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &testPKI{t: t, ca: ca}
}

// node issues a certificate for nodeID and returns it with its serial.
func (p *testPKI) node(nodeID string) (tls.Certificate, string) {
	p.t.Helper()
	certPEM, keyPEM, serial, err := p.ca.IssueNodeCert(nodeID, []net.IP{net.ParseIP("127.0.0.1")}, time.Now())
	if err != nil {
		p.t.Fatal(err)
	}
	cert, err := pki.TLSCertificate(certPEM, keyPEM, p.ca.CertPEM())
	if err != nil {
		p.t.Fatal(err)
	}
	return cert, serial
}

func (p *testPKI) client(nodeID string) *tls.Config {
	cert, _ := p.node(nodeID)
	return pki.ClientTLS(cert, p.ca.Pool())
}

// rpcServer is a Server on the cluster port on loopback, through the real
// mux, whose agent runs the instance in cur (none: errNoCluster).
type rpcServer struct {
	srv  *Server
	cur  atomic.Pointer[instance.Instance]
	addr string
	pki  *testPKI
	done chan error
}

func startRPCServer(t *testing.T) *rpcServer {
	t.Helper()
	s := &rpcServer{pki: newTestPKI(t, "cluster-a"), done: make(chan error, 1)}
	s.srv = &Server{NodeID: "node-a", Current: s.current, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	cert, _ := s.pki.node(s.srv.NodeID)
	srvTLS := pki.ServerTLS(cert, s.pki.ca.Pool(), nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	m := instance.NewMux(ln, srvTLS, slog.New(slog.NewTextHandler(io.Discard, nil)),
		func(c *tls.Conn) { clusterport.Serve(ctx, c, s.srv.Method) }, nil)
	go func() { s.done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-s.done:
			if err != nil {
				t.Errorf("mux.Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("mux.Run did not return after its context ended")
		}
	})
	return s
}

func (s *rpcServer) current() (*instance.Instance, error) {
	if cl := s.cur.Load(); cl != nil {
		return cl, nil
	}
	return nil, errNoCluster
}

func rpcCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestRPCPing(t *testing.T) {
	s := startRPCServer(t)
	for name, cfg := range map[string]*tls.Config{
		"mutual TLS":                 s.pki.client("node-b"),
		"joiner without certificate": pki.JoinTLS(s.pki.ca.Fingerprint()),
	} {
		t.Run(name, func(t *testing.T) {
			var out map[string]string
			if err := instance.Call(rpcCtx(t), s.addr, cfg, wire.MethodPing, nil, &out, nil); err != nil {
				t.Fatalf("ping: %v", err)
			}
			if out["node_id"] != s.srv.NodeID {
				t.Fatalf("ping answered %v, want node_id %s", out, s.srv.NodeID)
			}
		})
	}
}

func TestRPCWithoutCertificateRefused(t *testing.T) {
	s := startRPCServer(t)
	join := pki.JoinTLS(s.pki.ca.Fingerprint())
	for _, method := range []string{wire.MethodApply, wire.MethodAdmin, wire.MethodRejoin, wire.MethodBlob, wire.MethodManifest, wire.MethodLogs, "no-such-method"} {
		t.Run(method, func(t *testing.T) {
			err := instance.Call(rpcCtx(t), s.addr, join, method, map[string]string{"x": "y"}, nil, nil)
			var re *wire.Error
			if !errors.As(err, &re) || re.Code != wire.CodeRefused || !strings.Contains(re.Msg, "certificate is required") {
				t.Fatalf("err = %#v, want a refusal saying a certificate is required", err)
			}
			if writes.Retryable(err) {
				t.Error("a refusal must not be retried")
			}
		})
	}
}

func TestRPCWithCertificate(t *testing.T) {
	s := startRPCServer(t)
	client := s.pki.client("node-b")
	tests := []struct {
		method string
		body   any
		want   string
	}{
		{"no-such-method", nil, `unknown rpc method "no-such-method"`},
		{wire.MethodApply, "not an object", "malformed apply request"},
		{wire.MethodApply, wire.ApplyRequest{Command: []byte(`{}`)}, errNoCluster.Error()},
		{wire.MethodAdmin, wire.AdminRequest{Op: "leave", NodeID: "node-b"}, errNoCluster.Error()},
		{wire.MethodJoin, wire.JoinRequest{NodeID: "x"}, "not part of a cluster"},
		{wire.MethodRejoin, struct{}{}, errNoCluster.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			err := instance.Call(rpcCtx(t), s.addr, client, tt.method, tt.body, nil, nil)
			var re *wire.Error
			if !errors.As(err, &re) || !strings.Contains(re.Msg, tt.want) {
				t.Fatalf("err = %v, want an answer containing %q", err, tt.want)
			}
		})
	}
}

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

// TestRemovalRPC: a caller without a certificate may ask the removal
// question and nothing else; the answer is positive only for a removed
// node's own serial.
func TestRemovalRPC(t *testing.T) {
	s := startRPCServer(t)
	r := newReplica(t)
	r.node("gone", "g1")
	r.node("member", "m1")
	r.apply(command.RemoveNode{ID: "gone", Now: time.Now()})
	anon := pki.AnonymousClientTLS(s.pki.ca.Pool(), nil)

	ask := func(id, serial string) (bool, error) {
		var resp wire.RemovalResponse
		err := instance.Call(rpcCtx(t), s.addr, anon, wire.MethodRemoval, wire.RemovalRequest{NodeID: id, Serial: serial}, &resp, nil)
		return resp.Removed, err
	}
	if _, err := ask("gone", "g1"); err == nil || !strings.Contains(err.Error(), "not part of a cluster") {
		t.Fatalf("a node in no cluster answered: %v", err)
	}
	s.cur.Store(&instance.Instance{Store: r.store})
	for _, tt := range []struct {
		id, serial string
		want       bool
	}{
		{"gone", "g1", true},
		{"gone", "other", false},
		{"member", "m1", false},
		{"never-seen", "n1", false},
	} {
		got, err := ask(tt.id, tt.serial)
		if err != nil || got != tt.want {
			t.Errorf("removed(%s, %s) = %v, %v; want %v", tt.id, tt.serial, got, err, tt.want)
		}
	}
	if _, err := ask("", ""); err == nil || !strings.Contains(err.Error(), "needs a node ID") {
		t.Errorf("empty question: %v", err)
	}
	// The anonymous path opens nothing else.
	for _, method := range []string{wire.MethodApply, wire.MethodAdmin, wire.MethodBlob, wire.MethodLogs} {
		err := instance.Call(rpcCtx(t), s.addr, anon, method, map[string]string{}, nil, nil)
		if err == nil || !strings.Contains(err.Error(), "certificate is required") {
			t.Errorf("%s without a certificate: %v", method, err)
		}
	}
}
