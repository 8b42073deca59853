package test

// Footprint benchmarks (issue 10): what an idle agent costs, how the leader
// grows with the cluster, and what a short blip or a scale-up costs compared
// with runc alone. Figures are printed, never asserted (the machine is shared):
//
//	go test -run '^$' -bench Footprint -benchtime 1x ./test/
//	SHOAL_BENCH_NODES=50 SHOAL_BENCH_IDLE=2m go test -run '^$' -bench FootprintCluster -benchtime 1x ./test/
//	SHOAL_BENCH_NODES=100 SHOAL_BENCH_GOSSIP_PROFILE=tolerant SHOAL_BENCH_IDLE=10m go test ...
//
// SHOAL_BENCH_GOSSIP_PROFILE picks the agents' --gossip-profile: for
// FootprintCluster (fast by default; 100 agents on this 2-core machine need
// tolerant, membership TolerantTiming says why) and, when set, the only
// profile of FootprintIdle3, LeaderFailover and NodeDownDetection, which
// otherwise run under fast and tolerant in turn (node/profile).
//
// Idle CPU is CPU-seconds (utime+stime from /proc/PID/stat) over a window of
// SHOAL_BENCH_IDLE (default 60s) divided by the window: the agent's own
// consumption, which the load of other processes on the machine does not
// inflate the way wall-clock sampling would. The "-exact" rows sum the
// threads' run time from schedstat instead: tick accounting charges a whole
// 10 ms tick to a process that happens to run when it fires, which
// overstates an agent that wakes briefly a few dozen times a second.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/api/timerslack"
	"github.com/shoal-org/shoal/runtime/ocispec"
	"github.com/shoal-org/shoal/test/harness"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat; it
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

// idleWindow is SHOAL_BENCH_IDLE, default 60s.
func idleWindow(b *testing.B) time.Duration {
	b.Helper()
	d := time.Minute
	if v := os.Getenv("SHOAL_BENCH_IDLE"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil || d <= 0 {
			b.Fatalf("SHOAL_BENCH_IDLE=%q: want a positive duration (%v)", v, err)
		}
	}
	return d
}

// benchNodes is SHOAL_BENCH_NODES, default 25.
func benchNodes(b *testing.B) int {
	b.Helper()
	n := 25
	if v := os.Getenv("SHOAL_BENCH_NODES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("SHOAL_BENCH_NODES=%q: want a positive integer (%v)", v, err)
		}
	}
	return n
}

// benchGossip is SHOAL_BENCH_GOSSIP_PROFILE (default fast), the agents'
// --gossip-profile, and the suffix that names it in the printed rows.
func benchGossip(b *testing.B) (harness.Option, string) {
	b.Helper()
	p := os.Getenv("SHOAL_BENCH_GOSSIP_PROFILE")
	if p == "" {
		p = "fast"
	}
	return profileOpt(b, p)
}

// benchProfiles are the profiles a benchmark that compares them runs:
// SHOAL_BENCH_GOSSIP_PROFILE alone when it is set, otherwise fast and
// tolerant, so that `make bench` prints what each costs and gives.
func benchProfiles() []string {
	if p := os.Getenv("SHOAL_BENCH_GOSSIP_PROFILE"); p != "" {
		return []string{p}
	}
	return []string{"fast", "tolerant"}
}

// profileOpt is the agents' option for --gossip-profile p and the suffix
// that names it in the printed rows (none for the default, fast).
func profileOpt(b *testing.B, p string) (harness.Option, string) {
	b.Helper()
	switch p {
	case "fast":
		return harness.WithAgentArgs("--gossip-profile", "fast"), ""
	case "tolerant":
		return harness.WithAgentArgs("--gossip-profile", p), "-" + p
	}
	b.Fatalf("gossip profile %q: want fast or tolerant", p)
	return nil, ""
}

