package clusterport

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/shoal-org/shoal/consensus"
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

func (p *testPKI) node(nodeID string) tls.Certificate {
	p.t.Helper()
	certPEM, keyPEM, _, err := p.ca.IssueNodeCert(nodeID, []net.IP{net.ParseIP("127.0.0.1")}, time.Now())
	if err != nil {
		p.t.Fatal(err)
	}
	cert, err := pki.TLSCertificate(certPEM, keyPEM, p.ca.CertPEM())
	if err != nil {
		p.t.Fatal(err)
	}
	return cert
}

func (p *testPKI) client(nodeID string) *tls.Config {
	return pki.ClientTLS(p.node(nodeID), p.ca.Pool())
}

// server is a cluster port on loopback whose RPC methods are ping (the
// answering node's ID, as the agent's) and echo (a Unary handler that
// answers the caller's ID and the body's text).
type server struct {
	m    *Mux
	addr string
	pki  *testPKI
	done chan error
}

type echoRequest struct {
	Text string `json:"text"`
}

func testMethods(method string) Handler {
	switch method {
	case wire.MethodPing:
		return NoBody(func(context.Context, string) (any, error) { return map[string]string{"node_id": "server"}, nil })
	case "echo":
		return Unary("echo request", func(_ context.Context, peerID string, req echoRequest) (any, error) {
			return map[string]string{"peer": peerID, "text": req.Text}, nil
		})
	case "big":
		return NoBody(func(context.Context, string) (any, error) { return strings.Repeat("x", 32<<20), nil })
	case "panic":
		return NoBody(func(context.Context, string) (any, error) {
			var m map[string]int
			m["boom"]++ // a handler bug a peer's request reaches
			return nil, nil
		})
	}
	return nil
}

// TestHandlerPanicRefusesTheCall: a handler that panics on a peer's
// request refuses that call; the process (the agent) and the port go on.
func TestHandlerPanicRefusesTheCall(t *testing.T) {
	s := startServer(t, nil)
	err := (Dialer{}).Call(rpcCtx(t), s.addr, s.pki.client("node-b"), "panic", nil, nil, nil)
	var we *wire.Error
	if !errors.As(err, &we) || !strings.Contains(we.Msg, "internal error in panic") {
		t.Fatalf("call of a panicking handler: %v", err)
	}
	var out map[string]string
	if err := (Dialer{}).Call(rpcCtx(t), s.addr, s.pki.client("node-b"), "echo", echoRequest{Text: "still"}, &out, nil); err != nil || out["text"] != "still" {
		t.Fatalf("the port after a panic: %v %v", out, err)
	}
}

func startServer(t *testing.T, fence Fence) *server {
	t.Helper()
	s := &server{pki: newTestPKI(t, "cluster-a"), done: make(chan error, 1)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	s.m = NewMux(MuxConfig{
		Listener: ln,
		TLS:      pki.ServerTLS(s.pki.node("server"), s.pki.ca.Pool(), nil),
		Log:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		RPC:      func(c *tls.Conn) { Serve(ctx, c, testMethods) },
		Fence:    fence,
	})
	go func() { s.done <- s.m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-s.done:
			if err != nil {
				t.Errorf("Mux.Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Mux.Run did not return after its context ended")
		}
	})
	return s
}

func rpcCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitForWithin(t, 10*time.Second, what, cond)
}

// waitForWithin is waitFor with its own bound.
func waitForWithin(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling a counter; nothing to subscribe to
	}
}

