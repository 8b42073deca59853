package test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-org/shoal/test/harness"
)

// BenchmarkLeaderRSS10kTasks: the leader's resident memory while one
// `service create --replicas 10000` is turned into 10,000 task records.
// A constraint no node matches keeps the tasks pending (no containers), so
// what is measured is the control plane: the planner creating tasks in
// rounds of scheduler.DefaultMaxCreate, the Raft entries, the store on
// every node. Rows: the leader's RSS before, its peak while placing, and
// time until all 10,000 tasks exist.
func BenchmarkLeaderRSS10kTasks(b *testing.B) {
	const replicas = 10000
	c := harness.New(b, 3)
	c.Form(b)
	h := c.Host(1)
	h.MustCLI(b, "image", "import", busyboxTar(b), "bb:1")
	leader := c.Leader(b, electionTimeout)
	before, err := vmRSS(leader.PID())
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(harness.Context(b, 10*time.Minute), 5*time.Minute)
	defer cancel()

	// Sample the leader's RSS until the tasks exist.
	var mu sync.Mutex
	peak := before
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if kb, err := vmRSS(leader.PID()); err == nil {
				mu.Lock()
				peak = max(peak, kb)
				mu.Unlock()
			}
		}
	}()

	b.ResetTimer()
	start := time.Now()
	h.MustCLI(b, "service", "create", "-d", "--name", "pending", "--replicas", fmt.Sprint(replicas),
		"--constraint", "node.labels.nomatch==1", "bb:1", "sleep", "1000")
	// Listing 10,000 tasks costs the agent a few MB of JSON: check once a
	// second, not at the harness's poll interval.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	n := 0
	for n < replicas {
		out, _, err := h.CLI("service", "ps", "-q", "pending")
		if err == nil {
			n = len(strings.Fields(out))
		}
		if n >= replicas {
			break
		}
		select {
		case <-ctx.Done():
			b.Fatalf("%d of %d tasks after %s", n, replicas, time.Since(start).Round(time.Second))
		case <-tick.C:
		}
	}
	took := time.Since(start)
	b.StopTimer()
	cancel()
	<-sampled
	after, err := vmRSS(leader.PID())
	if err != nil {
		b.Fatal(err)
	}
	harness.Eventually(b, downTimeout, c.ReadyCondition(3, c.Hosts()...), "every node still ready")
	mib := func(kb int64) string { return fmt.Sprintf("%.1f MiB", float64(kb)/1024) }
	b.ReportMetric(float64(peak)/1024, "MiB/leader-rss-peak")
	b.ReportMetric(took.Seconds(), "s/10k-tasks")
	printRow(b, "leader-rss-10k-tasks", 1, mib(peak), mib(before), mib(after),
		fmt.Sprintf("peak (before, after) while %d pending tasks were created in %s", replicas, took.Round(100*time.Millisecond)))
}
