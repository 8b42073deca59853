package raftnode

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// pipeLayer dials by handing out one end of a net.Pipe once release is
// closed (a dial towards a peer whose packets are dropped never returns by
// itself), and keeps the other ends.
type pipeLayer struct {
	release chan struct{}
	far     chan net.Conn
}

func (p *pipeLayer) Dial(raft.ServerAddress, time.Duration) (net.Conn, error) {
	<-p.release
	a, b := net.Pipe()
	p.far <- b
	return a, nil
}
func (p *pipeLayer) Accept() (net.Conn, error) { select {} }
func (p *pipeLayer) Close() error              { return nil }
func (p *pipeLayer) Addr() net.Addr            { return &net.TCPAddr{} }

func TestCutLayer(t *testing.T) {
	inner := &pipeLayer{release: make(chan struct{}), far: make(chan net.Conn, 4)}
	l := newCutLayer(inner)

	// A live connection is tracked until it is closed.
	close(inner.release)
	c1, err := l.Dial("a", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	far1 := <-inner.far
	c2, err := l.Dial("b", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	<-inner.far
	_ = c2.Close()
	l.mu.Lock()
	n := len(l.conns)
	l.mu.Unlock()
	if n != 1 {
		t.Fatalf("tracked %d connections after one of two closed, want 1", n)
	}

	// A dial that would block is ended by the cut.
	inner.release = make(chan struct{})
	dialed := make(chan error, 1)
	go func() {
		_, err := l.Dial("c", time.Hour)
		dialed <- err
	}()
	l.Cut()
	select {
	case err := <-dialed:
		if !errors.Is(err, errLayerCut) {
			t.Fatalf("pending dial after cut: %v, want errLayerCut", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("pending dial did not return after the cut")
	}
	// The tracked connection was closed: its far end reads EOF.
	_ = far1.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := far1.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("far end of a tracked connection after the cut: %v, want EOF", err)
	}
	if _, err := c1.Write([]byte("x")); err == nil {
		t.Fatal("write on a cut connection succeeded")
	}
	// The dial that completes after the cut is closed, not leaked.
	close(inner.release)
	late := <-inner.far
	_ = late.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := late.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("far end of a dial completed after the cut: %v, want EOF", err)
	}
	// Later dials fail at once.
	if _, err := l.Dial("d", time.Second); !errors.Is(err, errLayerCut) {
		t.Fatalf("dial after cut: %v, want errLayerCut", err)
	}
	l.Cut() // idempotent
}
