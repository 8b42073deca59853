package node

// One TCP port (2377) carries two protocols, as Consul does: after the TLS
// handshake the first byte the client writes selects Raft or RPC. Raft
// connections must present a valid, unrevoked node certificate; RPC
// connections may come without one, because a joining node has no certificate
// yet, and every RPC method except join, ping and the removal question
// (removal.go) checks the peer identity itself. A raft connection then
// exchanges cluster epochs (fence.go) and goes to raft only when both ends
// run at the same one.
//
// Before the TLS handshake nobody is known, so the port is cheap to hold
// open: connections are capped globally and per source IP while they are
// unauthenticated (handshake, protocol byte, a joiner's one request), the
// handshake and protocol byte must come within handshakeTimeout, and
// nothing is buffered beyond TLS records until the peer is known. A Raft
// connection is admitted only from a member of the Raft configuration
// (authz.RaftPeerAllowed, gated in access.go).

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
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

// maxAnonBytes bounds what the agent reads from a connection before the
// peer is authenticated: the TLS handshake (a few KiB) plus a joiner's one
// request (maxAnonRequestLine).
const maxAnonBytes = 64 << 10

// errAnonBytes ends an unauthenticated connection that sent too much.
var errAnonBytes = errors.New("too many bytes before authentication")

// muxLimits caps connections on the cluster port.
type muxLimits struct {
	// MaxConns bounds all open connections (peers hold a few each).
	MaxConns int
	// MaxAnon bounds connections not yet authenticated, in total and per
	// source IP (MaxAnonPerIP): a node's own handshakes finish in
	// milliseconds, a joiner needs one.
	MaxAnon      int
	MaxAnonPerIP int
}

func defaultMuxLimits() muxLimits {
	return muxLimits{MaxConns: 2048, MaxAnon: 256, MaxAnonPerIP: 32}
}

// mux accepts TLS connections on the cluster port and routes them.
type mux struct {
	ln     net.Listener
	tlsCfg *tls.Config
	log    *slog.Logger
	raftCh chan net.Conn
	rpc    func(conn *tls.Conn)
	// fence is this cluster instance's epoch (nil: epoch 0). Set before Run.
	fence  *fence
	limits muxLimits
	// raftGate, when set, admits or refuses a Raft connection by the node
	// ID of its certificate.
	raftGate atomic.Pointer[func(peerID string) error]
	// conns tracks accepted connections by the peer's certificate serial,
	// so that a revocation closes them (revoke.go).
	conns *connTracker

	countMu  sync.Mutex
	open     int
	anon     int
	anonByIP map[string]int

	closeOnce sync.Once
	closed    chan struct{}
	wg        sync.WaitGroup
}

func newMux(ln net.Listener, tlsCfg *tls.Config, log *slog.Logger, rpc func(*tls.Conn)) *mux {
	return &mux{
		ln:       ln,
		tlsCfg:   tlsCfg,
		log:      log,
		raftCh:   make(chan net.Conn, 16),
		rpc:      rpc,
		closed:   make(chan struct{}),
		limits:   defaultMuxLimits(),
		anonByIP: map[string]int{},
		conns:    newConnTracker(),
	}
}

// setLimits replaces the connection caps (tests); safe while Run runs.
func (m *mux) setLimits(l muxLimits) {
	m.countMu.Lock()
	defer m.countMu.Unlock()
	m.limits = l
}

// setRaftGate installs the check of Raft peers; call it before Run.
func (m *mux) setRaftGate(f func(peerID string) error) { m.raftGate.Store(&f) }

// admit counts a new unauthenticated connection from ip, or refuses it
// when a cap is reached.
func (m *mux) admit(ip string) bool {
	m.countMu.Lock()
	defer m.countMu.Unlock()
	if m.open >= m.limits.MaxConns || m.anon >= m.limits.MaxAnon || m.anonByIP[ip] >= m.limits.MaxAnonPerIP {
		return false
	}
	m.open++
	m.anon++
	m.anonByIP[ip]++
	return true
}

// authenticated moves a connection from ip out of the unauthenticated count.
func (m *mux) authenticated(ip string) {
	m.countMu.Lock()
	defer m.countMu.Unlock()
	m.dropAnonLocked(ip)
}

func (m *mux) dropAnonLocked(ip string) {
	m.anon--
	if m.anonByIP[ip]--; m.anonByIP[ip] <= 0 {
		delete(m.anonByIP, ip)
	}
}

