package raftnode

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/consensus/raftnode/raftdirtest"
)

// countingLayer is a raft stream layer over loopback TCP that counts the
// connections it accepted that are still open.
type countingLayer struct {
	net.Listener
	live atomic.Int32
}

func (l *countingLayer) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.live.Add(1)
	return &countedConn{Conn: c, l: l}, nil
}

func (l *countingLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(addr), timeout)
}

type countedConn struct {
	net.Conn
	l    *countingLayer
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.l.live.Add(-1) })
	return c.Conn.Close()
}

// TestRaftOneConnectionPerFollower: over the real network transport, a
// follower that took a burst of concurrent writes is left with one
// connection from the leader (heartbeats and replication share it), not a
// pipeline's connection besides the heartbeats' (each with a 256 KiB
// buffer on both ends), and it has every write. With the pipeline on, or a
// pool of 3, two stay open and this fails.
func TestRaftOneConnectionPerFollower(t *testing.T) {
	var layers []*countingLayer
	var nodes []*Raft
	var stores []*consensus.Store
	for i := 1; i <= 2; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l := &countingLayer{Listener: ln}
		cfg := testRaftConfig(fmt.Sprintf("n%d", i))
		cfg.DataDir = raftdirtest.Dir(t)
		cfg.StreamLayer = l
		cfg.TransportTimeout = 5 * time.Second
		s := consensus.NewStore()
		r, err := New(cfg, s)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Shutdown() })
		layers, nodes, stores = append(layers, l), append(nodes, r), append(stores, s)
	}
	if err := nodes[0].BootstrapSelf(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "n1 to lead", nodes[0].IsLeader)
	ctx := context.Background()
	if _, err := nodes[0].Apply(ctx, command.BootstrapCluster{Cluster: testCluster(), Node: testNode("n1", "n1")}); err != nil {
		t.Fatal(err)
	}
	if _, err := nodes[0].Apply(ctx, command.UpsertNode{Node: testNode("n2", "n2")}); err != nil {
		t.Fatal(err)
	}
	if err := nodes[0].AddVoter(ctx, "n2", layers[1].Addr().String()); err != nil {
		t.Fatal(err)
	}
	// Concurrent writes: replication overlaps the heartbeats.
	const writers, each = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if _, err := nodes[0].Apply(ctx, command.UpsertNode{Node: testNode(fmt.Sprintf("x%d-%d", w, i), "x")}); err != nil {
					errs <- err
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	waitFor(t, "n2 to hold every write", func() bool { return len(stores[1].Nodes()) == 2+writers*each })
	// A heartbeat that meets a replication call in flight dials a second
	// connection for that one call and closes it after; what must not
	// happen is a second one kept open (a pipeline, or a pool of more).
	waitFor(t, "one connection from the leader to n2", func() bool { return layers[1].live.Load() == 1 })
}
