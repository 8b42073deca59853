package test

// Task start with one secret and one config vs without (issue 8; goal
// ≤ 1.2×):
//
//	go test -run '^$' -bench Secrets -benchtime 1x ./test/

import (
	"fmt"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

// taskStartTime waits until service svc's task runs and returns the time
// from its creation by the scheduler to its report of running (task
// record timestamps: the whole node-side start, secrets fetch included).
func taskStartTime(b *testing.B, h *harness.Host, svc string) time.Duration {
	b.Helper()
	var d time.Duration
	harness.Eventually(b, 2*time.Minute, func() (bool, string) {
		var tasks []api.Task
		if err := h.JSON(&tasks, "service", "ps", svc); err != nil {
			return false, err.Error()
		}
		for _, t := range tasks {
			if t.DesiredState == api.TaskRunning && t.State == api.TaskRunning && !t.StartedAt.IsZero() {
				d = t.StartedAt.Sub(t.CreatedAt)
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d tasks, none running", len(tasks))
	}, "%s running", svc)
	return d
}

// BenchmarkSecretsTaskStart: three voters; the task runs on a node that
// is not the leader, so its secret comes over the cluster port. Plain and
// secret services alternate so that load drifts hit both alike.
func BenchmarkSecretsTaskStart(b *testing.B) {
	c, _ := formVoters(b, 3, 3)
	h1 := c.Host(1)
	h1.MustCLI(b, "image", "import", busyboxTar(b), "bb:1")
	h1.MustCLI(b, "secret", "create", "bench_pw", writeTemp(b, "pw", []byte("bench-secret")))
	h1.MustCLI(b, "config", "create", "bench_conf", writeTemp(b, "conf", []byte("x=1\n")))
	leader := c.Leader(b, electionTimeout)
	var target *harness.Host
	for _, h := range c.Hosts() {
		if h != leader {
			target = h
		}
	}
	con := "node.id==" + target.NodeID(b)
	var plain, withFiles []time.Duration
	for i := 0; i < runs(b); i++ {
		for _, secret := range []bool{false, true} {
			name := fmt.Sprintf("plain%d", i)
			args := []string{"service", "create", "-d", "--name", name, "--constraint", con}
			if secret {
				name = fmt.Sprintf("files%d", i)
				args = []string{"service", "create", "-d", "--name", name, "--constraint", con,
					"--secret", "bench_pw", "--config", "source=bench_conf,target=/etc/bench.conf"}
			}
			h1.MustCLI(b, append(args, "bb:1", "sleep", "100000")...)
			d := taskStartTime(b, h1, name)
			if secret {
				withFiles = append(withFiles, d)
			} else {
				plain = append(plain, d)
			}
			h1.MustCLI(b, "service", "rm", name)
		}
	}
	reportDurations(b, "task-start-plain", plain)
	reportDurations(b, "task-start-files", withFiles)
	ratio := float64(median(withFiles)) / float64(median(plain))
	b.ReportMetric(ratio, "x-plain")
	fmt.Printf("%-22s %5d %11s\n", "task-start-ratio", len(plain), fmt.Sprintf("%.2fx", ratio))
}
