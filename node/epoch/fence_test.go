package node

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/clusterport"
	"github.com/shoal-org/shoal/node/pki"
)

func isFenced(f *fence) bool {
	select {
	case <-f.fenced():
		return true
	default:
		return false
	}
}

func TestFenceCheck(t *testing.T) {
	type seen struct {
		peer   string
		remote uint64
		want   consensus.EpochVerdict
	}
	for _, tt := range []struct {
		name       string
		local      uint64
		seen       []seen
		fenced     bool
		newest     uint64
		newestFrom string
	}{
		{name: "same epoch", local: 1, seen: []seen{{"a", 1, consensus.EpochSame}}},
		{name: "old voters are refused, not a fence", local: 1,
			seen: []seen{{"a", 0, consensus.EpochPeerStale}, {"b", 0, consensus.EpochPeerStale}}},
		{name: "a newer epoch fences", local: 0, seen: []seen{{"a", 0, consensus.EpochSame}, {"r", 1, consensus.EpochSelfStale}},
			fenced: true, newest: 1, newestFrom: "r"},
		{name: "the newest epoch seen wins", local: 1,
			seen:   []seen{{"r", 3, consensus.EpochSelfStale}, {"s", 2, consensus.EpochSelfStale}, {"t", 4, consensus.EpochSelfStale}},
			fenced: true, newest: 4, newestFrom: "t"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFence(tt.local)
			for _, s := range tt.seen {
				if got := f.check(s.peer, s.remote); got != s.want {
					t.Errorf("check(%s, %d) at epoch %d = %s, want %s", s.peer, s.remote, tt.local, got, s.want)
				}
			}
			if got := isFenced(f); got != tt.fenced {
				t.Fatalf("fenced = %v, want %v", got, tt.fenced)
			}
			if e, from := f.newest(); e != tt.newest || from != tt.newestFrom {
				t.Fatalf("newest = %d from %q, want %d from %q", e, from, tt.newest, tt.newestFrom)
			}
		})
	}

	// Only a peer this node trusts (a voter of its configuration) fences it.
	f := newFence(0)
	f.trust(func(id string) bool { return id == "voter" })
	if v := f.check("worker", 7); v != consensus.EpochSelfStale || isFenced(f) {
		t.Fatalf("a non-voter's newer epoch: verdict %s, fenced %v", v, isFenced(f))
	}
	if e, _ := f.newest(); e != 0 {
		t.Fatalf("an untrusted epoch recorded: %d", e)
	}
	if f.check("voter", 1); !isFenced(f) {
		t.Fatal("a voter's newer epoch did not fence")
	}
	if e, from := f.newest(); e != 1 || from != "voter" {
		t.Fatalf("newest %d from %q", e, from)
	}

	// A nil fence (a mux built alone) is epoch 0 and never fenced.
	var nf *fence
	if nf.local() != 0 || nf.check("x", 0) != consensus.EpochSame || nf.check("x", 5) != consensus.EpochSelfStale || nf.fenced() != nil {
		t.Fatal("nil fence is not epoch 0")
	}
	nf.hint("10.0.0.1:2377") // no-op
}

func TestFenceHintKeepsLatest(t *testing.T) {
	f := newFence(0)
	f.hint("a:2377")
	f.hint("b:2377")
	f.hint("c:2377")
	select {
	case got := <-f.hints:
		if got != "c:2377" {
			t.Fatalf("hint %q, want the latest", got)
		}
	default:
		t.Fatal("no hint pending")
	}
	select {
	case got := <-f.hints:
		t.Fatalf("a second hint %q pending", got)
	default:
	}
}