// cpuTicks reads utime+stime of pid in clock ticks.
func cpuTicks(pid int) (int64, error) {
	if pid == 0 {
		return 0, harness.ErrNotRunning
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read stat of pid %d: %w", pid, err)
	}
	// The command name (field 2) may hold spaces: count fields after ')'.
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat of pid %d: no ')'", pid)
	}
	f := strings.Fields(string(raw[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("stat of pid %d: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("stat of pid %d: utime %q stime %q", pid, f[11], f[12])
	}
	return ut + st, nil
}

// runNanos sums the time on CPU (ns) of pid's threads from
// /proc/PID/task/*/schedstat. Unlike utime+stime, which charge a whole
// clock tick to whoever runs when it fires, it is exact for a process that
// wakes briefly many times a second; a thread that ends in between takes
// its time with it (Go's threads rarely do).
func runNanos(pid int) (int64, error) {
	dirs, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(dirs) == 0 {
		return 0, fmt.Errorf("schedstat of pid %d: %v", pid, err)
	}
	var sum int64
	for _, p := range dirs {
		raw, err := os.ReadFile(p)
		if err != nil {
			continue // the thread ended
		}
		f := strings.Fields(string(raw))
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %q", p, f[0])
		}
		sum += n
	}
	return sum, nil
}

// hostPIDs returns the processes Shoal runs for host h: its agent and, when
// one is running, the node's container supervisor (a process of its own that
// outlives the agent, found by its --root under the host's run directory).
func hostPIDs(h *harness.Host) []int {
	pids := []int{h.PID()}
	root := filepath.Join(h.RunDir, "runtime")
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		raw, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if len(args) < 3 || !strings.Contains(args[0], "supervisor") {
			continue
		}
		for i := 1; i+1 < len(args); i++ {
			if args[i] == "--root" && args[i+1] == root {
				if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
					pids = append(pids, pid)
				}
			}
		}
	}
	return pids
}

// switches sums the context switches of pid's threads (voluntary and
// not): each is a wake-up of a thread, the unit an idle agent pays in.
func switches(pid int) int64 {
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	var sum int64
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(raw), "\n") {
			if rest, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
				n, _ := strconv.ParseInt(strings.TrimSpace(rest), 10, 64)
				sum += n
			} else if rest, ok := strings.CutPrefix(line, "nonvoluntary_ctxt_switches:"); ok {
				n, _ := strconv.ParseInt(strings.TrimSpace(rest), 10, 64)
				sum += n
			}
		}
	}
	return sum
}

// idleCPU measures each host's agent and supervisor together over window
// and returns their CPU use in percent of one core, sorted ascending: by
// utime+stime (ticks) and by schedstat (exact run time); and the agents'
// thread wake-ups (context switches) per second.
func idleCPU(b *testing.B, hosts []*harness.Host, window time.Duration) (ticks, exact, wakeups []float64) {
	b.Helper()
	ticks, exact, wakeups = idleCPUByHost(b, hosts, window)
	sort.Float64s(ticks)
	sort.Float64s(exact)
	sort.Float64s(wakeups)
	return ticks, exact, wakeups
}

// idleCPUByHost is idleCPU in the order of hosts.
func idleCPUByHost(b *testing.B, hosts []*harness.Host, window time.Duration) (ticks, exact, wakeups []float64) {
	b.Helper()
	pids := make([][]int, len(hosts))
	read := func(i int) (t, ns int64) {
		for _, pid := range pids[i] {
			pt, err := cpuTicks(pid)
			if err != nil {
				b.Fatalf("%s: %v", hosts[i].Name, err)
			}
			pns, err := runNanos(pid)
			if err != nil {
				b.Fatalf("%s: %v", hosts[i].Name, err)
			}
			t, ns = t+pt, ns+pns
		}
		return t, ns
	}
	before := make([]int64, len(hosts))
	beforeNs := make([]int64, len(hosts))
	beforeSw := make([]int64, len(hosts))
	for i, h := range hosts {
		pids[i] = hostPIDs(h)
		before[i], beforeNs[i] = read(i)
		beforeSw[i] = switches(h.PID())
	}
	start := time.Now()
	// The window is the measurement itself, not a wait for a condition.
	time.Sleep(window)
	wall := time.Since(start)
	ticks = make([]float64, len(hosts))
	exact = make([]float64, len(hosts))
	wakeups = make([]float64, len(hosts))
	for i, h := range hosts {
		t, ns := read(i)
		ticks[i] = 100 * float64(t-before[i]) / clockTicks / wall.Seconds()
		exact[i] = 100 * float64(ns-beforeNs[i]) / float64(wall.Nanoseconds())
		wakeups[i] = float64(switches(h.PID())-beforeSw[i]) / wall.Seconds()
	}
	return ticks, exact, wakeups
}

// sleeperRate is how often the baseline process of the idle benchmark
// wakes: about as often as an idle agent's threads do under fast (30-35
// context switches a second in 2026-12).
const sleeperRate = 30

// sleeperRun is the idle benchmark's baseline: the test binary re-run as
// a Go process with the agent's runtime settings (one P, 1 ms of timer
// slack) that only sleeps and wakes rate times a second, measured over
// the same window as the agents. It is the floor a process pays on this
// machine for waking that often, whatever it does when awake.
type sleeperRun struct {
	cmd       *exec.Cmd
	ns, sw    int64
	startedAt time.Time
}