func TestServeMethods(t *testing.T) {
	s := startServer(t, nil)
	anon := pki.JoinTLS(s.pki.ca.Fingerprint())
	tests := []struct {
		name   string
		cfg    *tls.Config
		method string
		body   any
		want   map[string]string
		refuse string // the answer's message, when refused
		code   string
	}{
		{name: "ping with a certificate", cfg: s.pki.client("node-b"), method: wire.MethodPing, want: map[string]string{"node_id": "server"}},
		{name: "ping without", cfg: anon, method: wire.MethodPing, want: map[string]string{"node_id": "server"}},
		{name: "unary gets the body and the caller", cfg: s.pki.client("node-b"), method: "echo", body: echoRequest{Text: "hi"},
			want: map[string]string{"peer": "node-b", "text": "hi"}},
		{name: "unary with a body that is not its request", cfg: s.pki.client("node-b"), method: "echo", body: "not an object",
			refuse: "malformed echo request"},
		{name: "unknown method", cfg: s.pki.client("node-b"), method: "no-such-method", refuse: `unknown rpc method "no-such-method"`},
		{name: "no certificate", cfg: anon, method: "echo", body: echoRequest{}, refuse: "a node certificate is required", code: wire.CodeRefused},
		{name: "no certificate, unknown method", cfg: anon, method: "no-such-method", refuse: "a node certificate is required", code: wire.CodeRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out map[string]string
			err := Dialer{}.Call(rpcCtx(t), s.addr, tt.cfg, tt.method, tt.body, &out, nil)
			if tt.refuse == "" {
				if err != nil {
					t.Fatal(err)
				}
				for k, v := range tt.want {
					if out[k] != v {
						t.Errorf("answer %v, want %v", out, tt.want)
					}
				}
				return
			}
			var re *wire.Error
			if !errors.As(err, &re) || !strings.Contains(re.Msg, tt.refuse) || re.Code != tt.code {
				t.Fatalf("err = %#v, want an answer %q with code %q", err, tt.refuse, tt.code)
			}
		})
	}
}

func TestRPCMalformedRequestLine(t *testing.T) {
	s := startServer(t, nil)
	conn, err := Dialer{}.Dial(s.addr, time.Second, s.pki.client("node-b"), ProtoRPC)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("this is not json\n")); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(conn).ReadBytes('\n')
	if err != nil {
		t.Fatal(err)
	}
	var resp wire.Response
	if err := json.Unmarshal(line, &resp); err != nil || !strings.Contains(resp.Error, "malformed rpc request") {
		t.Fatalf("answer %s (%v), want a malformed request error", line, err)
	}
}

func TestRPCAnonymousRequestLineIsSmall(t *testing.T) {
	s := startServer(t, nil)
	c, err := Dialer{}.Dial(s.addr, time.Second, pki.JoinTLS(s.pki.ca.Fingerprint()), ProtoRPC)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Longer than a joiner ever needs, far below the certified limit.
	line := `{"method":"join","body":"` + strings.Repeat("x", MaxAnonRequestLine) + `"}` + "\n"
	go func() { _, _ = c.Write([]byte(line)) }()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if len(b) != 0 {
		t.Fatalf("answered an oversized anonymous request: %q (%v)", b, err)
	}
}

func TestMuxLimitsUnauthenticatedConnections(t *testing.T) {
	s := startServer(t, nil)
	s.m.SetLimits(Limits{MaxConns: 100, MaxAnon: 50, MaxAnonPerIP: 4})
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// Idle TCP connections that never start TLS: at most 4 are held.
	for i := 0; i < 10; i++ {
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	waitFor(t, "4 unauthenticated connections held", func() bool { _, anon := s.m.Counts(); return anon == 4 })
	closedByServer := 0
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err == io.EOF {
			closedByServer++
		}
	}
	if closedByServer != 6 {
		t.Fatalf("%d connections closed at once by the server, want 6", closedByServer)
	}
	// A certified peer is still served while an address is at its cap:
	// caps are per source address, and loopback is the same one here, so
	// free the slots first.
	for _, c := range conns {
		c.Close()
	}
	waitFor(t, "slots released", func() bool { open, anon := s.m.Counts(); return open == 0 && anon == 0 })
	var out map[string]string
	if err := (Dialer{}).Call(rpcCtx(t), s.addr, s.pki.client("node-b"), wire.MethodPing, nil, &out, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ping's slot released", func() bool { open, anon := s.m.Counts(); return open == 0 && anon == 0 })
}

// recordingTracker is a Tracker that remembers what it was told.
type recordingTracker struct {
	mu         sync.Mutex
	tracked    int
	identified []string // peer IDs, one per Identify
	serials    []string
}

func (r *recordingTracker) Track(raw net.Conn) net.Conn {
	r.mu.Lock()
	r.tracked++
	r.mu.Unlock()
	return raw
}

func (r *recordingTracker) Identify(_ net.Conn, serial, peerID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.identified = append(r.identified, peerID)
	r.serials = append(r.serials, serial)
}

func (r *recordingTracker) peers() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.serials {
		if s == "" {
			return []string{"identified without a serial"}
		}
	}
	return append([]string{}, r.identified...)
}

