package test

import (
	"fmt"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

// runningTaskPIDs maps task ID → container PID of the running task
// containers on hosts.
func runningTaskPIDs(b testing.TB, hosts []*harness.Host) map[string]int {
	b.Helper()
	out := map[string]int{}
	for _, h := range hosts {
		var cs []api.Container
		if err := h.JSON(&cs, "ps"); err != nil {
			b.Fatalf("ps on %s: %v", h.Name, err)
		}
		for _, ct := range cs {
			if ct.TaskID != "" && ct.State == "running" {
				out[ct.TaskID] = ct.Pid
			}
		}
	}
	return out
}

// BenchmarkCARotate5Nodes: `ca rotate` on a 5-node cluster running a
// 5-replica service, until every node has a certificate from the new CA and
// the old one is dropped (goal ≤ 10 s), counting task restarts (goal 0: the
// same task containers, same PIDs).
func BenchmarkCARotate5Nodes(b *testing.B) {
	harness.Context(b, 20*time.Minute)
	c := harness.New(b, 5)
	c.Form(b)
	h1 := c.Host(1)
	h1.MustCLI(b, "image", "import", busyboxTar(b), "bb:1")
	h1.MustCLI(b, "service", "create", "--name", "web", "--replicas", "5", "bb:1", "httpd", "-f", "-p", "80")
	harness.Eventually(b, 120*time.Second, func() (bool, string) {
		n := len(runningTaskPIDs(b, c.Hosts()))
		return n == 5, fmt.Sprintf("%d running", n)
	}, "5 running tasks")
	var samples []time.Duration
	restarts := 0
	for i := 0; i < max(b.N, 3); i++ {
		before := runningTaskPIDs(b, c.Hosts())
		start := time.Now()
		r, err := caRotate(c.Host(1 + i%5))
		if err != nil {
			b.Fatalf("ca rotate: %v", err)
		}
		d := time.Since(start)
		if !r.Complete {
			b.Fatalf("rotation %d incomplete after %s: pending %v", i, d, r.Pending)
		}
		samples = append(samples, d)
		c.WaitReady(b, 60*time.Second, 5)
		after := runningTaskPIDs(b, c.Hosts())
		for id, pid := range before {
			if after[id] != pid {
				restarts++
			}
		}
	}
	b.ReportMetric(float64(restarts), "task-restarts")
	reportDurations(b, "ca-rotate-5-nodes", samples)
	printRow(b, "ca rotate restarts", len(samples), fmt.Sprint(restarts), "", "", "task containers restarted (goal 0)")
}
