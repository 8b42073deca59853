package scheduler_test

import (
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

// TestUpdateMonitorAfterLeaderClockStepsBack: the leader that runs the
// update after its first batch has a clock behind the one that started it
// (a new leader whose clock is behind the old one's, or an NTP step back on
// the same leader). The tasks it creates are still the update's: their
// failures roll it back.
func TestUpdateMonitorAfterLeaderClockStepsBack(t *testing.T) {
	c := cluster(t, "n1", "n2", "n3")
	sp := testSpec("web", 6)
	sp.Command = []string{"httpd"}
	sp.UpdateConfig.Parallelism = 1
	sp.UpdateConfig.Monitor = 3 * time.Second
	sp.UpdateConfig.FailureAction = api.FailureRollback
	sp.UpdateConfig.MaxFailureRatio = 0
	s := c.CreateService(sp)
	converge(t, c)
	c.UpdateService(s.ID, func(sp *api.ServiceSpec) { sp.Command = []string{"sh", "-c", "exit 7"} })
	p := step(t, c)
	if len(p.ServiceUpdates) != 1 || p.ServiceUpdates[0].UpdateStatus.State != api.UpdateUpdating {
		t.Fatalf("the update did not start")
	}
	c.Now = c.Now.Add(-30 * time.Second) // the next leader's clock
	bad := func(tk *api.Task) bool { return len(tk.Spec.Command) == 3 }
	st := rollFailing(t, c, s.ID, bad, 0, api.UpdateRollbackCompleted, api.UpdateCompleted, api.UpdatePaused)
	if st.State != api.UpdateRollbackCompleted {
		t.Fatalf("status %+v, want rollback_completed: every task of the update failed", st)
	}
}

// TestUpdateMonitorNodeClockBehind: the tasks of the update run on a node
// whose clock is 10 s behind the leader's, so their start is dated 10 s in
// the leader's past. The update still watches each for Monitor after the
// leader learnt that it started: a task that dies 2 s after starting rolls
// the update back. Before, the monitor window of every task had already
// passed when the leader first saw it running: the update completed at
// once and the failures came after it.
func TestUpdateMonitorNodeClockBehind(t *testing.T) {
	c := cluster(t, "n1")
	sp := testSpec("web", 2)
	sp.Command = []string{"httpd"}
	sp.UpdateConfig.Parallelism = 2
	sp.UpdateConfig.Monitor = 3 * time.Second
	sp.UpdateConfig.FailureAction = api.FailureRollback
	s := c.CreateService(sp)
	converge(t, c)
	c.UpdateService(s.ID, func(sp *api.ServiceSpec) { sp.Command = []string{"sh", "-c", "sleep 2; exit 7"} })
	const skew = 10 * time.Second
	bad := func(tk *api.Task) bool { return len(tk.Spec.Command) == 3 }
	for i := 0; i < 400; i++ {
		p := step(t, c)
		moved := c.Report()
		for _, tk := range c.Tasks { // the node's clock dates its reports
			if tk.State == api.TaskRunning && tk.StartedAt.Equal(c.Now) {
				tk.StartedAt, tk.UpdatedAt = c.Now.Add(-skew), c.Now.Add(-skew)
			}
		}
		for _, tk := range c.Tasks {
			if tk.State == api.TaskRunning && bad(tk) && c.Now.Add(-skew).Sub(tk.StartedAt) >= 2*time.Second {
				c.Finish(tk.ID, 7)
				tk.UpdatedAt = c.Now.Add(-skew)
				moved++
			}
		}
		st := c.Services[s.ID].UpdateStatus
		if st != nil && (st.State == api.UpdateRollbackStarted || st.State == api.UpdateRollbackCompleted) {
			return
		}
		if st != nil && st.State == api.UpdateCompleted {
			t.Fatalf("the update completed although its tasks die 2 s after they start: %+v", st)
		}
		if p.Empty() && moved == 0 {
			c.Now = c.Now.Add(250 * time.Millisecond)
		}
	}
	t.Fatalf("update status %+v", c.Services[s.ID].UpdateStatus)
}
