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

// TestWaitEndsAtShutdown: a caller waiting on a raft future with a
// long-lived ctx (a cluster-port handler runs on the agent's) gets
// ErrShutdown once Shutdown begins, not a wait until the agent stops.
//
// The commit nudge waits on its barrier this way too, so Shutdown, which
// waits for the nudge loop, cannot hang on a barrier raft never answers.
func TestWaitEndsAtShutdown(t *testing.T) {
	r := &Raft{nudgeStop: make(chan struct{})}
	answered := stuckFuture{release: make(chan struct{})}
	close(answered.release)
	if err := r.wait(context.Background(), answered); err == nil || errors.Is(err, consensus.ErrShutdown) {
		t.Fatalf("an answered future: %v, want its own answer", err)
	}
	f := stuckFuture{release: make(chan struct{})}
	defer close(f.release)
	res := make(chan error, 1)
	go func() { res <- r.wait(context.Background(), f) }()
	select {
	case <-res:
		t.Fatal("returned before the future was answered or Shutdown began")
	case <-time.After(50 * time.Millisecond):
	}
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
