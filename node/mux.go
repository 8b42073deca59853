package node

// One TCP port (2377) carries two protocols, as Consul does: after the TLS
// handshake the first byte the client writes selects Raft or RPC. Raft
// connections must present a valid, unrevoked node certificate; RPC
// connections may come without one, because a joining node has no certificate
// yet, and every RPC method except join, ping and the removal question
// (removal.go) checks the peer identity itself. A raft connection then
// exchanges cluster epochs (fence.go) and goes to raft only when both ends
// run at the same one.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/pki"
)

const (
	protoRaft byte = 'R'
	protoRPC  byte = 'C'
)

// handshakeTimeout bounds how long an unauthenticated connection may take
// to finish TLS and pick a protocol, so idle probes cannot pin goroutines.
const handshakeTimeout = 5 * time.Second

// mux accepts TLS connections on the cluster port and routes them.
type mux struct {
	ln     net.Listener
	tlsCfg *tls.Config
	log    *slog.Logger
	raftCh chan net.Conn
	rpc    func(conn *tls.Conn)
	// fence is this cluster instance's epoch (nil: epoch 0). Set before Run.
	fence *fence

	closeOnce sync.Once
	closed    chan struct{}
	wg        sync.WaitGroup
}

func newMux(ln net.Listener, tlsCfg *tls.Config, log *slog.Logger, rpc func(*tls.Conn)) *mux {
	return &mux{
		ln:     ln,
		tlsCfg: tlsCfg,
		log:    log,
		raftCh: make(chan net.Conn, 16),
		rpc:    rpc,
		closed: make(chan struct{}),
	}
}

// Run accepts connections until ctx ends or the listener is closed.
func (m *mux) Run(ctx context.Context) error {
	go func() {
		select {
		case <-ctx.Done():
		case <-m.closed:
		}
		m.Close()
	}()
	for {
		c, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.closed:
				m.wg.Wait()
				return nil
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			m.wg.Wait()
			return fmt.Errorf("accept on cluster port: %w", err)
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.handle(c)
		}()
	}
}

func (m *mux) handle(c net.Conn) {
	tc := tls.Server(c, m.tlsCfg)
	_ = tc.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := tc.Handshake(); err != nil {
		m.log.Debug("cluster port handshake failed", "remote", c.RemoteAddr(), "err", err)
		_ = c.Close()
		return
	}
	var b [1]byte
	if _, err := tc.Read(b[:]); err != nil {
		_ = tc.Close()
		return
	}
	switch b[0] {
	case protoRaft:
		peer, ok := pki.PeerNodeID(tc.ConnectionState())
		if !ok {
			m.log.Warn("raft connection without a node certificate refused", "remote", c.RemoteAddr())
			_ = tc.Close()
			return
		}
		theirs, v, err := acceptEpoch(tc, m.fence, peer)
		if err != nil || v != consensus.EpochSame {
			// A stale peer retries with every heartbeat: debug only; the
			// fenced side says it loudly.
			m.log.Debug("raft connection refused: epoch mismatch", "peer", peer, "remote", c.RemoteAddr(),
				"epoch", m.fence.local(), "peer_epoch", theirs, "verdict", v, "err", err)
			_ = tc.Close()
			return
		}
		_ = tc.SetDeadline(time.Time{})
		select {
		case m.raftCh <- tc:
		case <-m.closed:
			_ = tc.Close()
		}
	case protoRPC:
		_ = tc.SetDeadline(time.Time{})
		m.rpc(tc)
	default:
		_ = tc.Close()
	}
}

// Close stops accepting; it is idempotent.
func (m *mux) Close() {
	m.closeOnce.Do(func() {
		close(m.closed)
		_ = m.ln.Close()
	})
}

// raftLayer adapts the mux to raft.StreamLayer.
type raftLayer struct {
	m      *mux
	client func() *tls.Config
	// fence is this cluster instance's epoch (nil: epoch 0).
	fence *fence
}

var _ raft.StreamLayer = (*raftLayer)(nil)

func (l *raftLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.m.raftCh:
		return c, nil
	case <-l.m.closed:
		return nil, net.ErrClosed
	}
}

func (l *raftLayer) Close() error { l.m.Close(); return nil }

func (l *raftLayer) Addr() net.Addr { return l.m.ln.Addr() }

// Dial connects to a peer's raft and runs the epoch handshake: a peer of
// another epoch is refused (and a newer one fences this node).
func (l *raftLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := dialProto(string(address), timeout, l.client(), protoRaft)
	if err != nil {
		return nil, err
	}
	peer := string(address)
	if id, ok := pki.PeerNodeID(c.ConnectionState()); ok {
		peer = id
	}
	if err := dialEpoch(c, l.fence, peer, timeout); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// dialProto opens a TLS connection to a cluster port and selects a protocol.
func dialProto(addr string, timeout time.Duration, cfg *tls.Config, proto byte) (*tls.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(raw, cfg)
	_ = tc.SetDeadline(time.Now().Add(timeout))
	if err := tc.Handshake(); err != nil {
		_ = raw.Close()
		return nil, err
	}
	if _, err := tc.Write([]byte{proto}); err != nil {
		_ = tc.Close()
		return nil, err
	}
	_ = tc.SetDeadline(time.Time{})
	return tc, nil
}