// TestTrackers: both sides report the certified peer of each connection
// to their tracker (a revocation closes them by it); an anonymous peer is
// tracked but never identified.
func TestTrackers(t *testing.T) {
	p := newTestPKI(t, "cluster-a")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := &recordingTracker{}
	ctx, cancel := context.WithCancel(context.Background())
	m := NewMux(MuxConfig{
		Listener: ln, TLS: pki.ServerTLS(p.node("server"), p.ca.Pool(), nil),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Tracker: accepted,
		RPC: func(c *tls.Conn) { Serve(ctx, c, testMethods) },
	})
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() { cancel(); <-done }()

	dialled := &recordingTracker{}
	d := Dialer{Tracker: dialled}
	if err := d.Call(rpcCtx(t), ln.Addr().String(), p.client("node-b"), wire.MethodPing, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := d.Call(rpcCtx(t), ln.Addr().String(), pki.JoinTLS(p.ca.Fingerprint()), wire.MethodPing, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both accepted connections tracked", func() bool {
		accepted.mu.Lock()
		defer accepted.mu.Unlock()
		return accepted.tracked == 2
	})
	if got := accepted.peers(); len(got) != 1 || got[0] != "node-b" {
		t.Errorf("accepted side identified %v, want [node-b] (the joiner has no certificate)", got)
	}
	if got := dialled.peers(); len(got) != 2 || got[0] != "server" || got[1] != "server" {
		t.Errorf("dialling side identified %v, want the server twice", got)
	}
}

func TestMuxRaftNeedsCertificate(t *testing.T) {
	s := startServer(t, nil)
	layer := &RaftLayer{Mux: s.m, Client: func() *tls.Config { return s.pki.client("node-b") }}

	// Without a certificate the raft connection is dropped after the
	// protocol byte and never reaches raft.
	c, err := Dialer{}.Dial(s.addr, time.Second, pki.JoinTLS(s.pki.ca.Fingerprint()), ProtoRaft)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("raft connection without a certificate was kept open")
	}
	c.Close()

	// With one it is handed to raft.
	accepted := make(chan net.Conn, 1)
	go func() {
		conn, err := layer.Accept()
		if err == nil {
			accepted <- conn
		}
	}()
	rc, err := layer.Dial(raft.ServerAddress(s.addr), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	select {
	case conn := <-accepted:
		tc, ok := conn.(*tls.Conn)
		if !ok {
			t.Fatalf("raft got a %T", conn)
		}
		if id, ok := pki.PeerNodeID(tc.ConnectionState()); !ok || id != "node-b" {
			t.Errorf("raft peer %q %v, want node-b", id, ok)
		}
		// Bytes flow both ways.
		if _, err := rc.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 1)
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(conn, b); err != nil || b[0] != 'x' {
			t.Fatalf("read %q %v", b, err)
		}
		conn.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("raft connection with a certificate never reached raft")
	}
	if layer.Addr().String() != s.addr {
		t.Errorf("layer address %s, want %s", layer.Addr(), s.addr)
	}
}

// TestMuxRaftGate: the gate sees the certified peer and a refusal closes
// the connection before raft gets it.
func TestMuxRaftGate(t *testing.T) {
	s := startServer(t, nil)
	var asked atomic.Value
	s.m.SetRaftGate(func(peerID string) error {
		asked.Store(peerID)
		return errors.New("not a member")
	})
	layer := &RaftLayer{Mux: s.m, Client: func() *tls.Config { return s.pki.client("node-x") }}
	got := make(chan net.Conn, 1)
	go func() {
		if c, err := layer.Accept(); err == nil {
			got <- c
		}
	}()
	rc, err := layer.Dial(raft.ServerAddress(s.addr), time.Second)
	if err != nil {
		t.Fatal(err) // the epoch answer comes before the gate
	}
	defer rc.Close()
	_ = rc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := rc.Read(make([]byte, 1)); err == nil {
		t.Error("a refused raft connection was kept open")
	}
	if asked.Load() != "node-x" {
		t.Errorf("the gate was asked about %v, want node-x", asked.Load())
	}
	select {
	case c := <-got:
		c.Close()
		t.Fatal("a refused raft connection reached raft")
	default:
	}
}

// stubFence is a Fence at a fixed epoch that records the verdicts.
type stubFence struct {
	epoch uint64
	mu    sync.Mutex
	seen  []uint64
}

