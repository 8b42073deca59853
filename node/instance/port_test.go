package instance

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/shoal-org/shoal/node/clusterport"
	"github.com/shoal-org/shoal/node/epoch"
	"github.com/shoal-org/shoal/node/joining"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/wire"
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

// portServer is a cluster port on loopback through the real mux, whose RPC
// connections are held open until the peer or the mux closes them.
type portServer struct {
	m       *Mux
	addr    string
	pki     *testPKI
	revoked sync.Map // serial → true
}

func startPortServer(t *testing.T) *portServer {
	t.Helper()
	s := &portServer{pki: newTestPKI(t, "cluster-a")}
	cert, _ := s.pki.node("server")
	srvTLS := pki.ServerTLS(cert, s.pki.ca.Pool(), func(serial string) bool {
		_, ok := s.revoked.Load(serial)
		return ok
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	hold := func(c *tls.Conn) { defer c.Close(); _, _ = io.Copy(io.Discard, c) }
	s.m = NewMux(ln, srvTLS, slog.New(slog.NewTextHandler(io.Discard, nil)), hold, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("mux.Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("mux.Run did not return after its context ended")
		}
	})
	return s
}

// TestRevokedConnsClosed opens RPC connections through the real mux, as a
// node that sent the protocol byte and holds the connection, then revokes
// one client's serial: its connection ends at once on both ends, the other
// one stays. Then the dialling side revokes the server: its own tracked
// connection ends.
func TestRevokedConnsClosed(t *testing.T) {
	s := startPortServer(t)
	certB, serialB := s.pki.node("node-b")
	certC, _ := s.pki.node("node-c")
	connB, err := Dial(s.addr, 5*time.Second, pki.ClientTLS(certB, s.pki.ca.Pool()), clusterport.ProtoRPC)
	if err != nil {
		t.Fatal(err)
	}
	defer connB.Close()
	connC, err := Dial(s.addr, 5*time.Second, pki.ClientTLS(certC, s.pki.ca.Pool()), clusterport.ProtoRPC)
	if err != nil {
		t.Fatal(err)
	}
	defer connC.Close()
	serverSerial := pki.Serial(connC.ConnectionState().PeerCertificates[0])

	// The mux identifies a connection once it read the protocol byte.
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := s.m.conns.Identified()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mux identified %d connections, want 2", n)
		}
		time.Sleep(10 * time.Millisecond)
	}

	s.revoked.Store(serialB, true)
	isRevoked := func(serial, _ string) bool { _, ok := s.revoked.Load(serial); return ok }
	if peers := s.m.conns.CloseRevoked(isRevoked); !slices.Equal(peers, []string{"node-b"}) {
		t.Fatalf("closed connections of %v, want [node-b]", peers)
	}
	_ = connB.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	if _, err := connB.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read on the revoked client's connection: %v, want it closed by the server", err)
	}
	t.Logf("revoked client's connection ended after %v", time.Since(start))
	_ = connC.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := connC.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read on the other client's connection: %v, want it still open (deadline)", err)
	}

	// The dialling side: the server's serial is revoked.
	if peers := dialedConns.CloseRevoked(func(serial, _ string) bool { return serial == serverSerial }); len(peers) == 0 {
		t.Fatal("no dialled connection to the revoked server was closed")
	}
	_ = connC.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := connC.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read on a connection to a revoked server: %v, want net.ErrClosed", err)
	}
}

func isFenced(f *epoch.Fence) bool {
	select {
	case <-f.Fenced():
		return true
	default:
		return false
	}
}

// epochLayer is a raft layer with the fence it presents.
type epochLayer struct {
	*clusterport.RaftLayer
	fence *epoch.Fence
}

// epochMux serves raft on loopback with a fence at epoch at, for the
// handshake tests.
func epochMux(t *testing.T, p *testPKI, id string, at uint64) (*epochLayer, string) {
	t.Helper()
	cert, _ := p.node(id)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fc := epoch.NewFence(at)
	m := NewMux(ln, pki.ServerTLS(cert, p.ca.Pool(), nil), slog.New(slog.NewTextHandler(io.Discard, nil)), func(c *tls.Conn) { c.Close() }, fc)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	client := pki.ClientTLS(cert, p.ca.Pool())
	return &epochLayer{NewRaftLayer(m, func() *tls.Config { return client }, fc), fc}, ln.Addr().String()
}

