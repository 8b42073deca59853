package scheduler_test

import (
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/scheduler/servicespec"
	"github.com/shoal-org/shoal/node/scheduler/simcluster"
)

// rollFailing steps the cluster like roll, but every running task that
// bad selects ends with exit code 7 after it ran for `after`; when nothing
// moves the clock advances by 250ms. It returns once the service's update
// status is one of until and nothing moves, or fails the test.
func rollFailing(t *testing.T, c *simcluster.Cluster, id string, bad func(*api.Task) bool, after time.Duration, until ...string) *api.UpdateStatus {
	t.Helper()
	for i := 0; i < 2000; i++ {
		p := step(t, c)
		moved := c.Report()
		for _, tk := range c.Tasks {
			if tk.State == api.TaskRunning && bad(tk) && c.Now.Sub(tk.StartedAt) >= after {
				c.Finish(tk.ID, 7)
				moved++
			}
		}
		if !p.Empty() || moved > 0 {
			continue
		}
		st := c.Services[id].UpdateStatus
		for _, u := range until {
			if st != nil && st.State == u && (p.NextWake.IsZero() || u != api.UpdateRollbackStarted) {
				return st
			}
		}
		c.Now = c.Now.Add(250 * time.Millisecond)
	}
	t.Fatalf("update status %+v, want one of %v", c.Services[id].UpdateStatus, until)
	return nil
}

// The repro of issue 14 item 5: tasks that die a second after starting
// must count as failures although every slot was replaced before the first
// of them died.
func TestUpdateMonitorLateFailureRollsBack(t *testing.T) {
	c := cluster(t, "n1", "n2", "n3")
	sp := testSpec("web", 6)
	sp.Command = []string{"httpd"}
	sp.UpdateConfig.Parallelism = 2
	sp.UpdateConfig.Monitor = 3 * time.Second
	sp.UpdateConfig.FailureAction = api.FailureRollback
	s := c.CreateService(sp)
	converge(t, c)
	badCmd := []string{"sh", "-c", "sleep 1; exit 7"}
	c.UpdateService(s.ID, func(sp *api.ServiceSpec) { sp.Command = badCmd })
	bad := func(tk *api.Task) bool { return len(tk.Spec.Command) == 3 }
	st := rollFailing(t, c, s.ID, bad, time.Second, api.UpdateRollbackCompleted, api.UpdateCompleted, api.UpdatePaused)
	if st.State != api.UpdateRollbackCompleted || !strings.Contains(st.Message, "update rolled back: task web.") ||
		!strings.Contains(st.Message, "failed 1s after it started") {
		t.Fatalf("status %+v, want rollback_completed naming the failed task", st)
	}
	got := c.Services[s.ID]
	if len(got.Spec.Command) != 1 || got.PreviousSpec == nil || len(got.PreviousSpec.Command) != 3 {
		t.Fatalf("spec %v previous %+v", got.Spec.Command, got.PreviousSpec)
	}
	for _, tk := range c.Active(s.ID) {
		if tk.State != api.TaskRunning || len(tk.Spec.Command) != 1 {
			t.Fatalf("task %s %s runs %v after the rollback", tk.Name, tk.State, tk.Spec.Command)
		}
	}
	checkSlots(t, c, s.ID)
}

// With Docker's defaults (parallelism 1, monitor 5s, pause) a command that
// fails after 2s pauses the update.
func TestUpdateMonitorLateFailurePauses(t *testing.T) {
	c := cluster(t, "n1", "n2", "n3")
	sp := servicespec.Defaults(api.ServiceSpec{Name: "web", Image: "img:1", Replicas: 6, Command: []string{"httpd"}})
	s := c.CreateService(sp)
	converge(t, c)
	c.UpdateService(s.ID, func(sp *api.ServiceSpec) { sp.Command = []string{"sh", "-c", "sleep 2; exit 7"} })
	bad := func(tk *api.Task) bool { return len(tk.Spec.Command) == 3 }
	st := rollFailing(t, c, s.ID, bad, 2*time.Second, api.UpdatePaused, api.UpdateCompleted)
	if st.State != api.UpdatePaused || !strings.Contains(st.Message, "update paused: task web.") {
		t.Fatalf("status %+v, want paused naming the failed task", st)
	}
	if got := c.Services[s.ID]; len(got.Spec.Command) != 3 {
		t.Fatalf("a paused update keeps its spec: %v", got.Spec.Command)
	}
}

