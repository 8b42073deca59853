package node

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/clusterport"
	"github.com/shoal-org/shoal/node/instance"
	"github.com/shoal-org/shoal/node/joining"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/wire"
	"github.com/shoal-org/shoal/node/writes"
)

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

// rpcServer is an agent in no cluster serving the cluster port on loopback
// through the real mux and the agent's RPC server (node/rpcserver).
type rpcServer struct {
	a       *Agent
	m       *instance.Mux
	addr    string
	pki     *testPKI
	revoked sync.Map // serial → true
	done    chan error
}

func startRPCServer(t *testing.T) *rpcServer {
	t.Helper()
	s := &rpcServer{a: newTestAgent(t), pki: newTestPKI(t, "cluster-a"), done: make(chan error, 1)}
	cert, _ := s.pki.node(s.a.id.NodeID)
	srvTLS := pki.ServerTLS(cert, s.pki.ca.Pool(), func(serial string) bool {
		_, ok := s.revoked.Load(serial)
		return ok
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	s.m = instance.NewMux(ln, srvTLS, slog.New(slog.NewTextHandler(io.Discard, nil)),
		func(c *tls.Conn) { clusterport.Serve(ctx, c, s.a.rpcServer().Method) }, nil)
	go func() { s.done <- s.m.Run(ctx) }()
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

func rpcCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestRPCOtherClusterAndRevoked(t *testing.T) {
	s := startRPCServer(t)
	other := newTestPKI(t, "cluster-b")

	t.Run("node of another cluster", func(t *testing.T) {
		err := instance.Call(rpcCtx(t), s.addr, other.client("node-x"), wire.MethodPing, nil, nil, nil)
		if err == nil {
			t.Fatal("a node of another cluster got through")
		}
	})
	t.Run("client certificate of another CA, trusting ours", func(t *testing.T) {
		cert, _ := other.node("node-x")
		err := instance.Call(rpcCtx(t), s.addr, pki.ClientTLS(cert, s.pki.ca.Pool()), wire.MethodPing, nil, nil, nil)
		if err == nil {
			t.Fatal("a certificate of another CA got through")
		}
	})
	t.Run("revoked certificate", func(t *testing.T) {
		cert, serial := s.pki.node("node-r")
		client := pki.ClientTLS(cert, s.pki.ca.Pool())
		if err := instance.Call(rpcCtx(t), s.addr, client, wire.MethodPing, nil, nil, nil); err != nil {
			t.Fatalf("before revocation: %v", err)
		}
		s.revoked.Store(serial, true)
		if err := instance.Call(rpcCtx(t), s.addr, client, wire.MethodPing, nil, nil, nil); err == nil {
			t.Fatal("a revoked certificate got through")
		}
	})
	t.Run("join token of another cluster", func(t *testing.T) {
		err := instance.Call(rpcCtx(t), s.addr, pki.JoinTLS(other.ca.Fingerprint()), wire.MethodJoin, wire.JoinRequest{}, nil, nil)
		if !errors.Is(err, pki.ErrCAMismatch) {
			t.Fatalf("err = %v, want ErrCAMismatch", err)
		}
		if msg := joining.Explain(s.addr, err).Error(); !strings.Contains(msg, "different cluster") {
			t.Errorf("explained as %q", msg)
		}
	})
}

// TestJoinThroughAPIRefused runs `shoal join` on one agent against another
// agent's cluster port: the token pins the right CA, the call reaches the
// peer, and its refusal (it is in no cluster) reaches the user.
func TestJoinThroughAPIRefused(t *testing.T) {
	s := startRPCServer(t)
	joiner := newTestAgent(t)
	for _, tt := range []struct {
		name, fp, want string
	}{
		{"peer in no cluster", s.pki.ca.Fingerprint(), "join refused by " + s.addr},
		{"token of another cluster", newTestPKI(t, "cluster-b").ca.Fingerprint(), "different cluster"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			token := pki.FormatToken(tt.fp, pki.NewSecret())
			code, body := do(t, joiner.routes(), "POST", "/v1/join", fmt.Sprintf(`{"token":%q,"addr":%q}`, token, s.addr))
			if code != http.StatusBadRequest {
				t.Fatalf("status %d: %s", code, body)
			}
			if msg := errorBody(t, body); !strings.Contains(msg, tt.want) {
				t.Fatalf("error %q lacks %q", msg, tt.want)
			}
			if instance.HasState(joiner.cfg.DataDir) {
				t.Fatal("a refused join wrote cluster state")
			}
		})
	}
}

// TestRPCReplyCodes checks which errors a peer marks so that the caller's
// write loop can tell "retry, maybe elsewhere" from "this is the answer".
func TestRPCReplyCodes(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		retryable bool
	}{
		{"not leader", ErrNotLeader, true},
		{"not leader, wrapped", fmt.Errorf("%w: leadership lost", consensus.ErrNotLeader), true},
		{"refusal", &wire.Error{Code: wire.CodeRefused, Msg: "version mismatch"}, false},
		{"unknown method", errors.New(`unknown rpc method "x"`), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := replyRoundTrip(t, tt.err)
			if writes.Retryable(got) != tt.retryable {
				t.Errorf("after the wire, writes.Retryable(%#v) = %v, want %v", got, writes.Retryable(got), tt.retryable)
			}
			if got.Error() != tt.err.Error() {
				t.Errorf("message %q, want %q", got, tt.err)
			}
		})
	}
}

// TestRPCReplyKeepsRetryableErrors: a leader whose commit times out or whose
// raft is shutting down answers with a code that keeps the error retryable
// for the follower's write loop.
func TestRPCReplyKeepsRetryableErrors(t *testing.T) {
	for _, e := range []error{
		fmt.Errorf("apply command type 3: %w", consensus.ErrTimeout),
		consensus.ErrShutdown,
	} {
		if !writes.Retryable(e) {
			t.Fatalf("writes.Retryable(%v) = false locally", e)
		}
		if got := replyRoundTrip(t, e); !writes.Retryable(got) {
			t.Errorf("%q is retryable on the leader but not after the RPC reply (%#v)", e, got)
		}
	}
}

// replyRoundTrip sends err through clusterport.Call.Reply over a TLS pipe and parses
// it back as callRPC does.
func replyRoundTrip(t *testing.T, err error) error {
	t.Helper()
	p := newTestPKI(t, "c")
	cert, _ := p.node("srv")
	cs, cc := net.Pipe()
	srv := tls.Server(cs, pki.ServerTLS(cert, p.ca.Pool(), nil))
	cli := tls.Client(cc, pki.JoinTLS(p.ca.Fingerprint()))
	// Close the pipe ends, not the TLS conns: a TLS close_notify would
	// block on the unbuffered pipe for its 5 s deadline.
	defer cs.Close()
	defer cc.Close()
	werr := make(chan error, 1)
	go func() { werr <- (&clusterport.Call{Conn: srv}).Reply(nil, err) }()
	_ = cli.SetDeadline(time.Now().Add(5 * time.Second))
	line, rerr := bufio.NewReader(cli).ReadBytes('\n')
	if rerr != nil {
		t.Fatal(rerr)
	}
	if e := <-werr; e != nil {
		t.Fatal(e)
	}
	var resp wire.Response
	if e := json.Unmarshal(line, &resp); e != nil {
		t.Fatal(e)
	}
	return &wire.Error{Code: resp.Code, Msg: resp.Error}
}
