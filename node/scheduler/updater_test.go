package scheduler_test

import (
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/scheduler/simcluster"
)

// roll steps the cluster (plan, apply, nodes report) until nothing moves and
// no wake-up is due, calling inv after every plan and every report.
func roll(t *testing.T, c *simcluster.Cluster, inv func(phase string)) {
	t.Helper()
	for i := 0; i < 500; i++ {
		p := step(t, c)
		inv("plan")
		moved := c.Report()
		inv("report")
		if p.Empty() && moved == 0 {
			if p.NextWake.IsZero() {
				return
			}
			c.Now = p.NextWake
		}
	}
	t.Fatal("update did not settle")
}

// slotsDown counts slots 1..replicas with no running task that is meant
// to run.
func slotsDown(c *simcluster.Cluster, id string) int {
	up := map[int]bool{}
	for _, tk := range c.Tasks {
		if tk.ServiceID == id && tk.DesiredState == api.TaskRunning && tk.State == api.TaskRunning {
			up[tk.Slot] = true
		}
	}
	return int(c.Services[id].Spec.Replicas) - len(up)
}

func images(c *simcluster.Cluster, id string) map[string]int {
	out := map[string]int{}
	for _, tk := range c.Active(id) {
		out[tk.Image]++
	}
	return out
}

func TestRollingUpdateStopFirst(t *testing.T) {
	for _, par := range []int{1, 2} {
		t.Run("parallelism "+string(rune('0'+par)), func(t *testing.T) {
			c := cluster(t, "n1", "n2")
			sp := testSpec("web", 5)
			sp.UpdateConfig.Parallelism = par
			s := c.CreateService(sp)
			converge(t, c)
			c.UpdateService(s.ID, func(sp *api.ServiceSpec) { sp.Image = "img:2" })
			p := step(t, c)
			if len(p.ServiceUpdates) != 1 || p.ServiceUpdates[0].UpdateStatus.State != api.UpdateUpdating {
				t.Fatalf("no update status: %s", simcluster.Summarize(p))
			}
			if len(p.Update) != par || len(p.Create) != 0 {
				t.Fatalf("first batch: %s", simcluster.Summarize(p))
			}
			maxDown := 0
			roll(t, c, func(phase string) {
				d := slotsDown(c, s.ID)
				if d > par {
					t.Fatalf("%s: %d slots down with parallelism %d", phase, d, par)
				}
				maxDown = max(maxDown, d)
			})
			if maxDown != par {
				t.Fatalf("at most %d slots updated at once, want %d", maxDown, par)
			}
			if got := images(c, s.ID); got["img:2"] != 5 || len(got) != 1 {
				t.Fatalf("images after update %v", got)
			}
			if st := c.Services[s.ID].UpdateStatus; st == nil || st.State != api.UpdateCompleted {
				t.Fatalf("status %+v", st)
			}
			checkSlots(t, c, s.ID)
		})
	}
}

func TestRollingUpdateStartFirst(t *testing.T) {
	c := cluster(t, "n1", "n2")
	sp := testSpec("web", 3)
	sp.UpdateConfig.Order = api.OrderStartFirst
	s := c.CreateService(sp)
	converge(t, c)
	c.UpdateService(s.ID, func(sp *api.ServiceSpec) { sp.Env = []string{"A=1"} })
	p := step(t, c)
	if len(p.Create) != 1 || len(p.Update) != 0 {
		t.Fatalf("start-first first step: %s", simcluster.Summarize(p))
	}
	roll(t, c, func(phase string) {
		// Every slot keeps a running container at all times.
		running := map[int]bool{}
		for _, tk := range c.Tasks {
			if tk.State == api.TaskRunning {
				running[tk.Slot] = true
			}
		}
		if len(running) != 3 {
			t.Fatalf("%s: only slots %v have a running container", phase, running)
		}
	})
	for _, tk := range c.Active(s.ID) {
		if len(tk.Spec.Env) != 1 {
			t.Fatalf("task %s not updated", tk.Name)
		}
	}
	checkSlots(t, c, s.ID)
}

func TestRollingUpdateDelay(t *testing.T) {
	c := cluster(t, "n1")
	sp := testSpec("web", 3)
	sp.UpdateConfig.Delay = 10 * time.Second
	s := c.CreateService(sp)
	converge(t, c)
	c.UpdateService(s.ID, func(sp *api.ServiceSpec) { sp.Image = "img:2" })
	roll(t, c, func(string) {})
	var created []time.Time
	for _, tk := range c.Active(s.ID) {
		created = append(created, tk.CreatedAt)
	}
	for i := 1; i < len(created); i++ {
		if gap := created[i].Sub(created[i-1]); gap < 10*time.Second {
			t.Fatalf("slot %d created %s after the previous one, want ≥ delay", i+1, gap)
		}
	}
}

