package clusterport

// One TCP port (2377) carries two protocols, as Consul does: after the TLS
// handshake the first byte the client writes selects Raft or RPC. Raft
// connections must present a valid, unrevoked node certificate; RPC
// connections may come without one, because a joining node has no certificate
// yet, and every RPC method except join, ping and the removal question
// (node/revocation) checks the peer identity itself. A raft connection then
// exchanges cluster epochs (epoch.go; the agent's fence judges them) and
// goes to raft only when both ends run at the same one.
//
// Before the TLS handshake nobody is known, so the port is cheap to hold
// open: connections are capped globally and per source IP while they are
// unauthenticated (handshake, protocol byte, a joiner's one request), the
// handshake and protocol byte must come within handshakeTimeout, and
// nothing is buffered beyond TLS records until the peer is known. A Raft
// connection is admitted only from a voter of the Raft configuration
// (authz.RaftPeerAllowed; the agent installs the gate, SetRaftGate).

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

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/pki"
)

// The protocol byte a client writes after the TLS handshake.
const (
	ProtoRaft byte = 'R'
	ProtoRPC  byte = 'C'
)

// handshakeTimeout bounds how long an unauthenticated connection may take
// to finish TLS and pick a protocol, so idle probes cannot pin goroutines.
const handshakeTimeout = 5 * time.Second

// maxAnonBytes bounds what the agent reads from a connection before the
// peer is authenticated: the TLS handshake (a few KiB) plus a joiner's one
// request (MaxAnonRequestLine).
const maxAnonBytes = 64 << 10

// errAnonBytes ends an unauthenticated connection that sent too much.
var errAnonBytes = errors.New("too many bytes before authentication")

// Limits caps connections on the cluster port.
type Limits struct {
	// MaxConns bounds all open connections (peers hold a few each).
	MaxConns int
	// MaxAnon bounds connections not yet authenticated, in total and per
	// source IP (MaxAnonPerIP): a node's own handshakes finish in
	// milliseconds, a joiner needs one.
	MaxAnon      int
	MaxAnonPerIP int
	// MaxPerPeer bounds the open connections of one certified node (0:
	// no bound): a node holds a few (raft, a status report, log streams of
	// `service logs -f`), and without a bound a single certificate could
	// hold all MaxConns (a follow of a quiet task's logs stays open for
	// good), locking every other node out of the port.
	MaxPerPeer int
}

// DefaultLimits are the caps of a production agent.
func DefaultLimits() Limits {
	return Limits{MaxConns: 2048, MaxAnon: 256, MaxAnonPerIP: 32, MaxPerPeer: 256}
}

// Fence is the cluster epoch the Raft handshake presents and judges (the
// agent's fence). Check may record that a newer epoch fenced this node; both
// must be safe for concurrent use. A nil Fence is epoch 0 and fences nothing.
type Fence interface {
	// Local is this cluster instance's epoch.
	Local() uint64
	// Check judges the epoch a certified peer presented.
	Check(peer string, theirs uint64) consensus.EpochVerdict
}

// Tracker follows the connections of one side of the port by the peer's
// certificate, so that a revocation can close them (node/revocation).
// Both methods must be safe for concurrent use.
type Tracker interface {
	// Track starts following raw; the TLS connection is built on what it
	// returns, and closing that forgets it.
	Track(raw net.Conn) net.Conn
	// Identify records the certificate a handshake verified on c, a value
	// Track returned.
	Identify(c net.Conn, serial, peerID string)
}

// MuxConfig is what NewMux needs.
type MuxConfig struct {
	Listener net.Listener
	TLS      *tls.Config
	Log      *slog.Logger
	// RPC serves one RPC connection (Serve); it owns conn and closes it.
	RPC func(conn *tls.Conn)
	// Fence is this cluster instance's epoch (nil: epoch 0).
	Fence Fence
	// Tracker follows accepted connections (nil: none are followed).
	Tracker Tracker
}