func startSleeper(b *testing.B, rate int) *sleeperRun {
	b.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), envSleeper+"="+(time.Second/time.Duration(rate)).String(), "GOMAXPROCS=1")
	if err := cmd.Start(); err != nil {
		b.Fatalf("baseline sleeper: %v", err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ns, err := runNanos(cmd.Process.Pid)
	if err != nil {
		b.Fatalf("baseline sleeper: %v", err)
	}
	return &sleeperRun{cmd: cmd, ns: ns, sw: switches(cmd.Process.Pid), startedAt: time.Now()}
}

// measured returns the sleeper's CPU in percent of a core and its
// context switches per second since startSleeper.
func (s *sleeperRun) measured(b *testing.B) (cpu, wake float64) {
	b.Helper()
	pid := s.cmd.Process.Pid
	ns, err := runNanos(pid)
	if err != nil {
		b.Fatalf("baseline sleeper: %v", err)
	}
	wall := time.Since(s.startedAt)
	return 100 * float64(ns-s.ns) / float64(wall.Nanoseconds()), float64(switches(pid)-s.sw) / wall.Seconds()
}

// reportFloor prints the baseline sleeper's CPU and wake-ups beside the
// median agent's CPU, as a ratio.
func reportFloor(b *testing.B, name string, cpu, wake, agent float64) {
	b.Helper()
	b.ReportMetric(cpu, "%cpu/"+name)
	printRow(b, name, 1, fmt.Sprintf("%.3f %%", cpu), "", "",
		fmt.Sprintf("a Go process (one P, %v slack, as the agent) that only sleeps and wakes %d times a second (%.0f switches/s), same window; median agent / it = %.2f", timerslack.Agent, sleeperRate, wake, agent/cpu))
}

// reportWakeups prints median and max thread wake-ups per second per agent.
func reportWakeups(b *testing.B, name string, w []float64) {
	b.Helper()
	b.ReportMetric(w[len(w)/2], "wakeups/s/"+name+"-median")
	printRow(b, name, len(w), fmt.Sprintf("%.0f /s", w[len(w)/2]), fmt.Sprintf("%.0f /s", w[0]),
		fmt.Sprintf("%.0f /s", w[len(w)-1]), "thread wake-ups (context switches) of each agent: what idle CPU is made of")
}

// reportCPU prints and reports median and max idle CPU of one agent.
func reportCPU(b *testing.B, name string, pct []float64, window time.Duration, how string) {
	b.Helper()
	med := pct[len(pct)/2]
	var sum float64
	for _, p := range pct {
		sum += p
	}
	b.ReportMetric(med, "%cpu/"+name+"-median")
	b.ReportMetric(pct[len(pct)-1], "%cpu/"+name+"-max")
	printRow(b, name, len(pct), fmt.Sprintf("%.3f %%", med), fmt.Sprintf("%.3f %%", pct[0]),
		fmt.Sprintf("%.3f %%", pct[len(pct)-1]),
		fmt.Sprintf("%% of a core per agent over %s, %s (sum %.2f %%; goal <= 0.3)", window, how, sum))
}

// reportAnon reports median and max RssAnon of the hosts' agents in MiB:
// the memory each agent holds alone. VmRSS adds the pages of the binary
// mapped from the page cache, one copy for every agent on the machine.
func reportAnon(b *testing.B, name string, hosts []*harness.Host) {
	b.Helper()
	var mib []float64
	for _, h := range hosts {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", h.PID()))
		if err != nil {
			b.Fatalf("%s: %v", h.Name, err)
		}
		for _, line := range strings.Split(string(raw), "\n") {
			if rest, ok := strings.CutPrefix(line, "RssAnon:"); ok {
				if f := strings.Fields(rest); len(f) > 0 {
					kb, _ := strconv.ParseFloat(f[0], 64)
					mib = append(mib, kb/1024)
				}
			}
		}
	}
	if len(mib) == 0 {
		b.Fatal("no RssAnon read")
	}
	sort.Float64s(mib)
	med := mib[len(mib)/2]
	b.ReportMetric(med, "MiB/"+name+"-median")
	printRow(b, name, len(mib), fmt.Sprintf("%.1f MiB", med), fmt.Sprintf("%.1f MiB", mib[0]),
		fmt.Sprintf("%.1f MiB", mib[len(mib)-1]), "RssAnon of each agent (its own memory; goal <= 20)")
}

// settle waits until every host lists n ready nodes and then lets the
// cluster run for a short observation window, so the idle measurement does
// not include forming (voter promotion, first snapshots).
func settle(b *testing.B, c *harness.Cluster, n int) {
	b.Helper()
	c.WaitReady(b, 3*time.Minute, n)
	harness.Consistently(b, 5*time.Second, c.ReadyCondition(n, c.Host(1)), "cluster stays ready")
}

// nodeDownEvents counts `node down` events between since and until as seen
// by h.
func nodeDownEvents(b *testing.B, h *harness.Host, since, until time.Time) int {
	b.Helper()
	out, _, err := h.CLI("events", "--since", since.Format(time.RFC3339Nano), "--until", until.Format(time.RFC3339Nano),
		"--filter", "type=node", "--format", "json")
	if err != nil {
		b.Fatalf("events on %s: %v", h.Name, err)
	}
	down := 0
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var ev api.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			b.Fatalf("event %q: %v", line, err)
		}
		if ev.Action == "down" {
			down++
			b.Logf("false down: %s at %s", ev.Name, ev.Time.Format(time.RFC3339Nano))
		}
	}
	return down
}

