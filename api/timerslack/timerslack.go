// Package timerslack gives every thread of the agent a coarse timer slack
// and the processes it starts the slack they would have had without it.
//
// Why: an idle agent's CPU is made of wake-ups (~0.1–0.2 ms each on a
// small VM), and the Go runtime adds two kinds of its own. Sysmon polls
// the one P with 20 µs sleeps after every burst of work, each a wake-up.
// And a timer costs two: the runtime sleeps in epoll_pwait for the time
// left until the timer in whole milliseconds, rounded down, so the thread
// wakes up to 1 ms early, finds nothing due, and sleeps again for the
// rest (seen in a runtime trace of an idle agent: every timer's wake-up
// preceded by an empty one ~1.1 ms before). With a millisecond or more of
// slack (the agent's is 4 ms: cmd/shoal/agent) the kernel
// may end both sleeps that much later, so sysmon wakes about once per
// burst and a timer's wake-up comes after it is due: one wake-up each.
//
// A forked process inherits its thread's slack, and runc, the node
// supervisor and the containers must keep the default, so Start forks
// from a thread set back to the slack the process had before Coarsen.
// The agent forks in three places, each through Start or Fork
// (api/README.md).
package timerslack

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	goruntime "runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

// Agent is the slack the agent's threads run with (cmd/shoal/agent's
// agentSlack says why 4 ms); the end-to-end tests check it.
const Agent = 4 * time.Millisecond

// prctl options (linux/prctl.h); the syscall package does not name them.
const (
	prSetTimerSlack = 29
	prGetTimerSlack = 30
)

var (
	// coarse is the slack Coarsen set, 0 until it ran.
	coarse atomic.Int64
	// child is the slack a forked process gets: the calling thread's
	// before Coarsen.
	child atomic.Int64
)

// Coarsen sets d of timer slack on every thread of this process and
// remembers the calling thread's slack for the processes Start forks.
// Threads created later inherit d from the thread that creates them. Run
// it once, early (the agent's start). Writing another thread's slack
// needs CAP_SYS_NICE: without it Coarsen fails and the process runs as
// before.
func Coarsen(d time.Duration) error {
	if d <= 0 {
		return errors.New("timer slack: want a positive duration")
	}
	goruntime.LockOSThread()
	before, err := get()
	goruntime.UnlockOSThread()
	if err != nil {
		return err
	}
	if child.Load() == 0 {
		child.Store(int64(before))
	}
	coarse.Store(d.Nanoseconds())
	// A thread created between the listing and the writes by a thread not
	// yet written inherits the old slack: list again until every thread
	// has d (two passes in practice).
	for range 4 {
		changed, err := setAll(d.Nanoseconds())
		if err != nil {
			return err
		}
		if changed == 0 {
			return nil
		}
	}
	return nil
}

// setAll writes ns to every thread whose slack differs and reports how
// many it wrote.
func setAll(ns int64) (int, error) {
	entries, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return 0, fmt.Errorf("timer slack: list threads: %w", err)
	}
	want := strconv.FormatInt(ns, 10)
	changed := 0
	for _, e := range entries {
		// /proc/TID, not /proc/self/task/TID: only the former has
		// timerslack_ns on the kernels this runs on.
		path := "/proc/" + e.Name() + "/timerslack_ns"
		b, err := os.ReadFile(path)
		if err != nil {
			continue // the thread ended
		}
		if string(bytes.TrimSpace(b)) == want {
			continue
		}
		if err := os.WriteFile(path, []byte(want), 0); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return changed, fmt.Errorf("timer slack: thread %s: %w", e.Name(), err)
		}
		changed++
	}
	return changed, nil
}

// Start starts cmd as cmd.Start does, through Fork.
func Start(cmd *exec.Cmd) error { return Fork(cmd.Start) }

// Fork runs fork, which starts processes, on a thread whose slack is the
// one this process had before Coarsen, so the children (and whatever
// they fork: runc's container processes) keep it. Before Coarsen, or
// after a failed one, it just runs fork.
//
// The Go runtime forks on the calling thread, so Fork locks the
// goroutine to it meanwhile. The runtime starts no thread from a locked
// one (its template thread does), so no new thread inherits the default.
func Fork(fork func() error) error {
	c, d := child.Load(), coarse.Load()
	if d == 0 {
		return fork()
	}
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	if err := set(uintptr(c)); err != nil {
		// A thread's own prctl does not fail; were it to, the children
		// would only inherit the coarse slack.
		return fork()
	}
	err := fork()
	_ = set(uintptr(d)) // on failure this thread keeps the default slack
	return err
}

// Child is the slack Start gives a forked process (0 before Coarsen).
func Child() time.Duration { return time.Duration(child.Load()) }

func get() (uintptr, error) {
	r, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prGetTimerSlack, 0, 0)
	if errno != 0 {
		return 0, fmt.Errorf("timer slack: PR_GET_TIMERSLACK: %w", errno)
	}
	return r, nil
}

func set(ns uintptr) error {
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerSlack, ns, 0); errno != 0 {
		return fmt.Errorf("timer slack: PR_SET_TIMERSLACK %d: %w", ns, errno)
	}
	return nil
}
