package runtime

import (
	"context"
	"encoding/json"
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

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/api/atomicfile"
	"github.com/shoal-org/shoal/runtime/companion"
	"github.com/shoal-org/shoal/runtime/containerinit"
	"github.com/shoal-org/shoal/runtime/ocispec"
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
	s, err := ocispec.BuildSpec(ocispec.SpecInput{
		Hostname: "raw", RootfsPath: testRootfs, Args: []string{"sleep", "1000"},
		Env: []string{"PATH=/bin"}, InitBinary: testInit,
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
		waitGone(pidFile)
		exec.Command(cfg.RuncBinary, "--root", cfg.RuncRoot, "delete", "--force", id).Run()
	}
	return ds
}

// waitGone waits (up to 5 s) for the process in pidFile to end; it is not
// our child, so it is watched by pidfd.
func waitGone(pidFile string) {
	pb, err := os.ReadFile(pidFile)
	if err != nil {
		return
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(pb)))
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 5000)
}

// BenchmarkContainerOverhead measures what Shoal adds per container in
// memory, with 50 sleeping busybox containers: the PSS (/proc/PID/
// smaps_rollup) of every process Shoal added — each container's init and
// the node supervisor — summed and divided by 50, against a budget of
// OverheadBudgetKiB (the benchmark fails above it). The baseline is the
// design before the supervisor: the Go init (cmd/goinit, built static)
// as every container's PID 1, writing its own logs and exit record. Run it
// as
//
//	go test -run '^$' -bench ContainerOverhead -benchtime 1x ./runtime/
//
// The supervisor is chosen as the agent chooses it: shoal-supervisor next
// to SHOAL_BIN (make build puts it there), else SHOAL_BIN itself; without
// SHOAL_BIN both are built here. The init is shoal-init (init/). The agent
// here is the test binary, so none of the supervisor's code pages are
// shared with it: the figure is an upper bound. The baseline's init is the
// init package alone; the real one was the whole shoal binary (2.85 MiB PSS
// per container measured on it), so the ratio is a lower bound of the
// saving.
func BenchmarkContainerOverhead(b *testing.B) {
	const n = 50
	dir := b.TempDir()
	shoal := os.Getenv("SHOAL_BIN")
	if shoal == "" {
		var err error
		if shoal, err = buildBinary(dir, "shoal", "github.com/shoal-org/shoal/cmd/shoal"); err != nil {
			b.Fatal(err)
		}
		if _, err = buildBinary(dir, companion.SupervisorName, "github.com/shoal-org/shoal/runtime/cmd/shoal-supervisor"); err != nil {
			b.Fatal(err)
		}
	}
	sup := companion.FirstExecutable(companion.Candidates(shoal, companion.SupervisorName)[:1])
	if sup == "" {
		sup = shoal
	}
	b.Logf("supervisor %s, init %s", sup, testInit)
	cfg := testConfig(b)
	cfg.SupervisorBinary = sup
	h := startHarness(b, cfg)
	ctx := context.Background()
	var inits []int
	for i := 0; i < n; i++ {
		c, err := h.rt.RunContainer(ctx, Spec{Image: "busybox", Command: []string{"sleep", "100000"}})
		if err != nil {
			b.Fatal(err)
		}
		inits = append(inits, c.Pid)
	}
	// Let the processes settle (figures, not assertions): the supervisor
	// trims its memory after a quiet second (supervisor.shouldTrim).
	time.Sleep(3 * time.Second)
	supPid, err := readPid(filepath.Join(cfg.Root, supervisorPidFile))
	if err != nil {
		b.Fatal(err)
	}
	initKB := 0
	for _, p := range inits {
		initKB += pssKB(p)
	}
	supKB, supAnonKB, supFileKB := pssKB(supPid), smapsKB(supPid, "Pss_Anon"), smapsKB(supPid, "Pss_File")
	oursKB := float64(initKB+supKB) / n
	for _, c := range h.rt.List() {
		if err := h.rt.Remove(ctx, c.ID, true); err != nil {
			b.Fatal(err)
		}
	}

	baseKB := float64(goInitPSS(b, cfg, dir, n)) / n
	b.ReportMetric(oursKB, "pss-KiB/container")
	b.ReportMetric(float64(initKB)/n, "init-pss-KiB/container")
	b.ReportMetric(float64(supKB), "supervisor-pss-KiB")
	b.ReportMetric(float64(supAnonKB), "supervisor-anon-KiB")
	b.ReportMetric(float64(supFileKB), "supervisor-file-KiB")
	b.ReportMetric(baseKB, "baseline-pss-KiB/container")
	b.ReportMetric(baseKB/oursKB, "ratio")
	if oursKB > OverheadBudgetKiB {
		b.Errorf("%.1f KiB per container (inits %.1f, supervisor %d KiB / %d): over the budget of %d KiB",
			oursKB, float64(initKB)/n, supKB, n, OverheadBudgetKiB)
	}
}