// BenchmarkFootprintIdle3: CPU and RSS of the agents of an idle, formed
// 3-node cluster with no services, under each profile (benchProfiles).
func BenchmarkFootprintIdle3(b *testing.B) {
	for _, p := range benchProfiles() {
		b.Run(p, func(b *testing.B) { footprintIdle3(b, p) })
	}
}

func footprintIdle3(b *testing.B, profile string) {
	opt, sfx := profileOpt(b, profile)
	c := harness.New(b, 3, opt)
	c.Form(b)
	waitVoters(b, c, 3, 3)
	settle(b, c, 3)
	w := idleWindow(b)
	floor := startSleeper(b, sleeperRate)
	b.ResetTimer()
	since := time.Now()
	ticks, exact, wake := idleCPU(b, c.Hosts(), w)
	b.StopTimer()
	floorCPU, floorWake := floor.measured(b)
	reportCPU(b, "idle-cpu-3"+sfx, ticks, w, "utime+stime, agent and supervisor")
	reportCPU(b, "idle-cpu-3-exact"+sfx, exact, w, "schedstat, agent and supervisor")
	reportWakeups(b, "idle-wakeups-3"+sfx, wake)
	reportFloor(b, "idle-floor-sleeper"+sfx, floorCPU, floorWake, exact[len(exact)/2])
	reportRSS(b, "idle-rss-3"+sfx, c.Hosts())
	reportAnon(b, "idle-anon-3"+sfx, c.Hosts())
	down := nodeDownEvents(b, c.Host(1), since, time.Now())
	b.ReportMetric(float64(down), "false-down")
	printRow(b, "idle-false-down-3"+sfx, 1, strconv.Itoa(down), "", "", "node down events while idle (goal 0)")
}

