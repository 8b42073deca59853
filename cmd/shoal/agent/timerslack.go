package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// sysmonSlack is the timer slack the agent gives Go's runtime monitor
// thread (sysmon).
//
// Why: on an idle agent most thread wake-ups are sysmon's, not Shoal's.
// Every burst of work (a raft heartbeat, a gossip probe) wakes sysmon at
// its first system call, and sysmon then polls the one P with 20 µs
// sleeps, each a wake-up costing ~130 µs on a PVM guest, until the P is
// idle again. With 1 ms of slack the kernel stretches those sleeps, so
// sysmon wakes about once per burst. Measured on an idle 3-node fast
// cluster, the same agents alternating 15 s windows with and without the
// slack on sysmon (4 pairs; the slack won 3 of them on every agent):
// medians leader 0.81 -> 0.62 % of a core, followers 0.44 -> 0.36 % and
// 0.46 -> 0.41 %, wake-ups 163 -> 72/s and 77 -> 40/s. Slack on every
// thread did a little better (5 of 5 pairs: leader 0.69 -> 0.49 %,
// followers 0.42 -> 0.35 %), but a forked process inherits its thread's
// slack, and runc and the containers must keep the default.
//
// Sysmon never forks and runs no Go code; what it does late by up to
// 1 ms is retake a P from a long system call and preempt a goroutine that
// has run for 10 ms.
const sysmonSlack = time.Millisecond

// pidMax orders thread IDs that wrapped around (the kernel's default
// pid_max on 64-bit); only ties in start time need it.
const pidMax = 1 << 22

// thread is what pickSysmon reads of one of the process's threads.
type thread struct {
	tid   int
	start uint64 // clock ticks after boot, /proc/TID/stat field 22
}

// pickSysmon returns the thread that is Go's sysmon: the first thread the
// runtime creates after the main one (runtime.main starts it before any
// user code), so the earliest started other than pid, ties broken by
// the thread ID allocated first after pid.
func pickSysmon(pid int, threads []thread) (int, bool) {
	best, found := thread{}, false
	after := func(t thread) int { return ((t.tid-pid)%pidMax + pidMax) % pidMax }
	for _, t := range threads {
		if t.tid == pid {
			continue
		}
		if !found || t.start < best.start || (t.start == best.start && after(t) < after(best)) {
			best, found = t, true
		}
	}
	return best.tid, found
}

// slowSysmon sets sysmonSlack on this process's sysmon thread, once at
// the agent's start.
func slowSysmon() error {
	pid := os.Getpid()
	dir := fmt.Sprintf("/proc/%d/task", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("timer slack: list threads: %w", err)
	}
	var threads []thread
	for _, e := range entries {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		start, err := threadStart(filepath.Join(dir, e.Name(), "stat"))
		if err != nil {
			continue // the thread ended
		}
		threads = append(threads, thread{tid: tid, start: start})
	}
	tid, ok := pickSysmon(pid, threads)
	if !ok {
		return errors.New("timer slack: no thread besides the main one")
	}
	// /proc/TID, not /proc/PID/task/TID: only the former has
	// timerslack_ns on the kernels this runs on.
	path := fmt.Sprintf("/proc/%d/timerslack_ns", tid)
	if err := os.WriteFile(path, []byte(strconv.FormatInt(sysmonSlack.Nanoseconds(), 10)), 0); err != nil {
		return fmt.Errorf("timer slack: thread %d: %w", tid, err)
	}
	return nil
}

// threadStart reads a thread's start time from its stat file: field 22,
// counted after the command name, which is in parentheses and may hold
// spaces.
func threadStart(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("%s: no command name", path)
	}
	fields := strings.Fields(s[i+1:])
	// fields[0] is field 3 (state), so field 22 is fields[19].
	if len(fields) < 20 {
		return 0, fmt.Errorf("%s: %d fields", path, len(fields))
	}
	start, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: start time: %w", path, err)
	}
	return start, nil
}
