package scheduler_test

import (
	"testing"
	"time"
)

// TestRestartDelayNodeClockAhead: a task's end is dated by its node's
// clock (the report's timestamp), which may be ahead of the leader's. The
// replacement still comes the restart delay after the leader learnt of the
// end, not the delay plus the clock difference. Before, a node whose clock
// was an hour ahead had its failed tasks replaced an hour late.
func TestRestartDelayNodeClockAhead(t *testing.T) {
	c := cluster(t, "n1")
	sp := testSpec("web", 1)
	sp.RestartPolicy.Delay = 5 * time.Second
	s := c.CreateService(sp)
	converge(t, c)
	task := c.Active(s.ID)[0]
	c.Finish(task.ID, 1)
	c.Tasks[task.ID].UpdatedAt = c.Now.Add(time.Hour) // the node's clock
	p := step(t, c)
	if len(p.Create) != 0 {
		t.Fatalf("replaced before the restart delay: %d tasks created", len(p.Create))
	}
	if max := c.Now.Add(5 * time.Second); p.NextWake.IsZero() || p.NextWake.After(max) {
		t.Fatalf("next wake %v, want by %v (the restart delay after the leader saw the end)", p.NextWake, max)
	}
	c.Now = p.NextWake
	if p := step(t, c); len(p.Create) != 1 {
		t.Fatalf("not replaced the restart delay after the end: %d tasks created", len(p.Create))
	}
}