// BenchmarkFootprintIdleSideBySide compares the idle CPU of two builds:
// a 3-node cluster of SHOAL_BIN and one of SHOAL_BENCH_BIN_B (another
// build's shoal binary, its supervisor beside it) idle at the same time,
// under the fast profile, and each window of SHOAL_BENCH_IDLE reports
// both medians and their ratio (B/A); halfway the clusters are made again
// in the other order. Skipped without SHOAL_BENCH_BIN_B.
//
// Why: one cluster measured window after window on this machine swings
// 0.26–0.65 % of a core with the same binary, far more than a change to
// an idle agent moves it; two clusters in the same window share whatever
// the machine does meanwhile. Why the swap: the cluster formed second
// measured 5–17 % higher than the first with the same pair of builds.
func BenchmarkFootprintIdleSideBySide(b *testing.B) {
	binB := os.Getenv("SHOAL_BENCH_BIN_B")
	if binB == "" {
		b.Skip("set SHOAL_BENCH_BIN_B to the shoal binary to compare with SHOAL_BIN's")
	}
	binA, err := harness.Binary()
	if err != nil {
		b.Fatalf("shoal binary: %v", err)
	}
	opt, _ := profileOpt(b, "fast")
	w := idleWindow(b)
	const perOrder = 2
	var ratios, wakeA, wakeB []float64
	for order := range 2 {
		bins := []string{binA, binB}
		if order == 1 {
			bins[0], bins[1] = binB, binA
		}
		var cs [2]*harness.Cluster
		for i, bin := range bins {
			cs[i] = harness.New(b, 3, opt, harness.WithBinary(bin))
			cs[i].Form(b)
		}
		for _, c := range cs {
			waitVoters(b, c, 3, 3)
			settle(b, c, 3)
		}
		a, bb := cs[0], cs[1]
		if order == 1 {
			a, bb = cs[1], cs[0]
		}
		formed := "second"
		if order == 1 {
			formed = "first"
		}
		for range perOrder {
			// One window for both clusters' six agents: A's three, then B's.
			_, ex, wk := idleCPUByHost(b, append(a.Hosts(), bb.Hosts()...), w)
			mA, mB := medianOf(ex[:3]), medianOf(ex[3:])
			wA, wB := medianOf(wk[:3]), medianOf(wk[3:])
			ratios = append(ratios, mB/mA)
			wakeA, wakeB = append(wakeA, wA), append(wakeB, wB)
			printRow(b, "idle-side-by-side", 1, fmt.Sprintf("%.2f", mB/mA), "", "",
				fmt.Sprintf("B/A median agent CPU (schedstat) in one window: A %.3f %%, B %.3f %%; wake-ups %.1f / %.1f a second (B formed %s)",
					mA, mB, wA, wB, formed))
		}
		for _, c := range cs {
			c.Close()
		}
	}
	geo := 0.0
	for _, r := range ratios {
		geo += math.Log(r)
	}
	geo = math.Exp(geo / float64(len(ratios)))
	b.ReportMetric(geo, "B/A")
	printRow(b, "idle-side-by-side-geo", len(ratios), fmt.Sprintf("%.2f", geo), "", "",
		fmt.Sprintf("geometric mean of B/A; wake-ups, medians of windows: A %.1f, B %.1f a second", medianOf(wakeA), medianOf(wakeB)))
}

// medianOf is the median of v (sorted in place).
func medianOf(v []float64) float64 {
	sort.Float64s(v)
	return v[len(v)/2]
}

