package runtime

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkContainerStart times RunContainer of a ready image until the
// container's process runs, and compares it with a raw `runc run -d` of a
// prepared bundle with the same isolation settings. Run it as
//
//	go test -run '^$' -bench ContainerStart -benchtime 20x ./runtime/
//
// It reports the median and p95 of both and their ratio.
func BenchmarkContainerStart(b *testing.B) {
	cfg := testConfig(b)
	h := startHarness(b, cfg)
	ctx := context.Background()
	var ours []time.Duration
	b.ResetTimer()
	// At least 20 starts, so that -benchtime 1x (make bench) still reports
	// a median and a p95 worth the name.
	for i := 0; i < max(b.N, 20); i++ {
		start := time.Now()
		c, err := h.rt.RunContainer(ctx, Spec{Image: "busybox", Command: []string{"sleep", "1000"}})
		if err != nil {
			b.Fatal(err)
		}
		ours = append(ours, time.Since(start))
		b.StopTimer()
		if err := h.rt.Remove(ctx, c.ID, true); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	raw := rawRuncStarts(b, cfg, max(b.N, 20))
	om, op := medianP95(ours)
	rm, rp := medianP95(raw)
	b.ReportMetric(float64(om.Microseconds())/1000, "median-ms")
	b.ReportMetric(float64(op.Microseconds())/1000, "p95-ms")
	b.ReportMetric(float64(rm.Microseconds())/1000, "runc-median-ms")
	b.ReportMetric(float64(rp.Microseconds())/1000, "runc-p95-ms")
	b.ReportMetric(float64(om)/float64(rm), "ratio")
}

// rawRuncStarts times n `runc run -d` of a bundle prepared once.
func rawRuncStarts(b *testing.B, cfg Config, n int) []time.Duration {
	dir := b.TempDir()
	state, logs := filepath.Join(dir, "state"), filepath.Join(dir, "log")
	os.MkdirAll(state, 0o755)
	os.MkdirAll(logs, 0o755)
	s, err := BuildSpec(SpecInput{
		Hostname: "raw", RootfsPath: testRootfs, Args: []string{"sleep", "1000"},
		Env: []string{"PATH=/bin"}, InitBinary: testInit, StateDir: state, LogDir: logs,
		LogMaxSize: cfg.LogMaxSize, LogMaxFiles: cfg.LogMaxFiles,
		CgroupsPath: filepath.Join(cfg.CgroupParent, "raw"),
	})
	if err != nil {
		b.Fatal(err)
	}
	s.Root.Readonly = true
	if err := writeJSON(filepath.Join(dir, "config.json"), s); err != nil {
		b.Fatal(err)
	}
	out, _ := os.Create(filepath.Join(dir, "runc.log"))
	defer out.Close()
	var ds []time.Duration
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("raw-%d", i)
		pidFile := filepath.Join(dir, id+".pid")
		cmd := exec.Command(cfg.RuncBinary, "--root", cfg.RuncRoot, "run", "-d", "--pid-file", pidFile, "--bundle", dir, id)
		cmd.Stdout, cmd.Stderr = out, out
		start := time.Now()
		if err := cmd.Run(); err != nil {
			b.Fatalf("raw runc run: %v", err)
		}
		ds = append(ds, time.Since(start))
		exec.Command(cfg.RuncBinary, "--root", cfg.RuncRoot, "kill", id, "KILL").Run()
		if pb, err := os.ReadFile(pidFile); err == nil {
			pid, _ := strconv.Atoi(strings.TrimSpace(string(pb)))
			var ws unix.WaitStatus
			unix.Wait4(pid, &ws, 0, nil) // we are its subreaper
		}
		exec.Command(cfg.RuncBinary, "--root", cfg.RuncRoot, "delete", "--force", id).Run()
	}
	return ds
}

func medianP95(ds []time.Duration) (time.Duration, time.Duration) {
	if len(ds) == 0 {
		return 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2], s[min(len(s)-1, len(s)*95/100)]
}

// TestAgentMemory prints the agent's RSS with 0, 20 and 100 sleeping
// containers, and what one container's init costs. SHOAL_BENCH=1 enables it.
func TestAgentMemory(t *testing.T) {
	if os.Getenv("SHOAL_BENCH") != "1" {
		t.Skip("set SHOAL_BENCH=1")
	}
	cfg := testConfig(t)
	h := startHarness(t, cfg)
	ctx := context.Background()
	n := 0
	var pids []int
	for _, target := range []int{0, 20, 100} {
		for ; n < target; n++ {
			c, err := h.rt.RunContainer(ctx, Spec{Image: "busybox", Command: []string{"sleep", "100000"}})
			if err != nil {
				t.Fatal(err)
			}
			pids = append(pids, c.Pid)
		}
		goruntime.GC()
		debug.FreeOSMemory()
		time.Sleep(200 * time.Millisecond)
		initKB := 0
		for _, p := range pids {
			initKB += rssKB(strconv.Itoa(p))
		}
		avg := 0
		if len(pids) > 0 {
			avg = initKB / len(pids)
		}
		t.Logf("containers=%3d agent_rss=%6d KiB goroutines=%4d init_rss_avg=%5d KiB", target, rssKB("self"), goruntime.NumGoroutine(), avg)
	}
}

func rssKB(pid string) int {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				v, _ := strconv.Atoi(f[1])
				return v
			}
		}
	}
	return 0
}