func (f *stubFence) Local() uint64 { return f.epoch }

func (f *stubFence) Check(_ string, theirs uint64) consensus.EpochVerdict {
	f.mu.Lock()
	f.seen = append(f.seen, theirs)
	f.mu.Unlock()
	return consensus.CompareEpochs(f.epoch, theirs)
}

// TestRaftEpochMismatch: a dialer at another epoch is answered with the
// acceptor's and refused, on both sides; a nil Fence is epoch 0.
func TestRaftEpochMismatch(t *testing.T) {
	acc := &stubFence{epoch: 2}
	s := startServer(t, acc)
	for _, tt := range []struct {
		name   string
		dialer Fence
	}{
		{"older dialer", &stubFence{epoch: 1}},
		{"nil fence is epoch 0", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			layer := &RaftLayer{Mux: s.m, Client: func() *tls.Config { return s.pki.client("node-b") }, Fence: tt.dialer}
			_, err := layer.Dial(raft.ServerAddress(s.addr), time.Second)
			if !errors.Is(err, ErrEpochMismatch) || !strings.Contains(err.Error(), "theirs 2") {
				t.Fatalf("dial: %v, want ErrEpochMismatch naming their epoch 2", err)
			}
		})
	}
	// The dialer learns the mismatch from the acceptor's epoch alone, so
	// the acceptor may judge the last dial after Dial returned.
	waitFor(t, "the acceptor judges both dials", func() bool {
		acc.mu.Lock()
		defer acc.mu.Unlock()
		return len(acc.seen) >= 2
	})
	acc.mu.Lock()
	defer acc.mu.Unlock()
	// Each judgment runs on its own connection's goroutine: any order.
	if got := slices.Sorted(slices.Values(acc.seen)); !slices.Equal(got, []uint64{0, 1}) {
		t.Errorf("the acceptor judged %v, want epochs 1 and 0", acc.seen)
	}
}

func TestMuxUnknownProtocolByte(t *testing.T) {
	s := startServer(t, nil)
	c, err := Dialer{}.Dial(s.addr, time.Second, s.pki.client("node-b"), 'X')
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("a connection with an unknown protocol byte was kept open")
	}
}

func TestMuxCloseStopsRaftLayer(t *testing.T) {
	s := startServer(t, nil)
	layer := &RaftLayer{Mux: s.m}
	errc := make(chan error, 1)
	go func() { _, err := layer.Accept(); errc <- err }()
	if err := layer.Close(); err != nil {
		t.Fatal(err)
	}
	s.m.Close() // idempotent
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not return after Close")
	}
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("Mux.Run: %v", err)
		}
		s.done <- nil // for the cleanup
	case <-time.After(5 * time.Second):
		t.Fatal("Mux.Run did not return after Close")
	}
}