// BenchmarkFootprintCluster: SHOAL_BENCH_NODES agents (default 25) start at
// once and join through the first; formation is the time until the first
// node lists every node ready. A join refused for a reason worth retrying
// (a leader change under load) is retried up to twice and counted. Then the
// idle window: CPU per agent, RSS of the leader and of the others, and
// `down` events (goal 0).
func BenchmarkFootprintCluster(b *testing.B) {
	n := benchNodes(b)
	opt, sfx := benchGossip(b)
	ensureNeighbourRoom(b, n)
	c := harness.New(b, n, opt)
	c.StartAll(b)
	h1 := c.Host(1)
	h1.MustCLI(b, "init")
	token := h1.Token(b)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	retried := 0
	errs := make(chan error, n)
	for _, h := range c.Hosts()[1:] {
		wg.Add(1)
		go func(h *harness.Host) {
			defer wg.Done()
			var err error
			for try := 0; try < 3; try++ {
				if err = h.Join(token, h1); err == nil {
					return
				}
				b.Logf("join of %s refused (try %d): %v", h.Name, try+1, err)
				mu.Lock()
				retried++
				mu.Unlock()
			}
			errs <- fmt.Errorf("%s: %w", h.Name, err)
		}(h)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	joined := time.Since(start)
	b.ReportMetric(float64(retried), "join-retries")
	harness.Eventually(b, 5*time.Minute, c.ReadyCondition(n, h1), "every node ready on h1")
	formed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(formed.Seconds(), "s/formed")
	printRow(b, fmt.Sprintf("form-%d joins", n)+sfx, 1, fmt.Sprintf("%.2f s", joined.Seconds()), "", "",
		fmt.Sprintf("every `join` returned; %d refused and retried (goal 0)", retried))
	printRow(b, fmt.Sprintf("form-%d", n)+sfx, 1, fmt.Sprintf("%.2f s", formed.Seconds()), "", "", "node 1 lists every node ready (goal <= 30 s at 100)")

	settle(b, c, n)
	w := idleWindow(b)
	since := time.Now()
	ticks, exact, wake := idleCPU(b, c.Hosts(), w)
	reportCPU(b, fmt.Sprintf("idle-cpu-%d", n)+sfx, ticks, w, "utime+stime, agent and supervisor")
	reportCPU(b, fmt.Sprintf("idle-cpu-%d-exact", n)+sfx, exact, w, "schedstat, agent and supervisor")
	reportWakeups(b, fmt.Sprintf("idle-wakeups-%d", n)+sfx, wake)
	leader := c.Leader(b, time.Minute)
	reportRSS(b, fmt.Sprintf("leader-rss-%d", n)+sfx, []*harness.Host{leader})
	var others []*harness.Host
	for _, h := range c.Hosts() {
		if h != leader {
			others = append(others, h)
		}
	}
	reportRSS(b, fmt.Sprintf("idle-rss-%d", n)+sfx, others)
	reportAnon(b, fmt.Sprintf("leader-anon-%d", n)+sfx, []*harness.Host{leader})
	reportAnon(b, fmt.Sprintf("idle-anon-%d", n)+sfx, others)
	down := nodeDownEvents(b, leader, since, time.Now())
	b.ReportMetric(float64(down), "false-down")
	printRow(b, fmt.Sprintf("idle-false-down-%d", n)+sfx, 1, strconv.Itoa(down), "", "", "node down events while idle (goal 0)")
}

// ensureNeighbourRoom raises the kernel's neighbour table limits, which all
// namespaces share, to 4·n² when they are lower: every simulated node keeps
// a permanent neighbour entry per peer (DESIGN.md, Known facts).
func ensureNeighbourRoom(b *testing.B, n int) {
	b.Helper()
	want := 4 * n * n
	for i, name := range []string{"gc_thresh1", "gc_thresh2", "gc_thresh3"} {
		p := filepath.Join("/proc/sys/net/ipv4/neigh/default", name)
		raw, err := os.ReadFile(p)
		if err != nil {
			b.Fatalf("read %s: %v", p, err)
		}
		cur, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
		// thresh1 and 2 below 3, as the kernel expects.
		v := want * (i + 2) / 4
		if cur >= v {
			continue
		}
		if err := os.WriteFile(p, []byte(strconv.Itoa(v)), 0o644); err != nil {
			b.Fatalf("raise %s to %d: %v", p, v, err)
		}
	}
}

// BenchmarkFootprintBlip: tasks replaced by a 3 s link cut on a node running
// 2 of 6 replicas, counted once the cluster has settled (goal 0: the
// originals are kept and the replacements stopped, see
// TestCalmBlipKeepsOriginals).
func BenchmarkFootprintBlip(b *testing.B) {
	c := harness.New(b, 3)
	c.Form(b)
	h1 := c.Host(1)
	h1.MustCLI(b, "image", "import", busyboxTar(b), "bb:1")
	leader := c.Leader(b, time.Minute)
	leader.MustCLI(b, "service", "create", "--name", "blip", "--replicas", "6", "bb:1", "sleep", "100000")
	untilSlots(b, leader, "blip", 6, "", "", time.Now(), 2*time.Minute)
	var tasks []api.Task
	if err := leader.JSON(&tasks, "service", "ps", "blip"); err != nil {
		b.Fatal(err)
	}
	var victim *harness.Host
	for _, h := range c.Hosts() {
		if h != leader && len(activeOn(tasks, hostname(h))) > 0 {
			victim = h
			break
		}
	}
	if victim == nil {
		b.Fatal("no host but the leader runs blip")
	}
	before := activeOn(tasks, hostname(victim))
	b.ResetTimer()
	if err := victim.CutLink(); err != nil {
		b.Fatal(err)
	}
	// The blip's length is the fault itself, not a wait for a condition.
	time.Sleep(3 * time.Second)
	if err := victim.RestoreLink(); err != nil {
		b.Fatal(err)
	}
	var replaced int
	harness.Eventually(b, 2*time.Minute, func() (bool, string) {
		var ts []api.Task
		if err := leader.JSON(&ts, "service", "ps", "blip"); err != nil {
			return false, err.Error()
		}
		running, desired := 0, 0
		for _, tk := range ts {
			if tk.DesiredState == api.TaskRunning {
				desired++
				if tk.State == api.TaskRunning {
					running++
				}
			}
		}
		kept := activeOn(ts, hostname(victim))
		replaced = 0
		for _, id := range before {
			found := false
			for _, k := range kept {
				found = found || k == id
			}
			if !found {
				replaced++
			}
		}
		return running == 6 && desired == 6, fmt.Sprintf("%d running of %d desired", running, desired)
	}, "blip settled at 6 running")
	b.StopTimer()
	b.ReportMetric(float64(replaced), "tasks-replaced")
	printRow(b, "blip-3s-replaced", 1, strconv.Itoa(replaced), "", "", fmt.Sprintf("of the victim's %d tasks (goal 0)", len(before)))
}

// BenchmarkFootprintScaleVsRunc: one node, `service scale` 10 → 50
// replicas (how long the command waits, cliWait), and 40 `runc run -d` of
// the same image started in parallel by hand on the same machine; the
// ratio of the rates (goal >= 0.8).
func BenchmarkFootprintScaleVsRunc(b *testing.B) {
	c := harness.New(b, 1)
	c.Form(b)
	h := c.Host(1)
	tar := busyboxTar(b)
	h.MustCLI(b, "image", "import", tar, "bb:1")
	h.MustCLI(b, "service", "create", "--name", "sc", "--replicas", "10", "--update-monitor", "0", "bb:1", "sleep", "100000")
	b.ResetTimer()
	var shoal time.Duration
	shoalBusy, shoalCPU := busyShare(b, func() { shoal = cliWait(b, h, "service", "scale", "sc=50") })
	b.StopTimer()
	h.MustCLI(b, "service", "rm", "sc")
	harness.Eventually(b, 2*time.Minute, func() (bool, string) {
		n := containersOnB(b, h)
		return n == 0, fmt.Sprintf("%d containers left", n)
	}, "containers removed")

	raw, rawBusy, rawCPU := rawRuncParallel(b, tar, 40)
	rawSC, rawSCBusy, rawSCCPU := rawRuncParallelSeccomp(b, tar, 40)
	rawCPUs, rawCPUsBusy, rawCPUsCPU := rawRunc(b, tar, 40, false, goruntime.NumCPU())
	ratio := raw.Seconds() / shoal.Seconds()
	b.ReportMetric(40/shoal.Seconds(), "tasks/s-shoal")
	b.ReportMetric(40/raw.Seconds(), "tasks/s-runc")
	b.ReportMetric(ratio, "ratio")
	b.ReportMetric(rawSC.Seconds()/shoal.Seconds(), "ratio-seccomp")
	printRow(b, "scale-10-50 shoal", 1, fmt.Sprintf("%.2f s", shoal.Seconds()), "", "", fmt.Sprintf("%.1f tasks/s; machine %.0f %% busy, %.2f CPU-s", 40/shoal.Seconds(), 100*shoalBusy, shoalCPU))
	printRow(b, "runc-run-d x40", 1, fmt.Sprintf("%.2f s", raw.Seconds()), "", "", fmt.Sprintf("%.1f containers/s, parallel, one shared rootfs; machine %.0f %% busy, %.2f CPU-s", 40/raw.Seconds(), 100*rawBusy, rawCPU))
	printRow(b, "runc-run-d x40 +seccomp", 1, fmt.Sprintf("%.2f s", rawSC.Seconds()), "", "", fmt.Sprintf("%.1f containers/s, the same with Shoal's seccomp profile; machine %.0f %% busy, %.2f CPU-s", 40/rawSC.Seconds(), 100*rawSCBusy, rawSCCPU))
	printRow(b, fmt.Sprintf("runc-run-d x40 by %d", goruntime.NumCPU()), 1, fmt.Sprintf("%.2f s", rawCPUs.Seconds()), "", "", fmt.Sprintf("%.1f containers/s, at most one per CPU at once, as the agent starts them; machine %.0f %% busy, %.2f CPU-s", 40/rawCPUs.Seconds(), 100*rawCPUsBusy, rawCPUsCPU))
	printRow(b, "scale-vs-runc", 1, fmt.Sprintf("%.2f", ratio), "", "", "shoal rate / raw runc rate (goal >= 0.8)")
	printRow(b, "scale-vs-runc+seccomp", 1, fmt.Sprintf("%.2f", rawSC.Seconds()/shoal.Seconds()), "", "", "shoal rate / raw runc rate, both with the default seccomp profile")
	printRow(b, "scale-vs-runc-by-cpu", 1, fmt.Sprintf("%.2f", rawCPUs.Seconds()/shoal.Seconds()), "", "", "shoal rate / raw runc rate, runc one per CPU at once (no seccomp)")
}

// rawRuncParallel unpacks tar once and times n parallel `runc run -d` of
// `sleep 100000` on it (read-only root, shared), each in its own bundle
// made by `runc spec`, then deletes them. It is the floor Shoal's own
// scale-up is compared with.
func rawRuncParallel(b *testing.B, tar string, n int) (d time.Duration, busy, cpuSeconds float64) {
	b.Helper()
	return rawRunc(b, tar, n, false, 0)
}

// rawRuncParallelSeccomp is rawRuncParallel with the seccomp profile every
// Shoal container gets (Docker's default, ocispec.BuildSpec) added to the
// bundles: the same floor with the isolation a user is given, which
// `runc spec` leaves out. runc compiles the profile in every container's
// init (libseccomp), so it costs CPU per container, not once.
func rawRuncParallelSeccomp(b *testing.B, tar string, n int) (d time.Duration, busy, cpuSeconds float64) {
	b.Helper()
	return rawRunc(b, tar, n, true, 0)
}

// It also returns the machine's busy share and busy CPU seconds over the
// timed runs alone (busyShare). parallel > 0 runs at most that many runc
// at once (the bound the agent puts on its own starts); 0 runs them all
// at once.
func rawRunc(b *testing.B, tar string, n int, seccomp bool, parallel int) (time.Duration, float64, float64) {
	b.Helper()
	var profile *specs.LinuxSeccomp
	if seccomp {
		s, err := ocispec.BuildSpec(ocispec.SpecInput{Hostname: "bench", RootfsPath: "rootfs", Args: []string{"sleep", "100000"},
			InitBinary: "/bin/true", Cwd: "/"})
		if err != nil {
			b.Fatalf("build the default spec: %v", err)
		}
		profile = s.Linux.Seccomp
	}
	dir := b.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		b.Fatal(err)
	}
	if out, err := exec.Command("tar", "-xf", tar, "-C", rootfs).CombinedOutput(); err != nil {
		b.Fatalf("unpack %s: %v: %s", tar, err, out)
	}
	root := filepath.Join(dir, "runc")
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("fpbench-%d-%d", os.Getpid(), i)
		bundle := filepath.Join(dir, ids[i])
		if err := os.MkdirAll(bundle, 0o755); err != nil {
			b.Fatal(err)
		}
		if out, err := exec.Command("runc", "spec", "--bundle", bundle).CombinedOutput(); err != nil {
			b.Fatalf("runc spec: %v: %s", err, out)
		}
		cfgPath := filepath.Join(bundle, "config.json")
		raw, err := os.ReadFile(cfgPath)
		if err != nil {
			b.Fatal(err)
		}
		var spec map[string]any
		if err := json.Unmarshal(raw, &spec); err != nil {
			b.Fatal(err)
		}
		spec["root"] = map[string]any{"path": rootfs, "readonly": true}
		proc := spec["process"].(map[string]any)
		proc["terminal"] = false
		proc["args"] = []string{"sleep", "100000"}
		if profile != nil {
			spec["linux"].(map[string]any)["seccomp"] = profile
		}
		raw, _ = json.Marshal(spec)
		if err := os.WriteFile(cfgPath, raw, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	defer func() {
		for _, id := range ids {
			_ = exec.Command("runc", "--root", root, "delete", "--force", id).Run()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	b0, t0 := machineCPU(b)
	var wg sync.WaitGroup
	errs := make([]error, n)
	if parallel <= 0 {
		parallel = n
	}
	slots := make(chan struct{}, parallel)
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			slots <- struct{}{}
			defer func() { <-slots }()
			cmd := exec.CommandContext(ctx, "runc", "--root", root, "run", "-d", "--bundle", filepath.Join(dir, id), id)
			// The container inherits runc's stdio: a file, not a pipe,
			// or Run would wait for the container to close it.
			logPath := filepath.Join(dir, id+".log")
			f, err := os.Create(logPath)
			if err != nil {
				errs[i] = err
				return
			}
			defer f.Close()
			cmd.Stdout, cmd.Stderr = f, f
			if err := cmd.Run(); err != nil {
				out, _ := os.ReadFile(logPath)
				errs[i] = fmt.Errorf("runc run %s: %v: %s", id, err, out)
			}
		}()
	}
	wg.Wait()
	d := time.Since(start)
	b1, t1 := machineCPU(b)
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	return d, float64(b1-b0) / float64(max(t1-t0, 1)), float64(b1-b0) / clockTicks
}

// machineCPU reads the busy and total jiffies of the whole machine
// (/proc/stat's cpu line): a phase's busy share says whether it was bound
// by CPU (near 1) or waited on something (idle time inside it).
func machineCPU(b *testing.B) (busy, total uint64) {
	b.Helper()
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		b.Fatal(err)
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	for i, f := range strings.Fields(line)[1:] {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			b.Fatalf("/proc/stat: %q: %v", line, err)
		}
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total
}

// busyShare runs f and returns the machine's busy share over it and the
// busy CPU seconds it took.
func busyShare(b *testing.B, f func()) (share, cpuSeconds float64) {
	b.Helper()
	b0, t0 := machineCPU(b)
	f()
	b1, t1 := machineCPU(b)
	if t1 == t0 {
		return 0, 0
	}
	return float64(b1-b0) / float64(t1-t0), float64(b1-b0) / clockTicks
}