// TestRaftEpochHandshake: raft traffic flows only between equal epochs; the
// side with the older epoch learns that it is fenced, whichever side dials.
func TestRaftEpochHandshake(t *testing.T) {
	p := newTestPKI(t, "cluster-a")
	nobody := func(string) bool { return false }
	for _, tt := range []struct {
		name                 string
		dialer, acceptor     uint64
		dialerTrust, accTrst func(string) bool
		dialerFenced, accFen bool
	}{
		{name: "same epoch", dialer: 1, acceptor: 1},
		{name: "old voter dials the recovered node", dialer: 0, acceptor: 1, dialerFenced: true},
		{name: "recovered node dials an old voter", dialer: 1, acceptor: 0, accFen: true},
		{name: "a newer epoch from a non-voter is refused but does not fence", dialer: 0, acceptor: 1, dialerTrust: nobody},
		{name: "a non-voter dialing with a newer epoch does not fence", dialer: 5, acceptor: 1, accTrst: nobody},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dl, _ := epochMux(t, p, "dialer", tt.dialer)
			al, addr := epochMux(t, p, "acceptor", tt.acceptor)
			if tt.dialerTrust != nil {
				dl.fence.Trust(tt.dialerTrust)
			}
			if tt.accTrst != nil {
				al.fence.Trust(tt.accTrst)
			}
			accepted := make(chan net.Conn, 1)
			go func() {
				if c, err := al.Accept(); err == nil {
					accepted <- c
				}
			}()
			conn, err := dl.Dial(raft.ServerAddress(addr), 2*time.Second)
			if tt.dialer == tt.acceptor {
				if err != nil {
					t.Fatalf("dial at equal epochs: %v", err)
				}
				defer conn.Close()
				select {
				case c := <-accepted:
					// Raft's own bytes flow after the handshake.
					if _, err := conn.Write([]byte("x")); err != nil {
						t.Fatal(err)
					}
					b := make([]byte, 1)
					_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
					if _, err := io.ReadFull(c, b); err != nil || b[0] != 'x' {
						t.Fatalf("read %q %v", b, err)
					}
					c.Close()
				case <-time.After(5 * time.Second):
					t.Fatal("connection at equal epochs never reached raft")
				}
			} else {
				if !errors.Is(err, clusterport.ErrEpochMismatch) {
					t.Fatalf("dial from epoch %d to %d: %v, want an epoch mismatch", tt.dialer, tt.acceptor, err)
				}
				// The acceptor must have judged (and closed) it without
				// handing it to raft.
				select {
				case <-accepted:
					t.Fatal("a connection of another epoch reached raft")
				case <-time.After(300 * time.Millisecond):
				}
			}
			if isFenced(dl.fence) != tt.dialerFenced {
				t.Errorf("dialer fenced = %v, want %v", isFenced(dl.fence), tt.dialerFenced)
			}
			if tt.accFen {
				// The acceptor judges after answering; wait for it.
				select {
				case <-al.fence.Fenced():
				case <-time.After(5 * time.Second):
					t.Fatal("acceptor of the older epoch did not learn it is fenced")
				}
				if e, from := al.fence.Newest(); e != tt.dialer || from != "dialer" {
					t.Errorf("acceptor saw %d from %q", e, from)
				}
			} else {
				if tt.dialer != tt.acceptor {
					// The acceptor closes a refused connection after its
					// verdict: once a raw handshake sees EOF, it is in.
					handshakeUntilClosed(t, addr, p.client("dialer"), tt.dialer)
				}
				if isFenced(al.fence) {
					t.Error("acceptor fenced")
				}
			}
			if tt.dialerFenced {
				if e, from := dl.fence.Newest(); e != tt.acceptor || from != "acceptor" {
					t.Errorf("dialer saw %d from %q", e, from)
				}
			}
		})
	}
}

// handshakeUntilClosed runs the dialer's half of the handshake at epoch by
// hand and reads until the acceptor closes the connection.
func handshakeUntilClosed(t *testing.T, addr string, client *tls.Config, epoch uint64) {
	t.Helper()
	c, err := Dial(addr, 2*time.Second, client, clusterport.ProtoRaft)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := clusterport.SendEpoch(c, epoch); err != nil {
		t.Fatal(err)
	}
	if _, err := clusterport.RecvEpoch(c); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("the acceptor kept a refused connection open: %v", err)
	}
}

// TestProbeEpoch: a gossip hint is checked on the peer's cluster port,
// where mutual TLS names the peer.
func TestProbeEpoch(t *testing.T) {
	p := newTestPKI(t, "cluster-a")
	_, newer := epochMux(t, p, "recovered", 1)
	_, same := epochMux(t, p, "peer", 0)
	stale := epoch.NewFence(0)
	client := p.client("stale")
	if err := epoch.Probe(peerDialer, same, client, stale); err != nil || isFenced(stale) {
		t.Fatalf("probe at the same epoch: %v, fenced %v", err, isFenced(stale))
	}
	stale.Trust(func(id string) bool { return id == "recovered" })
	if err := epoch.Probe(peerDialer, newer, client, stale); !errors.Is(err, clusterport.ErrEpochMismatch) {
		t.Fatalf("probe of a newer epoch: %v", err)
	}
	if !isFenced(stale) {
		t.Fatal("a voter's newer epoch on its cluster port did not fence")
	}
	if e, from := stale.Newest(); e != 1 || from != "recovered" {
		t.Fatalf("newest %d from %q", e, from)
	}
}

// TestExplainJoinErrorAfterHandshake: when a real cluster node (the CA pinned
// by the token verified) hangs up before answering — a leader that dies
// while the join is forwarded, say — the user must not be told the address
// is "not a Shoal cluster node": only errors of the connect step say that.
func TestExplainJoinErrorAfterHandshake(t *testing.T) {
	p := newTestPKI(t, "cluster-a")
	cert, _ := p.node("leader")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// A node that completes TLS and the protocol byte, then hangs up.
	m := NewMux(ln, pki.ServerTLS(cert, p.ca.Pool(), nil), slog.New(slog.NewTextHandler(io.Discard, nil)),
		func(c *tls.Conn) { c.Close() }, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	defer func() { cancel(); <-done }()

	cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer ccancel()
	err = Call(cctx, ln.Addr().String(), pki.JoinTLS(p.ca.Fingerprint()), wire.MethodJoin, wire.JoinRequest{}, nil, nil)
	if err == nil {
		t.Fatal("a node that hangs up answered")
	}
	msg := joining.Explain(ln.Addr().String(), err).Error()
	if strings.Contains(msg, "not a Shoal cluster node") {
		t.Errorf("the handshake with the pinned CA succeeded, yet the error says %q", msg)
	}
}
