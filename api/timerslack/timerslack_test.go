package timerslack

import (
	"bytes"
	"os"
	"os/exec"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// threadSlacks reads every thread's slack in this process.
func threadSlacks(t *testing.T) map[string]string {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range entries {
		b, err := os.ReadFile("/proc/" + e.Name() + "/timerslack_ns")
		if err != nil {
			continue
		}
		out[e.Name()] = strings.TrimSpace(string(b))
	}
	return out
}

// childSlack runs cat on its own /proc/self/timerslack_ns, started by
// start, from a goroutine locked to a thread of its own.
func childSlack(t *testing.T, start func(*exec.Cmd) error) string {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command("cat", "/proc/self/timerslack_ns")
	cmd.Stdout = &out
	if err := start(cmd); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out.String())
}

// TestCoarsenAndStart: after Coarsen every thread has the coarse slack,
// threads created later too; a process started by Start has the slack
// the process had before, one started by exec.Cmd.Start the coarse one
// (what Start exists to prevent).
func TestCoarsenAndStart(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("writing another thread's timerslack_ns needs CAP_SYS_NICE")
	}
	if err := Coarsen(0); err == nil {
		t.Fatal("Coarsen(0) = nil, want an error")
	}
	goruntime.LockOSThread()
	before, err := get()
	goruntime.UnlockOSThread()
	if err != nil {
		t.Fatal(err)
	}
	const slack = 3 * time.Millisecond // neither the default nor the agent's
	if time.Duration(before) == slack {
		t.Fatalf("this process already runs with %v of slack", slack)
	}
	if err := Coarsen(slack); err != nil {
		t.Fatal(err)
	}
	// Put the process back as it was, so that the test can run again in
	// it (-count).
	t.Cleanup(func() {
		if err := Coarsen(time.Duration(before)); err != nil {
			t.Errorf("restore the slack: %v", err)
		}
		coarse.Store(0)
		child.Store(0)
	})
	want := strconv.FormatInt(slack.Nanoseconds(), 10)

	// New threads: goroutines locked to threads while others are busy
	// make the runtime start more.
	var wg, locked sync.WaitGroup
	release := make(chan struct{})
	for range 4 {
		wg.Add(1)
		locked.Add(1)
		go func() {
			defer wg.Done()
			goruntime.LockOSThread()
			defer goruntime.UnlockOSThread()
			locked.Done()
			<-release
		}()
	}
	defer func() { close(release); wg.Wait() }()
	locked.Wait()

	for tid, got := range threadSlacks(t) {
		if got != want {
			t.Errorf("thread %s: slack %s, want %s", tid, got, want)
		}
	}
	if got, w := childSlack(t, Start), strconv.FormatUint(uint64(before), 10); got != w {
		t.Errorf("process started by Start: slack %s, want %s (the slack before Coarsen)", got, w)
	}
	if Child() != time.Duration(before) {
		t.Errorf("Child() = %v, want %v", Child(), time.Duration(before))
	}
	if got := childSlack(t, (*exec.Cmd).Start); got != want {
		t.Errorf("process started by exec.Cmd.Start: slack %s, want the inherited %s", got, want)
	}
	// Start puts its thread back.
	for tid, got := range threadSlacks(t) {
		if got != want {
			t.Errorf("after Start, thread %s: slack %s, want %s", tid, got, want)
		}
	}
}
