package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	miekg "github.com/miekg/dns"
)

// runDNS starts d on loopback and returns its address and a stop that
// reports whether Run returned within wait.
func runDNS(t *testing.T, d *Server) (addr string, stop func(wait time.Duration) bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	select {
	case <-d.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("DNS not ready")
	}
	returned := false
	stop = func(wait time.Duration) bool {
		cancel()
		if returned {
			return true
		}
		select {
		case <-done:
			returned = true
		case <-time.After(wait):
		}
		return returned
	}
	t.Cleanup(func() { stop(30 * time.Second) })
	return d.Addr(), stop
}

// tcpQuery frames a query for name as DNS over TCP does.
func tcpQuery(t *testing.T, name string, id uint16) []byte {
	t.Helper()
	m := new(miekg.Msg)
	m.SetQuestion(name, miekg.TypeA)
	m.Id = id
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...)
}

// A container that asks over TCP for big answers and never reads them
// fills the socket buffers; the server's write then blocked for good
// (miekg/dns sets no write deadline), holding the connection's goroutine
// and making Run wait for it forever at shutdown.
func TestDNSTCPStalledReaderDoesNotHoldServer(t *testing.T) {
	d := New(Config{Addr: "127.0.0.1:0"})
	var ips []net.IP
	for i := range 2500 { // ~62 KiB an answer, uncompressed
		ips = append(ips, net.IPv4(10, 1, byte(i>>8), byte(i)))
	}
	d.Set(Records{"tasks.big": ips})
	addr, stop := runDNS(t, d)

	dialer := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
	}}
	conn, err := dialer.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var batch []byte
	for i := range 128 {
		batch = append(batch, tcpQuery(t, "tasks.big.", uint16(i))...)
	}
	if _, err := conn.Write(batch); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // let the server fill the buffers and block
	if !stop(20 * time.Second) {
		t.Fatal("Run did not return: a TCP client that does not read holds the server")
	}
}

// Every TCP connection holds a goroutine and a file of the agent: one
// source may hold only a few.
func TestDNSTCPConnectionsCappedPerSource(t *testing.T) {
	d := New(Config{Addr: "127.0.0.1:0"})
	d.tcpConns = newSourceLimiter(8, 2)
	d.Set(Records{"web": {net.IPv4(10, 43, 0, 2)}})
	addr, _ := runDNS(t, d)

	var conns []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	// The third is closed at once.
	_ = conns[2].SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := conns[2].Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("third connection from one source: read err = %v, want it closed by the server", err)
	}
	// The first two are served.
	for i, c := range conns[:2] {
		dc := &miekg.Conn{Conn: c}
		m := new(miekg.Msg)
		m.SetQuestion("web.", miekg.TypeA)
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		if err := dc.WriteMsg(m); err != nil {
			t.Fatalf("conn %d: %v", i, err)
		}
		r, err := dc.ReadMsg()
		if err != nil || len(r.Answer) != 1 {
			t.Fatalf("conn %d: answer %v, err %v", i, r, err)
		}
	}
	// A closed connection gives its slot back.
	conns[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		dc := &miekg.Conn{Conn: c}
		m := new(miekg.Msg)
		m.SetQuestion("web.", miekg.TypeA)
		_ = c.SetDeadline(time.Now().Add(time.Second))
		_ = dc.WriteMsg(m)
		r, err := dc.ReadMsg()
		c.Close()
		if err == nil && len(r.Answer) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot of a closed connection not given back: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A container flooding names that upstream answers slowly made the agent
// hold a goroutine and a socket for each until the timeout: the queries in
// flight are capped per source, and those over the cap fail at once.
func TestDNSForwardsCappedPerSource(t *testing.T) {
	up, err := net.ListenPacket("udp", "127.0.0.1:0") // never answers
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	d := New(Config{Addr: "127.0.0.1:0", Upstreams: []string{up.LocalAddr().String()}, Timeout: 4 * time.Second})
	d.forwards = newSourceLimiter(8, 2)
	addr, _ := runDNS(t, d)

	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dc := &miekg.Conn{Conn: c}
	const n = 10
	for i := range n {
		m := new(miekg.Msg)
		m.SetQuestion("slow.example.org.", miekg.TypeA)
		m.Id = uint16(i + 1)
		if err := dc.WriteMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	servfail := 0
	for servfail < n-2 {
		r, err := dc.ReadMsg()
		if err != nil {
			t.Fatalf("%d SERVFAIL answers before %v, want %d at once", servfail, err, n-2)
		}
		if r.Rcode == miekg.RcodeServerFailure {
			servfail++
		}
	}
	// The upstream saw only the two in flight.
	_ = up.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	seen := 0
	buf := make([]byte, 512)
	for {
		if _, _, err := up.ReadFrom(buf); err != nil {
			break
		}
		seen++
	}
	if seen != 2 {
		t.Fatalf("upstream got %d queries, want 2", seen)
	}
}

// A container can send a query with another container's address: an
// answer over UDP is at most maxUDPAnswer however big a buffer the query
// offers, for our names and for forwarded ones.
func TestDNSUDPAnswersBounded(t *testing.T) {
	var mu sync.Mutex
	var offered []uint16
	h := miekg.HandlerFunc(func(w miekg.ResponseWriter, r *miekg.Msg) {
		mu.Lock()
		if opt := r.IsEdns0(); opt != nil {
			offered = append(offered, opt.UDPSize())
		}
		mu.Unlock()
		m := new(miekg.Msg)
		m.SetReply(r)
		_ = w.WriteMsg(m)
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := &miekg.Server{PacketConn: pc, Handler: h}
	go func() { _ = up.ActivateAndServe() }()
	t.Cleanup(func() { _ = up.Shutdown() })

	d := New(Config{Addr: "127.0.0.1:0", Upstreams: []string{pc.LocalAddr().String()}})
	var ips []net.IP
	for i := range 2500 {
		ips = append(ips, net.IPv4(10, 1, byte(i>>8), byte(i)))
	}
	d.Set(Records{"tasks.big": ips})
	addr, _ := runDNS(t, d)

	c := &miekg.Client{Net: "udp", Timeout: 3 * time.Second, UDPSize: miekg.MaxMsgSize}
	m := new(miekg.Msg)
	m.SetQuestion("tasks.big.", miekg.TypeA)
	m.SetEdns0(miekg.MaxMsgSize, false)
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatal(err)
	}
	r.Compress = true // as it was sent
	if n := r.Len(); n > maxUDPAnswer || !r.Truncated {
		t.Fatalf("UDP answer of %d bytes (truncated %v) to a query offering 64 KiB, want at most %d and truncated", n, r.Truncated, maxUDPAnswer)
	}
	m.SetQuestion("fat.example.org.", miekg.TypeTXT)
	if _, _, err := c.Exchange(m, addr); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(offered) != 1 || offered[0] > maxUDPAnswer {
		t.Fatalf("upstream was offered UDP sizes %v, want one of at most %d", offered, maxUDPAnswer)
	}
}