// release forgets a closed connection.
func (m *mux) release(ip string, anon bool) {
	m.countMu.Lock()
	defer m.countMu.Unlock()
	m.open--
	if anon {
		m.dropAnonLocked(ip)
	}
}

// counts returns the open and unauthenticated connections (tests).
func (m *mux) counts() (open, anon int) {
	m.countMu.Lock()
	defer m.countMu.Unlock()
	return m.open, m.anon
}

func remoteIP(c net.Conn) string {
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String()
	}
	return host
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
		ip := remoteIP(c)
		if !m.admit(ip) {
			_ = c.Close()
			continue
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.handle(c, ip)
		}()
	}
}

// handle runs one accepted connection; it owns its slot in the counts.
func (m *mux) handle(c net.Conn, ip string) {
	anon := true
	tracked := m.conns.wrap(c)
	cc := &countedConn{Conn: tracked, release: func() { m.release(ip, anon) }, limit: maxAnonBytes}
	tc := tls.Server(cc, m.tlsCfg)
	_ = tc.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := tc.Handshake(); err != nil {
		m.log.Debug("cluster port handshake failed", "remote", c.RemoteAddr(), "err", err)
		_ = tc.Close()
		return
	}
	var b [1]byte
	if _, err := tc.Read(b[:]); err != nil {
		_ = tc.Close()
		return
	}
	peerID, certified := pki.PeerNodeID(tc.ConnectionState())
	if certified {
		m.conns.identify(tracked, pki.Serial(tc.ConnectionState().PeerCertificates[0]), peerID)
		m.authenticated(ip)
		anon = false // read by release, which runs in this goroutine or after it
		cc.authed.Store(true)
	}
	switch b[0] {
	case protoRaft:
		if !certified {
			m.log.Warn("raft connection without a node certificate refused", "remote", c.RemoteAddr())
			_ = tc.Close()
			return
		}
		theirs, v, err := acceptEpoch(tc, m.fence, peerID)
		if err != nil || v != consensus.EpochSame {
			// A stale peer retries with every heartbeat: debug only; the
			// fenced side says it loudly.
			m.log.Debug("raft connection refused: epoch mismatch", "peer", peerID, "remote", c.RemoteAddr(),
				"epoch", m.fence.local(), "peer_epoch", theirs, "verdict", v, "err", err)
			_ = tc.Close()
			return
		}
		// The epoch goes first: a returning voter of an abandoned
		// configuration learns from this answer that it is fenced, even
		// though it is no member here any more.
		if gate := m.raftGate.Load(); gate != nil {
			if err := (*gate)(peerID); err != nil {
				m.log.Warn("raft connection refused", "remote", c.RemoteAddr(), "node_id", shortID(peerID), "err", err)
				_ = tc.Close()
				return
			}
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

// countedConn releases its slot in the mux counts once, on first Close,
// and reads at most limit bytes until authed is set.
type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
	limit   int64
	n       int64 // bytes read while unauthenticated; only the reading goroutine touches it
	authed  atomic.Bool
}

func (c *countedConn) Read(p []byte) (int, error) {
	if c.authed.Load() {
		return c.Conn.Read(p)
	}
	left := c.limit - c.n
	if left <= 0 {
		return 0, errAnonBytes
	}
	if int64(len(p)) > left {
		p = p[:left]
	}
	k, err := c.Conn.Read(p)
	c.n += int64(k)
	return k, err
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
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
	if id, ok := pki.ServerNodeID(c.ConnectionState()); ok {
		peer = id
	}
	if err := dialEpoch(c, l.fence, peer, timeout); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// dialProto opens a TLS connection to a cluster port and selects a
// protocol. The connection is tracked by the server's certificate serial
// until it is closed (dialedConns), so that a revocation closes it.
func dialProto(addr string, timeout time.Duration, cfg *tls.Config, proto byte) (*tls.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	raw := dialedConns.wrap(conn)
	tc := tls.Client(raw, cfg)
	_ = tc.SetDeadline(time.Now().Add(timeout))
	if err := tc.Handshake(); err != nil {
		_ = raw.Close()
		return nil, err
	}
	if st := tc.ConnectionState(); len(st.PeerCertificates) > 0 {
		id, _ := pki.ServerNodeID(st)
		dialedConns.identify(raw, pki.Serial(st.PeerCertificates[0]), id)
	}
	if _, err := tc.Write([]byte{proto}); err != nil {
		_ = tc.Close()
		return nil, err
	}
	_ = tc.SetDeadline(time.Time{})
	return tc, nil
}