func TestUpdateFailureRollsBack(t *testing.T) {
	c := cluster(t, "n1", "n2")
	sp := testSpec("web", 4)
	sp.UpdateConfig.FailureAction = api.FailureRollback
	s := c.CreateService(sp)
	converge(t, c)
	c.FailImages["img:bad"] = true
	c.UpdateService(s.ID, func(sp *api.ServiceSpec) { sp.Image = "img:bad" })
	roll(t, c, func(string) {})
	got := c.Services[s.ID]
	if got.UpdateStatus == nil || got.UpdateStatus.State != api.UpdateRollbackCompleted {
		t.Fatalf("status %+v", got.UpdateStatus)
	}
	if got.Spec.Image != "img:1" || got.PreviousSpec == nil || got.PreviousSpec.Image != "img:bad" {
		t.Fatalf("spec %s previous %+v", got.Spec.Image, got.PreviousSpec)
	}
	if im := images(c, s.ID); im["img:1"] != 4 {
		t.Fatalf("images after rollback %v", im)
	}
	bad := 0
	for _, tk := range c.Tasks {
		if tk.Image == "img:bad" {
			bad++
		}
	}
	if bad != 1 {
		t.Fatalf("%d tasks of the bad image, want 1 (parallelism 1, ratio 0)", bad)
	}
	checkSlots(t, c, s.ID)
}

func TestUpdateFailurePauses(t *testing.T) {
	c := cluster(t, "n1", "n2")
	sp := testSpec("web", 4)
	sp.RestartPolicy.MaxAttempts = 1
	s := c.CreateService(sp)
	converge(t, c)
	c.FailImages["img:bad"] = true
	c.UpdateService(s.ID, func(sp *api.ServiceSpec) { sp.Image = "img:bad" })
	roll(t, c, func(string) {})
	got := c.Services[s.ID]
	if got.UpdateStatus == nil || got.UpdateStatus.State != api.UpdatePaused || got.Spec.Image != "img:bad" {
		t.Fatalf("status %+v image %s", got.UpdateStatus, got.Spec.Image)
	}
	if n := c.RunningPerNode(s.ID); n["n1"]+n["n2"] != 3 {
		t.Fatalf("running %v, want the 3 untouched slots", n)
	}
	if im := images(c, s.ID); im["img:1"] != 3 {
		t.Fatalf("images %v", im)
	}
	// A new spec (the API clears the status) resumes: fix the image.
	c.UpdateService(s.ID, func(sp *api.ServiceSpec) { sp.Image = "img:3" })
	roll(t, c, func(string) {})
	if im := images(c, s.ID); im["img:3"] != 4 {
		t.Fatalf("images after fix %v", im)
	}
	checkSlots(t, c, s.ID)
}

func TestUpdateFailureContinues(t *testing.T) {
	c := cluster(t, "n1")
	sp := testSpec("web", 3)
	sp.UpdateConfig.FailureAction = api.FailureContinue
	sp.RestartPolicy.Condition = api.RestartNone
	s := c.CreateService(sp)
	converge(t, c)
	c.FailImages["img:bad"] = true
	c.UpdateService(s.ID, func(sp *api.ServiceSpec) { sp.Image = "img:bad" })
	roll(t, c, func(string) {})
	for _, tk := range c.Active(s.ID) {
		if tk.Image != "img:bad" || tk.State != api.TaskFailed {
			t.Fatalf("task %s %s %s", tk.Name, tk.Image, tk.State)
		}
	}
	if st := c.Services[s.ID].UpdateStatus; st == nil || st.State != api.UpdateCompleted {
		t.Fatalf("status %+v", st)
	}
}

func TestGlobalRollingUpdate(t *testing.T) {
	c := cluster(t, "n1", "n2", "n3")
	sp := testSpec("agent", 0)
	sp.Mode = api.ModeGlobal
	s := c.CreateService(sp)
	converge(t, c)
	c.UpdateService(s.ID, func(sp *api.ServiceSpec) { sp.Image = "img:2" })
	roll(t, c, func(phase string) {
		if n := len(c.RunningPerNode(s.ID)); n < 2 {
			t.Fatalf("%s: only %d nodes run the agent", phase, n)
		}
	})
	if im := images(c, s.ID); im["img:2"] != 3 {
		t.Fatalf("images %v", im)
	}
}

func TestImmaterialChangeKeepsTasks(t *testing.T) {
	c := cluster(t, "n1")
	s := c.CreateService(testSpec("web", 2))
	converge(t, c)
	before := len(c.Tasks)
	c.UpdateService(s.ID, func(sp *api.ServiceSpec) {
		sp.Ports = []api.PortConfig{{Published: 8080, Target: 80, Protocol: "tcp"}}
		sp.UpdateConfig.Parallelism = 3
	})
	p := step(t, c)
	if !p.Empty() || len(c.Tasks) != before {
		t.Fatalf("immaterial change planned %s", simcluster.Summarize(p))
	}
}