// Mux accepts TLS connections on the cluster port and routes them: Raft
// connections to its RaftLayer, RPC connections to MuxConfig.RPC.
type Mux struct {
	ln     net.Listener
	tlsCfg *tls.Config
	log    *slog.Logger
	raftCh chan net.Conn
	rpc    func(conn *tls.Conn)
	fence  Fence
	conns  Tracker
	limits Limits
	// raftGate, when set, admits or refuses a Raft connection by the node
	// ID of its certificate.
	raftGate atomic.Pointer[func(peerID string) error]

	countMu  sync.Mutex
	open     int
	anon     int
	anonByIP map[string]int
	byPeer   map[string]int // open certified connections by node ID

	closeOnce sync.Once
	closed    chan struct{}
	wg        sync.WaitGroup
}

// NewMux returns a mux with DefaultLimits; Run starts it.
func NewMux(cfg MuxConfig) *Mux {
	return &Mux{
		ln:       cfg.Listener,
		tlsCfg:   cfg.TLS,
		log:      cfg.Log,
		raftCh:   make(chan net.Conn, 16),
		rpc:      cfg.RPC,
		fence:    cfg.Fence,
		conns:    cfg.Tracker,
		closed:   make(chan struct{}),
		limits:   DefaultLimits(),
		anonByIP: map[string]int{},
		byPeer:   map[string]int{},
	}
}

// SetLimits replaces the connection caps (tests); safe while Run runs.
func (m *Mux) SetLimits(l Limits) {
	m.countMu.Lock()
	defer m.countMu.Unlock()
	m.limits = l
}

// SetRaftGate installs the check of Raft peers; call it before Run.
func (m *Mux) SetRaftGate(f func(peerID string) error) { m.raftGate.Store(&f) }