// OverheadBudgetKiB is what Shoal may add per container, all processes
// counted (issue 10: 0.1 MiB).
const OverheadBudgetKiB = 100

// goInitPSS runs n raw runc containers whose PID 1 is the old Go init, as
// Shoal did before the supervisor, and returns the sum of their inits' PSS.
func goInitPSS(b *testing.B, cfg Config, dir string, n int) int {
	goInit, err := buildGoInit(dir)
	if err != nil {
		b.Fatal(err)
	}
	var pidFiles []string
	b.Cleanup(func() {
		for i := range pidFiles {
			id := fmt.Sprintf("goinit-%d", i)
			exec.Command(cfg.RuncBinary, "--root", cfg.RuncRoot, "kill", id, "KILL").Run()
			waitGone(pidFiles[i])
			exec.Command(cfg.RuncBinary, "--root", cfg.RuncRoot, "delete", "--force", id).Run()
		}
	})
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("goinit-%d", i)
		bundle := filepath.Join(dir, id)
		state, logs := filepath.Join(bundle, "state"), filepath.Join(bundle, "log")
		for _, d := range []string{state, logs} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				b.Fatal(err)
			}
		}
		s, err := ocispec.BuildSpec(ocispec.SpecInput{
			Hostname: id, RootfsPath: testRootfs, Args: []string{"sleep", "100000"},
			Env: []string{"PATH=/bin"}, InitBinary: goInit,
			CgroupsPath: filepath.Join(cfg.CgroupParent, id),
		})
		if err != nil {
			b.Fatal(err)
		}
		s.Root.Readonly = true
		s.Process.Args = append([]string{ocispec.InitPath}, containerinit.Args(cfg.LogMaxSize, cfg.LogMaxFiles, []string{"sleep", "100000"})...)
		for dst, src := range map[string]string{containerinit.StateDir: state, containerinit.LogDir: logs} {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: dst, Type: "bind", Source: src, Options: []string{"rbind", "rprivate", "nosuid", "nodev"}})
		}
		if err := writeJSON(filepath.Join(bundle, "config.json"), s); err != nil {
			b.Fatal(err)
		}
		pidFile := filepath.Join(bundle, "init.pid")
		out, _ := os.Create(filepath.Join(bundle, "init.log"))
		cmd := exec.Command(cfg.RuncBinary, "--root", cfg.RuncRoot, "run", "-d", "--pid-file", pidFile, "--bundle", bundle, id)
		cmd.Stdout, cmd.Stderr = out, out
		err = cmd.Run()
		out.Close()
		if err != nil {
			b.Fatalf("runc run %s: %v", id, err)
		}
		pidFiles = append(pidFiles, pidFile)
	}
	time.Sleep(time.Second)
	total := 0
	for _, pf := range pidFiles {
		pid, err := readPid(pf)
		if err != nil {
			b.Fatal(err)
		}
		total += pssKB(pid)
	}
	return total
}

func readPid(p string) (int, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// pssKB is the Pss line of /proc/PID/smaps_rollup, in KiB (0 if gone).
func pssKB(pid int) int { return smapsKB(pid, "Pss") }

// smapsKB is one line of /proc/PID/smaps_rollup, in KiB (0 if gone).
func smapsKB(pid int, key string) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == key+":" {
			v, _ := strconv.Atoi(f[1])
			return v
		}
	}
	return 0
}

// buildBinary builds pkg with CGO_ENABLED=0 into dir/name.
func buildBinary(dir, name, pkg string) (string, error) {
	out := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %v: %s", pkg, err, b)
	}
	return out, nil
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

// writeJSON replaces p with v as JSON (mode 0600), atomically but without
// fsync, as the runtime saves container records.
func writeJSON(p string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(p, b, 0o600, atomicfile.NoSync())
}
