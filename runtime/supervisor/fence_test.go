package supervisor

import (
	"os/exec"
	"reflect"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fenceFixture runs argv as a stand-in for a container's init and registers
// it with a bare supervisor as container "c1".
func fenceFixture(t *testing.T, argv ...string) (*supervisor, *exec.Cmd, <-chan error) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	waited := make(chan struct{})
	go func() {
		done <- cmd.Wait()
		close(waited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-waited
	})
	s := &supervisor{conts: map[string]*supCont{}, byPid: map[int]*supCont{}}
	c := &supCont{id: "c1", pid: cmd.Process.Pid}
	s.conts[c.id] = c
	s.byPid[c.pid] = c
	return s, cmd, done
}

func exitedWithin(done <-chan error, d time.Duration) (error, bool) {
	select {
	case err := <-done:
		return err, true
	case <-time.After(d):
		return nil, false
	}
}

// An agent that stops renewing the lease (killed, hung) gets its container
// stopped by the supervisor with the stop signal.
func TestFenceStopsWhenNotRenewed(t *testing.T) {
	s, _, done := fenceFixture(t, "sleep", "60")
	if err := s.fence(Request{ID: "c1", FenceAfterMs: 50, StopGraceMs: 10000}); err != nil {
		t.Fatal(err)
	}
	err, ok := exitedWithin(done, 10*time.Second)
	if !ok {
		t.Fatal("container still runs after its lease ran out")
	}
	if ee, isExit := err.(*exec.ExitError); !isExit || ee.Sys().(interface{ Signal() unix.Signal }).Signal() != unix.SIGTERM {
		t.Fatalf("container ended with %v, want SIGTERM", err)
	}
}

// A container that ignores the stop signal is killed after the stop grace.
func TestFenceKillsAfterGrace(t *testing.T) {
	s, _, done := fenceFixture(t, "sh", "-c", `trap "" TERM; while :; do sleep 1; done`)
	time.Sleep(100 * time.Millisecond) // let sh install its trap: a SIGTERM before it would end it
	if err := s.fence(Request{ID: "c1", FenceAfterMs: 10, StopGraceMs: 200}); err != nil {
		t.Fatal(err)
	}
	err, ok := exitedWithin(done, 10*time.Second)
	if !ok {
		t.Fatal("container that ignores SIGTERM still runs after the stop grace")
	}
	if ee, isExit := err.(*exec.ExitError); !isExit || ee.Sys().(interface{ Signal() unix.Signal }).Signal() != unix.SIGKILL {
		t.Fatalf("container ended with %v, want SIGKILL", err)
	}
}

// Renewals push the deadline on, and 0 disarms it: a live agent's container
// is never stopped by the lease.
func TestFenceRenewedAndDisarmed(t *testing.T) {
	s, _, done := fenceFixture(t, "sleep", "60")
	for i := 0; i < 8; i++ {
		if err := s.fence(Request{ID: "c1", FenceAfterMs: 150, StopGraceMs: 10}); err != nil {
			t.Fatal(err)
		}
		if err, ended := exitedWithin(done, 50*time.Millisecond); ended {
			t.Fatalf("renewed container ended: %v", err)
		}
	}
	if err := s.fence(Request{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	if err, ended := exitedWithin(done, 400*time.Millisecond); ended {
		t.Fatalf("disarmed container ended: %v", err)
	}
}

func TestFenceBadRequests(t *testing.T) {
	s := &supervisor{conts: map[string]*supCont{}, byPid: map[int]*supCont{}}
	for name, req := range map[string]Request{
		"no id":          {FenceAfterMs: 10},
		"negative":       {ID: "c1", FenceAfterMs: -1},
		"unknown signal": {ID: "c1", FenceAfterMs: 10, Signal: 200},
		"unknown id":     {ID: "nope", FenceAfterMs: 10},
	} {
		if err := s.fence(req); err == nil {
			t.Errorf("%s: fence(%+v) = nil, want an error", name, req)
		}
	}
	if err := s.fence(Request{ID: "nope"}); err != nil {
		t.Errorf("disarming an unknown container: %v, want nil", err)
	}
}

// "leases" sets every lease of a pass in one request: each as "fence"
// would, a refused one reported by ID without keeping the others from
// being set.
func TestLeasesBatch(t *testing.T) {
	s, _, done := fenceFixture(t, "sleep", "60")
	failed := s.leases([]Lease{
		{ID: "c1", FenceAfterMs: 50, StopGraceMs: 10000},
		{ID: "nope", FenceAfterMs: 10},
		{ID: "gone"}, // disarming a container that ended: nothing to do
		{ID: "", FenceAfterMs: 10},
		{ID: "c1x", FenceAfterMs: -1},
	})
	want := map[string]string{
		"nope": "container nope is not supervised",
		"":     "bad fence request: a container id is required",
		"c1x":  "bad fence request: negative duration",
	}
	if !reflect.DeepEqual(failed, want) {
		t.Fatalf("failed = %q, want %q", failed, want)
	}
	if _, ok := exitedWithin(done, 10*time.Second); !ok {
		t.Fatal("c1's lease from the batch was not set: it still runs")
	}
	if failed := s.leases(nil); failed != nil {
		t.Fatalf("empty batch: failed = %q, want nil", failed)
	}
}