// admit counts a new unauthenticated connection from ip, or refuses it
// when a cap is reached.
func (m *Mux) admit(ip string) bool {
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

// authenticated moves a connection from ip out of the unauthenticated
// count and counts it for peerID; false (not counted for the peer) when
// the peer is at MaxPerPeer.
func (m *Mux) authenticated(ip, peerID string) bool {
	m.countMu.Lock()
	defer m.countMu.Unlock()
	m.dropAnonLocked(ip)
	if m.limits.MaxPerPeer > 0 && m.byPeer[peerID] >= m.limits.MaxPerPeer {
		return false
	}
	m.byPeer[peerID]++
	return true
}

func (m *Mux) dropAnonLocked(ip string) {
	m.anon--
	if m.anonByIP[ip]--; m.anonByIP[ip] <= 0 {
		delete(m.anonByIP, ip)
	}
}

// release forgets a closed connection; peer is the node it was counted
// for ("" for none).
func (m *Mux) release(ip string, anon bool, peer string) {
	m.countMu.Lock()
	defer m.countMu.Unlock()
	m.open--
	if anon {
		m.dropAnonLocked(ip)
	}
	if peer != "" {
		if m.byPeer[peer]--; m.byPeer[peer] <= 0 {
			delete(m.byPeer, peer)
		}
	}
}

// Counts returns the open and unauthenticated connections (tests).
func (m *Mux) Counts() (open, anon int) {
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
func (m *Mux) Run(ctx context.Context) error {
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
func (m *Mux) handle(c net.Conn, ip string) {
	anon := true
	peer := "" // the node this connection is counted for
	tracked := c
	if m.conns != nil {
		tracked = m.conns.Track(c)
	}
	cc := &countedConn{Conn: tracked, release: func() { m.release(ip, anon, peer) }, limit: maxAnonBytes}
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
		if m.conns != nil {
			m.conns.Identify(tracked, pki.Serial(tc.ConnectionState().PeerCertificates[0]), peerID)
		}
		counted := m.authenticated(ip, peerID)
		anon = false // read by release, which runs in this goroutine or after it
		cc.authed.Store(true)
		if !counted {
			m.log.Warn("cluster port: too many connections from one node", "node_id", api.ShortID(peerID), "remote", c.RemoteAddr())
			_ = tc.Close()
			return
		}
		peer = peerID
	}
	switch b[0] {
	case ProtoRaft:
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
				"epoch", localEpoch(m.fence), "peer_epoch", theirs, "verdict", v, "err", err)
			_ = tc.Close()
			return
		}
		// The epoch goes first: a returning voter of an abandoned
		// configuration learns from this answer that it is fenced, even
		// though it is no member here any more.
		if gate := m.raftGate.Load(); gate != nil {
			if err := (*gate)(peerID); err != nil {
				m.log.Warn("raft connection refused", "remote", c.RemoteAddr(), "node_id", api.ShortID(peerID), "err", err)
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
	case ProtoRPC:
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
func (m *Mux) Close() {
	m.closeOnce.Do(func() {
		close(m.closed)
		_ = m.ln.Close()
	})
}

// RaftLayer adapts the mux to raft.StreamLayer.
type RaftLayer struct {
	Mux *Mux
	// Client is the TLS towards peers, read at every dial (it changes on
	// renewal).
	Client func() *tls.Config
	// Fence is this cluster instance's epoch (nil: epoch 0).
	Fence Fence
	// Dialer opens the connections (and tracks them).
	Dialer Dialer
}

var _ raft.StreamLayer = (*RaftLayer)(nil)

// Accept returns the next Raft connection the mux admitted.
func (l *RaftLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.Mux.raftCh:
		return c, nil
	case <-l.Mux.closed:
		return nil, net.ErrClosed
	}
}

// Close closes the mux.
func (l *RaftLayer) Close() error { l.Mux.Close(); return nil }

// Addr is the cluster port's address.
func (l *RaftLayer) Addr() net.Addr { return l.Mux.ln.Addr() }

// Dial connects to a peer's raft and runs the epoch handshake: a peer of
// another epoch is refused (and a newer one fences this node).
func (l *RaftLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := l.Dialer.Dial(string(address), timeout, l.Client(), ProtoRaft)
	if err != nil {
		return nil, err
	}
	peer := string(address)
	if id, ok := pki.ServerNodeID(c.ConnectionState()); ok {
		peer = id
	}
	if err := DialEpoch(c, l.Fence, peer, timeout); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// Dialer opens connections to cluster ports. The zero value tracks nothing.
type Dialer struct {
	// Tracker, when set, follows every dialled connection by the server's
	// certificate serial until it is closed, so that a revocation closes it.
	Tracker Tracker
	// ConnectTimeout bounds Call's connect and handshake; zero is
	// DialTimeout. Calls between members keep the short bound (a dead
	// peer must not eat a failover's time); a join, which has no other
	// peer to turn to, waits longer for a busy leader.
	ConnectTimeout time.Duration
}

func (d Dialer) connectTimeout() time.Duration {
	if d.ConnectTimeout > 0 {
		return d.ConnectTimeout
	}
	return DialTimeout
}

// Dial opens a TLS connection to a cluster port and selects a protocol.
func (d Dialer) Dial(addr string, timeout time.Duration, cfg *tls.Config, proto byte) (*tls.Conn, error) {
	nd := &net.Dialer{Timeout: timeout}
	conn, err := nd.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	raw := conn
	if d.Tracker != nil {
		raw = d.Tracker.Track(conn)
	}
	tc := tls.Client(raw, cfg)
	_ = tc.SetDeadline(time.Now().Add(timeout))
	if err := tc.Handshake(); err != nil {
		_ = raw.Close()
		return nil, err
	}
	if st := tc.ConnectionState(); len(st.PeerCertificates) > 0 && d.Tracker != nil {
		id, _ := pki.ServerNodeID(st)
		d.Tracker.Identify(raw, pki.Serial(st.PeerCertificates[0]), id)
	}
	if _, err := tc.Write([]byte{proto}); err != nil {
		_ = tc.Close()
		return nil, err
	}
	_ = tc.SetDeadline(time.Time{})
	return tc, nil
}
