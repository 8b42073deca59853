package raftnode

import (
	"errors"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// errLayerCut is what a dial or accept returns once Shutdown cut the layer.
var errLayerCut = errors.New("raft stream layer shut down")

// cutLayer wraps the stream layer raft's network transport uses so that
// Shutdown can end every raft connection at once. Raft's Shutdown waits for
// its replication and heartbeat goroutines, and those can sit in a dial or a
// read towards a follower whose packets are being dropped until the
// transport timeout (10 s) runs out, once per follower and retry: a leader
// that a partition had just deposed took 10 s or more to stop. Nothing has
// to be sent while raft shuts down, so cutting first loses nothing.
type cutLayer struct {
	raft.StreamLayer

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	cut   bool
	done  chan struct{}
}

func newCutLayer(inner raft.StreamLayer) *cutLayer {
	return &cutLayer{StreamLayer: inner, conns: map[net.Conn]struct{}{}, done: make(chan struct{})}
}

// Dial dials in the background so that a cut ends the wait at once; a
// connection that arrives after the cut is closed.
func (l *cutLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := l.StreamLayer.Dial(address, timeout)
		if err == nil {
			c = l.track(c)
		}
		ch <- result{c, err}
	}()
	select {
	case r := <-ch:
		if r.err == nil && r.c == nil {
			return nil, errLayerCut
		}
		return r.c, r.err
	case <-l.done:
		go func() {
			if r := <-ch; r.c != nil {
				_ = r.c.Close()
			}
		}()
		return nil, errLayerCut
	}
}

func (l *cutLayer) Accept() (net.Conn, error) {
	c, err := l.StreamLayer.Accept()
	if err != nil {
		return nil, err
	}
	if c = l.track(c); c == nil {
		return nil, errLayerCut
	}
	return c, nil
}

// track registers c until it is closed; after the cut it closes c and
// returns nil.
func (l *cutLayer) track(c net.Conn) net.Conn {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cut {
		_ = c.Close()
		return nil
	}
	tc := &trackedConn{Conn: c, l: l}
	l.conns[tc] = struct{}{}
	return tc
}

// Cut closes every tracked connection and makes pending and later dials
// fail. Idempotent. The wrapped layer's listener is left to Close.
func (l *cutLayer) Cut() {
	l.mu.Lock()
	if l.cut {
		l.mu.Unlock()
		return
	}
	l.cut = true
	close(l.done)
	conns := l.conns
	l.conns = nil
	l.mu.Unlock()
	for c := range conns {
		_ = c.(*trackedConn).Conn.Close()
	}
}

type trackedConn struct {
	net.Conn
	l    *cutLayer
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}
