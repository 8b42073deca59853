package runtime

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkConcurrentStart40 starts 40 busybox `sleep 1000` containers at
// once through RunContainer on one Runtime, as a node's reconciler does when
// a service scales up, and reports the time until all run and the rate.
// Containers are removed (untimed) after each round. Run it as
//
//	go test -run '^$' -bench ConcurrentStart40 -benchtime 3x ./runtime/
//
// SHOAL_BENCH_INIT=/path/to/init uses that binary as the container init.
func BenchmarkConcurrentStart40(b *testing.B) {
	const n = 40
	cfg := testConfig(b)
	if p := os.Getenv("SHOAL_BENCH_INIT"); p != "" {
		cfg.InitBinary = p
	}
	h := startHarness(b, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var total time.Duration
	var busy, idle, own float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ids := make([]string, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		b0, i0 := cpuTimes()
		o0 := ownCPU(cfg)
		start := time.Now()
		for j := 0; j < n; j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := h.rt.RunContainer(ctx, Spec{Image: "busybox", Command: []string{"sleep", "1000"}})
				ids[j], errs[j] = c.ID, err
			}()
		}
		wg.Wait()
		total += time.Since(start)
		b1, i1 := cpuTimes()
		own += ownCPU(cfg) - o0
		busy, idle = busy+b1-b0, idle+i1-i0
		b.StopTimer()
		for j, err := range errs {
			if err != nil {
				b.Fatalf("container %d: %v", j, err)
			}
		}
		removeAll(b, h, ids)
		// Let the kernel finish the removals' deferred work (netns and
		// cgroup teardown run in kworkers) before the next timed round.
		time.Sleep(2 * time.Second)
		b.StartTimer()
	}
	b.StopTimer()
	per := total / time.Duration(b.N)
	b.ReportMetric(float64(per.Microseconds())/1000, "ms-all-running")
	b.ReportMetric(float64(n)/per.Seconds(), "tasks/s")
	b.ReportMetric(busy*1000/float64(n*b.N), "cpu-ms/task")
	b.ReportMetric(own*1000/float64(n*b.N), "own-cpu-ms/task")
	b.ReportMetric(100*idle/(busy+idle), "idle-%")
}

// ownCPU returns the CPU seconds used so far by this process, its reaped
// children (runc) and the containers' cgroups (runc init once it joined the
// cgroup, the init, the command), unlike cpuTimes unaffected by other load
// on the machine.
func ownCPU(cfg Config) float64 {
	var self, children unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &self)
	_ = unix.Getrusage(unix.RUSAGE_CHILDREN, &children)
	tv := func(t unix.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	s := tv(self.Utime) + tv(self.Stime) + tv(children.Utime) + tv(children.Stime)
	if b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/cpuacct", cfg.CgroupParent, "cpuacct.usage")); err == nil {
		ns, _ := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
		s += ns / 1e9
	}
	return s
}

// cpuTimes returns the machine's busy and idle (idle+iowait) CPU seconds
// from /proc/stat.
func cpuTimes() (busy, idle float64) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	for i, v := range f[1:] {
		x, _ := strconv.ParseFloat(v, 64)
		x /= 100 // USER_HZ
		switch i {
		case 3, 4: // idle, iowait
			idle += x
		case 8, 9: // guest time is already counted in user
		default:
			busy += x
		}
	}
	return busy, idle
}

// removeAll force-removes ids concurrently.
func removeAll(tb testing.TB, h *harness, ids []string) {
	tb.Helper()
	var wg sync.WaitGroup
	for _, id := range ids {
		if id == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := h.rt.Remove(ctx, id, true); err != nil {
				tb.Errorf("remove %s: %v", ShortID(id), err)
			}
		}()
	}
	wg.Wait()
}
