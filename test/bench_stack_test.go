package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

// stackBenchServices is the size of the compose file BenchmarkStackDeploy20
// deploys.
const stackBenchServices = 20

// benchStackCompose writes a compose file of n services (busybox sleepers, a
// few with two replicas, an environment and a label each) and returns its
// path and the number of tasks it asks for.
func benchStackCompose(b *testing.B, n int) (string, int) {
	b.Helper()
	var sb strings.Builder
	sb.WriteString("services:\n")
	tasks := 0
	for i := 0; i < n; i++ {
		replicas := 1
		if i%5 == 0 {
			replicas = 2
		}
		tasks += replicas
		fmt.Fprintf(&sb, "  svc%02d:\n    image: bb:1\n    command: [\"sleep\", \"100000\"]\n    environment:\n      INDEX: \"%d\"\n    labels:\n      tier: bench\n    deploy:\n      replicas: %d\n", i, i, replicas)
	}
	p := filepath.Join(b.TempDir(), "compose.yml")
	if err := os.WriteFile(p, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	return p, tasks
}

// BenchmarkStackDeploy20: three nodes, `stack deploy` of a 20-service
// compose file (24 tasks; the image is on one node, the others fetch it
// from it the first time); time from the command until every service
// runs all its replicas, as `service ls` reports them.
func BenchmarkStackDeploy20(b *testing.B) {
	c := harness.New(b, 3)
	c.Form(b)
	h := c.Host(1)
	h.MustCLI(b, "image", "import", busyboxTar(b), "bb:1")
	file, tasks := benchStackCompose(b, stackBenchServices)
	var samples []time.Duration
	for i := 0; i < runs(b); i++ {
		stack := fmt.Sprintf("bench%d", i)
		start := time.Now()
		h.MustCLI(b, "stack", "deploy", "-c", file, stack)
		harness.Eventually(b, 5*time.Minute, func() (bool, string) {
			var svcs []api.Service
			if err := h.JSON(&svcs, "service", "ls"); err != nil {
				return false, err.Error()
			}
			running, ready := 0, 0
			for _, s := range svcs {
				if strings.HasPrefix(s.Name, stack+"_") {
					running += s.Running
					if s.Running == int(s.Replicas) {
						ready++
					}
				}
			}
			return ready == stackBenchServices && running == tasks, fmt.Sprintf("%d of %d services, %d of %d tasks running", ready, stackBenchServices, running, tasks)
		}, "stack %s running", stack)
		samples = append(samples, time.Since(start))
		h.MustCLI(b, "stack", "rm", stack)
		harness.Eventually(b, 2*time.Minute, func() (bool, string) {
			n := 0
			for _, hh := range c.Hosts() {
				n += containersOnB(b, hh)
			}
			return n == 0, fmt.Sprintf("%d containers left", n)
		}, "stack %s removed", stack)
	}
	reportDurations(b, "stack-deploy-20", samples)
}
