package test

// Benchmarks of the cluster core on real agents in network namespaces.
// Run them alone, as root:
//
//	go test -run '^$' -bench . -benchtime 1x ./test/
//
// Each one forms its own cluster, repeats its measurement benchRuns times
// (or b.N times if larger), reports the median with b.ReportMetric and
// prints a table row. Timings are only reported, never asserted.

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

// benchRuns is how many times each failure is injected and measured.
const benchRuns = 5

// runs returns how many measurements a benchmark makes.
func runs(b *testing.B) int {
	if b.N > benchRuns {
		return b.N
	}
	return benchRuns
}

var tableOnce sync.Once

// reportDurations reports median, min and max of samples as s/NAME-median,
// s/NAME-min and s/NAME-max and prints a table row.
func reportDurations(b *testing.B, name string, samples []time.Duration) {
	b.Helper()
	if len(samples) == 0 {
		return
	}
	s := append([]time.Duration(nil), samples...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	b.ReportMetric(med.Seconds(), "s/"+name+"-median")
	b.ReportMetric(s[0].Seconds(), "s/"+name+"-min")
	b.ReportMetric(s[len(s)-1].Seconds(), "s/"+name+"-max")
	all := make([]string, len(samples))
	for i, d := range samples {
		all[i] = fmt.Sprintf("%.2f", d.Seconds())
	}
	printRow(b, name, len(s), fmt.Sprintf("%.3f s", med.Seconds()), fmt.Sprintf("%.3f s", s[0].Seconds()),
		fmt.Sprintf("%.3f s", s[len(s)-1].Seconds()), strings.Join(all, " "))
}

// printRow prints one row of the results table (the header once).
func printRow(b *testing.B, name string, n int, median, lo, hi, note string) {
	tableOnce.Do(func() {
		fmt.Printf("\n%-22s %5s %11s %11s %11s  %s\n", "measurement", "runs", "median", "min", "max", "samples / notes")
		fmt.Printf("%s\n", strings.Repeat("-", 90))
	})
	row := fmt.Sprintf("%-22s %5d %11s %11s %11s  %s", name, n, median, lo, hi, note)
	fmt.Println(row)
	b.Log(row)
}

// formVoters forms an n-node cluster and waits for min(n,3 or 5) voters.
func formVoters(b *testing.B, n, voters int, opts ...harness.Option) (*harness.Cluster, string) {
	b.Helper()
	c := harness.New(b, n, opts...)
	token := c.Form(b)
	waitVoters(b, c, n, voters)
	return c, token
}

// firstWrite polls label writes through every host concurrently and returns
// how long after start the first one was accepted.
func firstWrite(ctx context.Context, start time.Time, hosts []*harness.Host, ids map[*harness.Host]string, key string) (time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	won := make(chan time.Duration, len(hosts))
	for _, h := range hosts {
		go func(h *harness.Host) {
			for ctx.Err() == nil {
				cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
				_, _, err := h.CLIContext(cctx, "node", "update", "--label-add", key+"="+h.Name, ids[h])
				ccancel()
				if err == nil {
					won <- time.Since(start)
					return
				}
				select {
				case <-ctx.Done():
				case <-time.After(harness.PollInterval):
				}
			}
		}(h)
	}
	select {
	case d := <-won:
		return d, nil
	case <-ctx.Done():
		return 0, fmt.Errorf("no write accepted: %w", ctx.Err())
	}
}

// BenchmarkLeaderFailover: pull the leader's plug, time until a write is
// accepted through a survivor. Each run forms a fresh 3-voter cluster, so
// runs are independent of how well a killed host rejoins. Both this and
// BenchmarkNodeDownDetection run under each profile (benchProfiles).
func BenchmarkLeaderFailover(b *testing.B) {
	for _, p := range benchProfiles() {
		b.Run(p, func(b *testing.B) { leaderFailover(b, p) })
	}
}

func leaderFailover(b *testing.B, profile string) {
	opt, sfx := profileOpt(b, profile)
	b.ResetTimer()
	var samples []time.Duration
	for i := 0; i < runs(b); i++ {
		b.StopTimer()
		c, _ := formVoters(b, 3, 3, opt)
		ids := map[*harness.Host]string{}
		for _, h := range c.Hosts() {
			ids[h] = h.NodeID(b)
		}
		leader := c.Leader(b, electionTimeout)
		survivors := hostsExcept(c.Hosts(), leader)
		b.StartTimer()
		start := time.Now()
		if err := leader.Kill(); err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		d, err := firstWrite(ctx, start, survivors, ids, fmt.Sprintf("failover%d", i))
		cancel()
		if err != nil {
			b.Fatalf("run %d: %v", i, err)
		}
		samples = append(samples, d)
		c.Close()
	}
	b.StopTimer()
	reportDurations(b, "failover"+sfx, samples)
}

// BenchmarkNodeDownDetection: pull a follower's plug, time until every
// survivor's `node ls` shows it down.
func BenchmarkNodeDownDetection(b *testing.B) {
	for _, p := range benchProfiles() {
		b.Run(p, func(b *testing.B) { nodeDownDetection(b, p) })
	}
}

func nodeDownDetection(b *testing.B, profile string) {
	opt, sfx := profileOpt(b, profile)
	c, _ := formVoters(b, 3, 3, opt)
	b.ResetTimer()
	var samples []time.Duration
	for i := 0; i < runs(b); i++ {
		leader := c.Leader(b, electionTimeout)
		victim := hostsExcept(c.Hosts(), leader)[i%2]
		id := victim.NodeID(b)
		survivors := hostsExcept(c.Hosts(), victim)
		start := time.Now()
		if err := victim.Kill(); err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		_, err := harness.Poll(ctx, nodeStatusSeen(id, api.NodeDown, survivors...))
		cancel()
		if err != nil {
			b.Fatalf("run %d: %v", i, err)
		}
		samples = append(samples, time.Since(start))
		if err := victim.Restart(); err != nil {
			b.Fatal(err)
		}
		waitVoters(b, c, 3, 3)
	}
	b.StopTimer()
	reportDurations(b, "down-detection"+sfx, samples)
}

// BenchmarkJoinToReady: time from `shoal join` on a fresh agent until its
// node is ready both on itself and on the first node.
func BenchmarkJoinToReady(b *testing.B) {
	c := harness.New(b, 1)
	token := c.Form(b)
	h1 := c.Host(1)
	b.ResetTimer()
	var samples []time.Duration
	for i := 0; i < runs(b); i++ {
		h := c.AddHost()
		h.MustStart(b)
		id := h.NodeID(b)
		start := time.Now()
		if err := h.Join(token, h1); err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		_, err := harness.Poll(ctx, nodeStatusSeen(id, api.NodeReady, h1, h))
		cancel()
		if err != nil {
			b.Fatalf("run %d: %v", i, err)
		}
		samples = append(samples, time.Since(start))
	}
	b.StopTimer()
	reportDurations(b, "join-to-ready", samples)
}

// BenchmarkMembership20: 20 agents on this machine; all join at once
// through the first node; time until every agent counts 20 alive members
// and lists 20 ready nodes. Also reports the agents' mean RSS at 20 nodes.
func BenchmarkMembership20(b *testing.B) {
	const n = 20
	c := harness.New(b, n)
	c.StartAll(b)
	h1 := c.Host(1)
	h1.MustCLI(b, "init")
	token := h1.Token(b)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for _, h := range c.Hosts()[1:] {
		wg.Add(1)
		go func(h *harness.Host) {
			defer wg.Done()
			if err := h.Join(token, h1); err != nil {
				errs <- err
			}
		}(h)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	joined := time.Since(start)

	pending := map[*harness.Host]bool{}
	for _, h := range c.Hosts() {
		pending[h] = true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	_, err := harness.Poll(ctx, func() (bool, string) {
		for h := range pending {
			st, err := h.Status()
			if err != nil {
				return false, err.Error()
			}
			if st.Members != n {
				return false, fmt.Sprintf("%s counts %d members", h.Name, st.Members)
			}
			if ok, msg := c.ReadyCondition(n, h)(); !ok {
				return false, msg
			}
			delete(pending, h)
		}
		return true, ""
	})
	if err != nil {
		b.Fatal(err)
	}
	converged := time.Since(start)
	b.StopTimer()
	b.ReportMetric(joined.Seconds(), "s/joins-returned")
	b.ReportMetric(converged.Seconds(), "s/converged-20")
	printRow(b, "membership-20 joins", 1, fmt.Sprintf("%.3f s", joined.Seconds()), "", "", "all 19 `join` commands returned")
	printRow(b, "membership-20 converge", 1, fmt.Sprintf("%.3f s", converged.Seconds()), "", "", "every agent: 20 members, 20 ready")
	reportRSS(b, "rss-at-20", c.Hosts())
}

// BenchmarkIdleRSS: resident memory of idle agents in a formed 3-node
// cluster with no services.
func BenchmarkIdleRSS(b *testing.B) {
	c := harness.New(b, 3)
	c.Form(b)
	// An observation window for the agents to go idle after forming.
	harness.Consistently(b, 3*time.Second, c.ReadyCondition(3, c.Hosts()...), "cluster stays ready")
	b.ResetTimer()
	reportRSS(b, "idle-rss", c.Hosts())
}

// reportRSS reports the median and max VmRSS of the hosts' agents in MiB.
func reportRSS(b *testing.B, name string, hosts []*harness.Host) {
	b.Helper()
	var mib []float64
	for _, h := range hosts {
		kb, err := vmRSS(h.PID())
		if err != nil {
			b.Fatalf("%s: %v", h.Name, err)
		}
		mib = append(mib, float64(kb)/1024)
	}
	sort.Float64s(mib)
	med := mib[len(mib)/2]
	b.ReportMetric(med, "MiB/"+name+"-median")
	b.ReportMetric(mib[len(mib)-1], "MiB/"+name+"-max")
	printRow(b, name, len(mib), fmt.Sprintf("%.1f MiB", med), fmt.Sprintf("%.1f MiB", mib[0]),
		fmt.Sprintf("%.1f MiB", mib[len(mib)-1]), "VmRSS of each agent")
}

// vmRSS reads VmRSS (kB) from /proc/PID/status.
func vmRSS(pid int) (int64, error) {
	if pid == 0 {
		return 0, harness.ErrNotRunning
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read status of pid %d: %w", pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			fields := strings.Fields(rest)
			if len(fields) == 0 {
				break
			}
			return strconv.ParseInt(fields[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}