func TestOpenEpoch(t *testing.T) {
	for _, tt := range []struct {
		name       string
		file       uint64 // 0: no file
		forceNew   bool
		state      *consensus.ClusterState
		wantBefore uint64 // epoch while raft recovers
		wantAfter  uint64 // epoch once settled
	}{
		{name: "new cluster", wantBefore: 0, wantAfter: 0},
		{name: "restart keeps the epoch", file: 2, wantBefore: 2, wantAfter: 2},
		{name: "restart ignores the record", file: 1, state: &consensus.ClusterState{Epoch: 5}, wantBefore: 1, wantAfter: 1},
		{name: "first force", forceNew: true, state: &consensus.ClusterState{}, wantBefore: 1, wantAfter: 1},
		{name: "force again", file: 1, forceNew: true, state: &consensus.ClusterState{Epoch: 1}, wantBefore: 2, wantAfter: 2},
		{name: "force with a lost file", forceNew: true, state: &consensus.ClusterState{Epoch: 3}, wantBefore: 1, wantAfter: 4},
		{name: "force before the record was written", file: 4, forceNew: true, state: &consensus.ClusterState{Epoch: 2}, wantBefore: 5, wantAfter: 5},
		{name: "force on a state without cluster record", file: 1, forceNew: true, wantBefore: 2, wantAfter: 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.file > 0 {
				if err := writeEpoch(dir, tt.file); err != nil {
					t.Fatal(err)
				}
			}
			f, recorded, err := openEpoch(dir, tt.forceNew)
			if err != nil {
				t.Fatal(err)
			}
			if recorded != tt.file || f.local() != tt.wantBefore {
				t.Fatalf("openEpoch = %d (recorded %d), want %d (recorded %d)", f.local(), recorded, tt.wantBefore, tt.file)
			}
			if got, _ := readEpoch(dir); got != tt.wantBefore {
				t.Fatalf("file holds %d before raft started, want %d", got, tt.wantBefore)
			}
			if tt.forceNew {
				if err := settleForcedEpoch(dir, f, recorded, tt.state); err != nil {
					t.Fatal(err)
				}
			}
			if f.local() != tt.wantAfter {
				t.Fatalf("epoch %d, want %d", f.local(), tt.wantAfter)
			}
			if got, _ := readEpoch(dir); got != tt.wantAfter {
				t.Fatalf("file holds %d, want %d", got, tt.wantAfter)
			}
		})
	}
}

func TestReadEpochCorrupt(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, epochFile), []byte("{nope"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readEpoch(dir); err == nil {
		t.Fatal("a corrupt epoch file read as an epoch")
	}
	if _, _, err := openEpoch(dir, true); err == nil {
		t.Fatal("force-new-cluster over a corrupt epoch file went ahead")
	}
}

func TestMoveRaftAside(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "raft", "wal"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "raft", "wal", "x"), []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	if err := moveRaftAside(dir, 0, now); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "raft")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("raft dir still there: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "raft.fenced-epoch0-20260102T030405.000000006", "wal", "x"))
	if err != nil || string(b) != "old" {
		t.Fatalf("old raft state not kept aside: %q %v", b, err)
	}
	// Moved already (a retried re-join): nothing to do.
	if err := moveRaftAside(dir, 0, now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
}

// epochLayer is a raft layer with the fence it presents.
type epochLayer struct {
	*clusterport.RaftLayer
	fence *fence
}

// epochMux serves raft on loopback with a fence at epoch, for the
// handshake tests.
func epochMux(t *testing.T, p *testPKI, id string, epoch uint64) (*epochLayer, string) {
	t.Helper()
	cert, _ := p.node(id)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fc := newFence(epoch)
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
				dl.fence.trust(tt.dialerTrust)
			}
			if tt.accTrst != nil {
				al.fence.trust(tt.accTrst)
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
				case <-al.fence.fenced():
				case <-time.After(5 * time.Second):
					t.Fatal("acceptor of the older epoch did not learn it is fenced")
				}
				if e, from := al.fence.newest(); e != tt.dialer || from != "dialer" {
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
				if e, from := dl.fence.newest(); e != tt.acceptor || from != "acceptor" {
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
	stale := newFence(0)
	client := p.client("stale")
	if err := probeEpoch(same, client, stale); err != nil || isFenced(stale) {
		t.Fatalf("probe at the same epoch: %v, fenced %v", err, isFenced(stale))
	}
	stale.trust(func(id string) bool { return id == "recovered" })
	if err := probeEpoch(newer, client, stale); !errors.Is(err, clusterport.ErrEpochMismatch) {
		t.Fatalf("probe of a newer epoch: %v", err)
	}
	if !isFenced(stale) {
		t.Fatal("a voter's newer epoch on its cluster port did not fence")
	}
	if e, from := stale.newest(); e != 1 || from != "recovered" {
		t.Fatalf("newest %d from %q", e, from)
	}
}
