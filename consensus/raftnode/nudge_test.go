package raftnode

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/shoal-org/shoal/consensus"
)

// stuckFuture is a raft future that is answered only when release is
// closed: hashicorp/raft leaves some futures unanswered when it shuts down
// (hashicorp/raft#498).
type stuckFuture struct{ release chan struct{} }

func (f stuckFuture) Error() error {
	<-f.release
	return errors.New("answered late")
}

// TestAnsweredBeforeStop: the commit nudge stops waiting for a barrier raft
// never answers once it is told to stop, so Shutdown, which waits for the
// nudge loop, cannot hang on it; an answered barrier is reported as such.
func TestAnsweredBeforeStop(t *testing.T) {
	f := stuckFuture{release: make(chan struct{})}
	defer close(f.release)
	stop := make(chan struct{})
	res := make(chan bool, 1)
	go func() { res <- answeredBefore(f, stop) }()
	select {
	case <-res:
		t.Fatal("returned before the future was answered or stop closed")
	case <-time.After(50 * time.Millisecond):
	}
	close(stop)
	select {
	case ok := <-res:
		if ok {
			t.Fatal("reported an unanswered future as answered")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still waiting on an unanswered future 10 s after stop was closed")
	}

	answered := stuckFuture{release: make(chan struct{})}
	close(answered.release)
	if !answeredBefore(answered, make(chan struct{})) {
		t.Fatal("an answered future was not reported as answered")
	}
}

// TestWaitEndsAtShutdown: a caller waiting on a raft future with a
// long-lived ctx (a cluster-port handler runs on the agent's) gets
// ErrShutdown once Shutdown begins, not a wait until the agent stops.
func TestWaitEndsAtShutdown(t *testing.T) {
	r := &Raft{nudgeStop: make(chan struct{})}
	f := stuckFuture{release: make(chan struct{})}
	defer close(f.release)
	res := make(chan error, 1)
	go func() { res <- r.wait(context.Background(), f) }()
	close(r.nudgeStop)
	select {
	case err := <-res:
		if !errors.Is(err, consensus.ErrShutdown) {
			t.Fatalf("wait: %v, want ErrShutdown", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("wait still blocked on an unanswered future 10 s after Shutdown began")
	}
}
