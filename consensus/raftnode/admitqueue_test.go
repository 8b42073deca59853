package raftnode

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
)

// blockingAdds is an addFunc that records each call and blocks until its
// node is released.
type blockingAdds struct {
	mu      sync.Mutex
	calls   []string
	running int
	most    int
	release map[string]chan error
}

func (b *blockingAdds) gate(id string) chan error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.release[id] == nil {
		b.release[id] = make(chan error, 1)
	}
	return b.release[id]
}

func (b *blockingAdds) add(ctx context.Context, id, addr string) error {
	b.mu.Lock()
	b.calls = append(b.calls, id+"@"+addr)
	b.running++
	b.most = max(b.most, b.running)
	b.mu.Unlock()
	err := <-b.gate(id)
	b.mu.Lock()
	b.running--
	b.mu.Unlock()
	return err
}

func sorted(s []string) []string {
	s = append([]string(nil), s...)
	slices.Sort(s)
	return s
}

func (b *blockingAdds) seen() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.calls...)
}

// TestAdmitQueue: additions run in order, at most admitWorkers at once; a
// node queued twice is added once and both callers get its outcome; a
// node stays queued until its addition returned.
func TestAdmitQueue(t *testing.T) {
	b := &blockingAdds{release: map[string]chan error{}}
	var q admitQueue
	a1 := q.push(admitEntry{id: "a", addr: "h1:1"}, b.add)
	b1 := q.push(admitEntry{id: "b", addr: "h2:1"}, b.add)
	c1 := q.push(admitEntry{id: "c", addr: "h3:1"}, b.add)
	a2 := q.push(admitEntry{id: "a", addr: "h1:1"}, b.add) // a second join of the same node
	waitFor(t, "two additions under way", func() bool { return len(b.seen()) == 2 })
	// The two workers take a and b in queue order but call raft
	// concurrently, so either may record its call first.
	if got := sorted(b.seen()); fmt.Sprint(got) != "[a@h1:1 b@h2:1]" {
		t.Fatalf("calls %s, want a and b first", got)
	}
	for _, id := range []string{"a", "b", "c"} {
		if !q.queued(id) {
			t.Errorf("%s not queued while waiting", id)
		}
	}
	boom := errors.New("boom")
	b.gate("a") <- nil
	b.gate("b") <- boom
	if err := <-a1; err != nil {
		t.Errorf("a: %v", err)
	}
	if err := <-a2; err != nil {
		t.Errorf("a, second caller: %v", err)
	}
	if err := <-b1; !errors.Is(err, boom) {
		t.Errorf("b: %v, want boom", err)
	}
	waitFor(t, "c under way", func() bool { return len(b.seen()) == 3 })
	b.gate("c") <- nil
	if err := <-c1; err != nil {
		t.Errorf("c: %v", err)
	}
	waitFor(t, "the workers gone", func() bool { q.mu.Lock(); defer q.mu.Unlock(); return q.workers == 0 })
	for _, id := range []string{"a", "b", "c"} {
		if q.queued(id) {
			t.Errorf("%s still queued after its addition returned", id)
		}
	}
	if got := b.seen(); fmt.Sprint(sorted(got[:2]), got[2:]) != "[a@h1:1 b@h2:1] [c@h3:1]" {
		t.Errorf("calls %s, want each node once, a and b before c", got)
	}
	if b.most > admitWorkers {
		t.Errorf("%d additions at once, want at most %d", b.most, admitWorkers)
	}
}

// TestQueueNonvoterAddsEveryNode: nodes queued at once on a real leader
// all end up in the configuration as non-voters; queued on a follower,
// the addition fails and the node leaves the queue.
func TestQueueNonvoterAddsEveryNode(t *testing.T) {
	c := newRaftCluster(t, 5)
	l := c.bootstrapFirst()
	var outs []<-chan error
	for _, n := range c.nodes[1:] {
		outs = append(outs, l.r.QueueNonvoter(n.id, string(n.trans.LocalAddr())))
	}
	for i, ch := range outs {
		if err := <-ch; err != nil {
			t.Errorf("%s: %v", c.nodes[i+1].id, err)
		}
	}
	servers, err := l.r.Servers()
	if err != nil {
		t.Fatal(err)
	}
	nonvoters := 0
	for _, s := range servers {
		if s.ID != l.id && !s.Voter {
			nonvoters++
		}
	}
	if nonvoters != 4 {
		t.Errorf("servers %+v, want the 4 others as non-voters", servers)
	}
	f := c.nodes[1]
	if err := <-f.r.QueueNonvoter("x", "nowhere:1"); err == nil {
		t.Error("a follower added a non-voter")
	}
	if f.r.NonvoterQueued("x") {
		t.Error("x still queued on the follower after its addition failed")
	}
}

// TestAdmitQueueAsksStill: a node that should no longer be added (removed
// while it waited) is not, and its callers get the reason.
func TestAdmitQueueAsksStill(t *testing.T) {
	c := newRaftCluster(t, 2)
	l := c.bootstrapFirst()
	gone := errors.New("removed meanwhile")
	l.r.SetAdmitCheck(func(id string) error {
		if id == c.nodes[1].id {
			return gone
		}
		return nil
	})
	if err := <-l.r.QueueNonvoter(c.nodes[1].id, string(c.nodes[1].trans.LocalAddr())); !errors.Is(err, gone) {
		t.Errorf("outcome %v, want %v", err, gone)
	}
	servers, err := l.r.Servers()
	if err != nil {
		t.Fatal(err)
	}
	if len(servers) != 1 {
		t.Errorf("added anyway: %+v", servers)
	}
}
