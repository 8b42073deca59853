package membership

// Why a transport of our own: memberlist's NetTransport reads every UDP
// packet into a fresh 64 KiB buffer and hands that buffer on, so each ping
// and ack, tens of bytes, costs a 64 KiB allocation and its zeroing. On an
// idle agent (~6 packets a second under the fast profile) that was most of
// what it allocated, ~0.4 MB/s: it set the pace of the garbage collector
// (a cycle every ~10 s, each a few wake-ups of its own) and the zeroing was
// a fifth of the agent's sampled CPU (pprof, idle 3-node cluster). This
// transport reads into one buffer it keeps and hands memberlist a copy of
// the packet's own size. Everything else is NetTransport's behaviour: TCP
// and UDP on one port, a large socket receive buffer, plain TCP dials.

import (
	"errors"
	"fmt"
	"log"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// maxPacket is the largest UDP payload: a datagram never needs more.
const maxPacket = 65536

// udpRecvBuf is the socket receive buffer asked for (halved until the
// kernel accepts it), as NetTransport does, so a burst is not dropped.
const udpRecvBuf = 2 << 20

// transport is memberlist's packet and stream transport on one address.
type transport struct {
	tcp      *net.TCPListener
	udp      *net.UDPConn
	logger   *log.Logger
	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	shutdown atomic.Bool
	wg       sync.WaitGroup
}

var _ memberlist.NodeAwareTransport = (*transport)(nil)

// newTransport listens on addr:port for TCP and UDP; port 0 takes a free
// port for both (retried: the UDP port may be taken where TCP's was free).
func newTransport(addr string, port int, logger *log.Logger) (*transport, error) {
	var ip net.IP // "" is every address, as for NetTransport
	if addr != "" {
		if ip = net.ParseIP(addr); ip == nil {
			return nil, fmt.Errorf("gossip bind address %q is not an IP", addr)
		}
	}
	var tcp *net.TCPListener
	var udp *net.UDPConn
	var err error
	for try := 0; ; try++ {
		tcp, err = net.ListenTCP("tcp", &net.TCPAddr{IP: ip, Port: port})
		if err != nil {
			return nil, fmt.Errorf("gossip TCP listener: %w", err)
		}
		p := tcp.Addr().(*net.TCPAddr).Port
		udp, err = net.ListenUDP("udp", &net.UDPAddr{IP: ip, Port: p})
		if err == nil {
			break
		}
		_ = tcp.Close()
		if port != 0 || try == 9 {
			return nil, fmt.Errorf("gossip UDP listener: %w", err)
		}
	}
	for size := udpRecvBuf; size > 0; size /= 2 {
		if udp.SetReadBuffer(size) == nil {
			break
		}
	}
	t := &transport{
		tcp:      tcp,
		udp:      udp,
		logger:   logger,
		packetCh: make(chan *memberlist.Packet),
		streamCh: make(chan net.Conn),
	}
	t.wg.Add(2)
	go t.acceptLoop()
	go t.readLoop()
	return t, nil
}

// port is where t listens (TCP and UDP alike).
func (t *transport) port() int { return t.tcp.Addr().(*net.TCPAddr).Port }

// FinalAdvertiseAddr is ip:port as configured; an empty ip is the bind
// address, which must then be a specific one, and port 0 is t's port.
func (t *transport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	if port == 0 {
		port = t.port()
	}
	var adv net.IP
	if ip != "" {
		if adv = net.ParseIP(ip); adv == nil {
			return nil, 0, fmt.Errorf("gossip advertise address %q is not an IP", ip)
		}
	} else {
		adv = t.tcp.Addr().(*net.TCPAddr).IP
		if adv == nil || adv.IsUnspecified() {
			return nil, 0, errors.New("gossip bound to every address: an advertise address is needed")
		}
	}
	if v4 := adv.To4(); v4 != nil {
		adv = v4
	}
	return adv, port, nil
}

// WriteTo sends packet b to addr (host:port).
func (t *transport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress sends packet b to a.Addr.
func (t *transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	to, err := net.ResolveUDPAddr("udp", a.Addr)
	if err != nil {
		return time.Time{}, err
	}
	_, err = t.udp.WriteTo(b, to)
	return time.Now(), err
}

// PacketCh delivers the packets received.
func (t *transport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

// DialTimeout opens a stream to addr.
func (t *transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// DialAddressTimeout opens a stream to a.Addr.
func (t *transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	return d.Dial("tcp", a.Addr)
}

// StreamCh delivers the streams accepted.
func (t *transport) StreamCh() <-chan net.Conn { return t.streamCh }

// Shutdown closes both listeners and waits for their loops.
func (t *transport) Shutdown() error {
	t.shutdown.Store(true)
	_ = t.tcp.Close()
	_ = t.udp.Close()
	t.wg.Wait()
	return nil
}

// acceptLoop hands accepted TCP connections to memberlist, backing off
// (5 ms doubling to 1 s) while Accept fails, as NetTransport does.
func (t *transport) acceptLoop() {
	defer t.wg.Done()
	var delay time.Duration
	for {
		c, err := t.tcp.AcceptTCP()
		if err != nil {
			if t.shutdown.Load() {
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t.logger.Printf("[ERR] memberlist: Error accepting TCP connection: %v", err)
			time.Sleep(delay)
			continue
		}
		delay = 0
		t.streamCh <- c
	}
}

// readLoop hands received packets to memberlist, each in a buffer of its
// own size (packetOf): memberlist keeps some of them (queued alive, suspect
// and dead messages), so the read buffer cannot be lent.
func (t *transport) readLoop() {
	defer t.wg.Done()
	buf := make([]byte, maxPacket)
	for {
		n, from, err := t.udp.ReadFrom(buf)
		now := time.Now()
		if err != nil {
			if t.shutdown.Load() {
				return
			}
			t.logger.Printf("[ERR] memberlist: Error reading UDP packet: %v", err)
			continue
		}
		if p := packetOf(buf, n, from, now); p != nil {
			t.packetCh <- p
		}
	}
}

// packetOf is the packet of the first n bytes of buf, copied, or nil for an
// empty read (memberlist's NetTransport drops those too).
func packetOf(buf []byte, n int, from net.Addr, at time.Time) *memberlist.Packet {
	if n < 1 {
		return nil
	}
	return &memberlist.Packet{Buf: append([]byte(nil), buf[:n]...), From: from, Timestamp: at}
}
