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
