package node

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/shoal-org/shoal/node/clusterport"
	"github.com/shoal-org/shoal/node/epoch"
	"github.com/shoal-org/shoal/node/pki"
)

func isFenced(f *fence) bool {
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
	fence *fence
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
	m := newMux(ln, pki.ServerTLS(cert, p.ca.Pool(), nil), slog.New(slog.NewTextHandler(io.Discard, nil)), func(c *tls.Conn) { c.Close() }, fc)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	client := pki.ClientTLS(cert, p.ca.Pool())
	return &epochLayer{newRaftLayer(m, func() *tls.Config { return client }, fc), fc}, ln.Addr().String()
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
	c, err := dialProto(addr, 2*time.Second, client, protoRaft)
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