func TestCallDeadlines(t *testing.T) {
	t.Run("expired context", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), -time.Second)
		defer cancel()
		if err := (Dialer{}).Call(ctx, "127.0.0.1:1", &tls.Config{}, wire.MethodPing, nil, nil, nil); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want DeadlineExceeded", err)
		}
	})
	t.Run("peer accepts but never answers", func(t *testing.T) {
		// A TCP server that swallows everything: the TLS handshake never
		// completes, and the connect bound (DialTimeout) must end the call.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var conns []net.Conn
		var mu sync.Mutex
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}()
		defer func() {
			ln.Close()
			<-done
			mu.Lock()
			for _, c := range conns {
				c.Close()
			}
			mu.Unlock()
		}()
		start := time.Now()
		err = Dialer{}.Call(rpcCtx(t), ln.Addr().String(), pki.JoinTLS("x"), wire.MethodPing, nil, nil, nil)
		if err == nil {
			t.Fatal("a silent peer answered")
		}
		// A transport problem, not an answer: the agent's writes retry it.
		var re *wire.Error
		if !IsDialError(err) || errors.As(err, &re) {
			t.Errorf("a silent peer should be a DialError: %#v", err)
		}
		if d := time.Since(start); d > 4*time.Second {
			t.Errorf("the call took %v, connect should be bounded by %v", d, DialTimeout)
		}
	})
	t.Run("a streaming call gets the rest of the connection", func(t *testing.T) {
		s := startServer(t, nil)
		ctx := rpcCtx(t)
		var calls atomic.Int32
		errc := make(chan error, 1)
		go func() {
			errc <- Dialer{}.Call(ctx, s.addr, s.pki.client("node-b"), wire.MethodPing, nil, nil, func(r io.Reader) error {
				calls.Add(1)
				_, err := io.Copy(io.Discard, r) // the server closes after ping
				return err
			})
		}()
		select {
		case err := <-errc:
			if err != nil {
				t.Fatalf("stream: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("stream did not end")
		}
		if calls.Load() != 1 {
			t.Errorf("stream called %d times", calls.Load())
		}
	})
}

// TestCallBoundsAnswerLine: a caller buffers at most maxAnswerLine of a
// peer's answer; a longer line fails the call (a peer could otherwise make
// it buffer all it sends until the deadline).
func TestCallBoundsAnswerLine(t *testing.T) {
	defer func(n int) { maxAnswerLine = n }(maxAnswerLine)
	maxAnswerLine = 4 << 10
	s := startServer(t, nil)
	var out map[string]string
	if err := (Dialer{}).Call(rpcCtx(t), s.addr, s.pki.client("node-b"), "echo", echoRequest{Text: "short"}, &out, nil); err != nil || out["text"] != "short" {
		t.Fatalf("a short answer: %v %v", out, err)
	}
	err := (Dialer{}).Call(rpcCtx(t), s.addr, s.pki.client("node-b"), "echo", echoRequest{Text: strings.Repeat("x", 8<<10)}, &out, nil)
	if !errors.Is(err, wire.ErrLineTooLong) {
		t.Fatalf("an answer line over the bound: %v, want ErrLineTooLong", err)
	}
}

// TestReplyWriteDeadline: a certified peer that asks for a big answer and
// never reads it held the handler (and its connection slot) for good; the
// answer's write now fails after replyWriteTimeout and the connection
// closes.
func TestReplyWriteDeadline(t *testing.T) {
	// Restored after the server's cleanup (cleanups run last first).
	t.Cleanup(func(d time.Duration) func() { return func() { replyWriteTimeout = d } }(replyWriteTimeout))
	replyWriteTimeout = 500 * time.Millisecond
	s := startServer(t, nil)
	c, err := (Dialer{}).Dial(s.addr, time.Second, s.pki.client("node-b"), ProtoRPC)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(`{"method":"big"}` + "\n")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the connection was accepted", func() bool { open, _ := s.m.Counts(); return open == 1 })
	// Encoding the 32 MiB answer alone takes seconds under -race on a busy
	// machine: a bound of its own, far below "for good".
	waitForWithin(t, time.Minute, "the handler gave up on a peer that does not read", func() bool { open, _ := s.m.Counts(); return open == 0 })
}

// TestMuxLimitsConnectionsPerPeer: one certified node cannot hold all of
// the port's connections (a `logs -f` of a quiet task stays open for
// good); the others are still served.
func TestMuxLimitsConnectionsPerPeer(t *testing.T) {
	s := startServer(t, nil)
	s.m.SetLimits(Limits{MaxConns: 100, MaxAnon: 50, MaxAnonPerIP: 50, MaxPerPeer: 2})
	var conns []*tls.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// RPC connections that send no request line are held by the server.
	for range 3 {
		c, err := (Dialer{}).Dial(s.addr, time.Second, s.pki.client("node-b"), ProtoRPC)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	waitFor(t, "node b's connections counted", func() bool { open, anon := s.m.Counts(); return open == 2 && anon == 0 })
	closedByServer := 0
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); errors.Is(err, io.EOF) {
			closedByServer++
		}
	}
	if closedByServer != 1 {
		t.Fatalf("%d of node b's 3 connections closed by the server, want 1", closedByServer)
	}
	// Another node is served.
	var out map[string]string
	if err := (Dialer{}).Call(rpcCtx(t), s.addr, s.pki.client("node-c"), wire.MethodPing, nil, &out, nil); err != nil {
		t.Fatalf("another node while node b is at its cap: %v", err)
	}
	// Node b's slots come back when its connections close.
	for _, c := range conns {
		c.Close()
	}
	waitFor(t, "slots released", func() bool { open, _ := s.m.Counts(); return open == 0 })
	if err := (Dialer{}).Call(rpcCtx(t), s.addr, s.pki.client("node-b"), wire.MethodPing, nil, &out, nil); err != nil {
		t.Fatalf("node b after closing its connections: %v", err)
	}
}
