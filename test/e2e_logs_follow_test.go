package test

// `shoal service logs -f` as docker's: it keeps following the service, so
// the output of tasks that start after the command (a scale up, a rolling
// update, a replacement) shows up in the stream, and it ends once the
// service is removed.

import (
	"testing"
	"time"

	"github.com/shoal-org/shoal/test/harness"
)

func TestServiceLogsFollowNewTasks(t *testing.T) {
	c, _ := svcCluster(t, 3)
	h1, h2 := c.Host(1), c.Host(2)
	h1.MustCLI(t, "service", "create", "--name", "tick", "--replicas", "1", "bb:1",
		"sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 1; done")

	s := startLineStream(t, c, h2, "service", "logs", "-f", "tick")
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		return s.has("tick.1."), "a line of tick.1"
	}, "follow prints the running task")

	// Tasks started after the command are followed too.
	h1.MustCLI(t, "service", "scale", "tick=3")
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		if s.ended() {
			return false, "service logs -f ended"
		}
		return s.has("tick.2.") && s.has("tick.3."), "lines of tick.2 and tick.3"
	}, "follow prints the tasks of a scale up")
	if s.ended() {
		t.Fatalf("service logs -f ended while the service runs: %v", s.err)
	}

	// Removing the service ends the stream, without error.
	h1.MustCLI(t, "service", "rm", "tick")
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		return s.ended(), "service logs -f still running"
	}, "follow ends with the service")
	if s.err != nil {
		t.Fatalf("service logs -f: %v", s.err)
	}
}