// `--update-monitor 0` (api.ExplicitZero) watches no task: the update
// completes once the new tasks run, and a task that dies a second later
// does not pause it; the default (a spec sent with 0) still watches 5s.
func TestUpdateExplicitZero(t *testing.T) {
	for _, tt := range []struct {
		name    string
		monitor time.Duration
		want    string
		atLeast time.Duration
	}{
		{"none", api.ExplicitZero, api.UpdateCompleted, 0},
		{"default", 0, api.UpdatePaused, time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := cluster(t, "n1", "n2")
			sp := servicespec.Defaults(api.ServiceSpec{Name: "web", Image: "img:1", Replicas: 4, Command: []string{"httpd"},
				UpdateConfig: api.UpdateConfig{Parallelism: 2, Monitor: tt.monitor}})
			s := c.CreateService(sp)
			converge(t, c)
			start := c.Now
			c.UpdateService(s.ID, func(sp *api.ServiceSpec) { sp.Command = []string{"sh", "-c", "sleep 1; exit 7"} })
			bad := func(tk *api.Task) bool { return len(tk.Spec.Command) == 3 }
			st := rollFailing(t, c, s.ID, bad, time.Second, api.UpdateCompleted, api.UpdatePaused)
			if st.State != tt.want || c.Now.Sub(start) < tt.atLeast {
				t.Fatalf("status %+v after %s, want %s", st, c.Now.Sub(start), tt.want)
			}
		})
	}
}

// A task that fails only after its monitor period does not stop the
// update: it completes once every task passed its window.
func TestUpdateMonitorFailureAfterWindowCompletes(t *testing.T) {
	c := cluster(t, "n1", "n2")
	sp := testSpec("web", 4)
	sp.UpdateConfig.Parallelism = 2
	sp.UpdateConfig.Monitor = 2 * time.Second
	sp.UpdateConfig.FailureAction = api.FailureRollback
	s := c.CreateService(sp)
	converge(t, c)
	c.UpdateService(s.ID, func(sp *api.ServiceSpec) { sp.Image = "img:2" })
	// Nothing fails: the update completes only once the monitor window of
	// the last started task has passed.
	start := c.Now
	st := rollFailing(t, c, s.ID, func(*api.Task) bool { return false }, 0, api.UpdateCompleted, api.UpdateRollbackStarted)
	if st.State != api.UpdateCompleted || c.Now.Sub(start) < 2*time.Second {
		t.Fatalf("status %+v after %s, want completed after the 2s monitor", st, c.Now.Sub(start))
	}
	// Failing 3s after start, past the 2s window: not the update's fault.
	c.UpdateService(s.ID, func(sp *api.ServiceSpec) { sp.Image = "img:3" })
	st = rollFailing(t, c, s.ID, func(tk *api.Task) bool { return tk.Image == "img:3" }, 3*time.Second,
		api.UpdateCompleted, api.UpdateRollbackCompleted)
	if st.State != api.UpdateCompleted {
		t.Fatalf("status %+v, want completed", st)
	}
}

// A start-first update stops the old task only once its replacement is
// healthy, and the next batch waits for it too.
func TestStartFirstWaitsForHealthy(t *testing.T) {
	c := cluster(t, "n1", "n2")
	sp := testSpec("web", 2)
	sp.UpdateConfig.Order = api.OrderStartFirst
	s := c.CreateService(sp)
	converge(t, c)
	c.SlowHealth["img:2"] = true
	c.UpdateService(s.ID, func(sp *api.ServiceSpec) { sp.Image = "img:2" })
	p := step(t, c)
	if len(p.Create) != 1 {
		t.Fatalf("first batch: %s", simcluster.Summarize(p))
	}
	c.Report() // running, health starting
	p = step(t, c)
	if !p.Empty() {
		t.Fatalf("planned while the new task is not healthy yet: %s", simcluster.Summarize(p))
	}
	c.Report() // healthy
	p = step(t, c)
	stopped, created := 0, len(p.Create)
	for _, tk := range p.Update {
		if tk.DesiredState == api.TaskShutdown {
			stopped++
		}
	}
	if stopped != 1 || created != 1 {
		t.Fatalf("once healthy: want the old task stopped and the next slot started: %s", simcluster.Summarize(p))
	}
	roll(t, c, func(string) {})
	if im := images(c, s.ID); im["img:2"] != 2 {
		t.Fatalf("images %v", im)
	}
	checkSlots(t, c, s.ID)
}
