package membership

import (
	"bytes"
	"io"
	"log"
	"net"
	"strconv"
	"testing"
	"time"
)

func TestPacketOf(t *testing.T) {
	from := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7946}
	at := time.Unix(1, 0)
	for _, c := range []struct {
		name string
		buf  []byte
		n    int
		want []byte // nil: no packet
	}{
		{"empty read", make([]byte, 8), 0, nil},
		{"ping", []byte("pingXXXX"), 4, []byte("ping")},
		{"whole buffer", []byte("abc"), 3, []byte("abc")},
	} {
		p := packetOf(c.buf, c.n, from, at)
		if c.want == nil {
			if p != nil {
				t.Errorf("%s: packet %q, want none", c.name, p.Buf)
			}
			continue
		}
		if p == nil || !bytes.Equal(p.Buf, c.want) || p.From != from || !p.Timestamp.Equal(at) {
			t.Errorf("%s: %+v, want %q from %v at %v", c.name, p, c.want, from, at)
			continue
		}
		// The packet is its own size and owns its bytes: the read buffer
		// is reused for the next packet.
		if cap(p.Buf) > len(c.want)+8 {
			t.Errorf("%s: buffer capacity %d for %d bytes", c.name, cap(p.Buf), len(c.want))
		}
		c.buf[0] = '!'
		if p.Buf[0] == '!' {
			t.Errorf("%s: packet shares the read buffer", c.name)
		}
	}
}

// Two packets in a row each keep their own bytes (the transport reads
// both into one buffer), and a stream reaches StreamCh.
func TestTransportLoopback(t *testing.T) {
	tr, err := newTransport("127.0.0.1", 0, log.New(io.Discard, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown()
	ip, port, err := tr.FinalAdvertiseAddr("", 0)
	if err != nil || !ip.Equal(net.IPv4(127, 0, 0, 1)) || port != tr.port() {
		t.Fatalf("advertise %v:%d, %v; want 127.0.0.1:%d", ip, port, err, tr.port())
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for _, msg := range []string{"first, longer packet", "second"} {
		if _, err := tr.WriteTo([]byte(msg), addr); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	var keep [][]byte
	for len(got) < 2 {
		select {
		case p := <-tr.PacketCh():
			keep = append(keep, p.Buf)
			got = append(got, string(p.Buf))
		case <-time.After(10 * time.Second):
			t.Fatalf("packets: got %q", got)
		}
	}
	if got[0] != "first, longer packet" || got[1] != "second" || string(keep[0]) != "first, longer packet" {
		t.Errorf("packets %q, first kept as %q", got, keep[0])
	}
	c, err := tr.DialTimeout(addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case s := <-tr.StreamCh():
		_ = s.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("no stream accepted")
	}
}

func TestTransportBadAddress(t *testing.T) {
	if _, err := newTransport("not-an-ip", 0, log.New(io.Discard, "", 0)); err == nil {
		t.Error("bind address not-an-ip accepted")
	}
	tr, err := newTransport("127.0.0.1", 0, log.New(io.Discard, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown()
	if _, _, err := tr.FinalAdvertiseAddr("nope", 0); err == nil {
		t.Error("advertise address nope accepted")
	}
}

func TestNodeAt(t *testing.T) {
	for _, c := range []struct {
		addr string
		ok   bool
		ip   string
		port uint16
	}{
		{"10.0.0.2:7946", true, "10.0.0.2", 7946},
		{"[fd00::2]:7946", true, "fd00::2", 7946},
		{"", false, "", 0},
		{"10.0.0.2", false, "", 0},
		{"host:7946", false, "", 0},
		{"10.0.0.2:70000", false, "", 0},
	} {
		n, ok := nodeAt("n1", c.addr)
		if ok != c.ok {
			t.Errorf("nodeAt(%q) ok = %v, want %v", c.addr, ok, c.ok)
			continue
		}
		if ok && (n.Name != "n1" || !n.Addr.Equal(net.ParseIP(c.ip)) || n.Port != c.port || memberAddr(n) != c.addr) {
			t.Errorf("nodeAt(%q) = %+v, want %s port %d", c.addr, n, c.ip, c.port)
		}
	}
}
