package scheduler_test

import (
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/scheduler/jobs"
	"github.com/shoal-org/shoal/node/scheduler/servicespec"
	"github.com/shoal-org/shoal/node/scheduler/simcluster"
)

// jobCluster is a cluster of nodes that know jobs (servicespec.JobLevel).
func jobCluster(t *testing.T, nodes ...string) *simcluster.Cluster {
	c := cluster(t, nodes...)
	c.Levels = map[string]int{}
	for _, n := range nodes {
		c.Levels[n] = servicespec.JobLevel
	}
	return c
}

func jobSpec(name, mode string, completions, maxConcurrent uint64) api.ServiceSpec {
	s := servicespec.Defaults(api.ServiceSpec{Name: name, Image: "img:1", Mode: mode, Replicas: completions, MaxConcurrent: maxConcurrent})
	s.RestartPolicy.Delay = time.Second
	return s
}

// runJob drives the cluster: plan, report, and end every running task of
// svc with exit(task, its attempt in the slot), until nothing moves. It
// returns the most tasks of svc that ran at once.
func runJob(t *testing.T, c *simcluster.Cluster, svc string, exit func(*api.Task, int) int) int {
	t.Helper()
	attempts := map[string]int{} // slot key → runs ended
	most := 0
	for i := 0; i < 300; i++ {
		p := step(t, c)
		moved := c.Report()
		var running []*api.Task
		for _, tk := range c.Tasks {
			// A node that is down reports nothing: its tasks do not end.
			if n := c.Nodes[tk.NodeID]; tk.ServiceID == svc && tk.State == api.TaskRunning && n != nil && n.Status == api.NodeReady {
				running = append(running, tk)
			}
		}
		most = max(most, len(running))
		sort.Slice(running, func(i, j int) bool { return running[i].ID < running[j].ID })
		for _, tk := range running {
			key := tk.Name
			c.Finish(tk.ID, exit(tk, attempts[key]))
			attempts[key]++
			moved++
		}
		if p.Empty() && moved == 0 {
			if p.NextWake.IsZero() {
				return most
			}
			c.Now = p.NextWake
		}
		c.Now = c.Now.Add(100 * time.Millisecond)
	}
	t.Fatal("the job did not settle in 300 steps")
	return 0
}

// jobTasks counts svc's tasks by state.
func jobTasks(c *simcluster.Cluster, svc string) map[string]int {
	out := map[string]int{}
	for _, tk := range c.Tasks {
		if tk.ServiceID == svc {
			out[tk.State]++
		}
	}
	return out
}

func exitOK(*api.Task, int) int { return 0 }

// finishedDesiredComplete fails t unless every task of svc that completed
// (exit 0) is stored desired complete, as docker shows a finished job
// task.
func finishedDesiredComplete(t *testing.T, c *simcluster.Cluster, svc string) {
	t.Helper()
	for _, tk := range c.Tasks {
		if tk.ServiceID != svc {
			continue
		}
		if tk.State == api.TaskComplete && tk.ExitCode == 0 && tk.DesiredState != api.TaskComplete {
			t.Errorf("task %s: state %s exit %d, desired %s", tk.Name, tk.State, tk.ExitCode, tk.DesiredState)
		}
	}
}

// TestReplicatedJob: a replicated job runs until Replicas tasks have
// completed, at most MaxConcurrent at once (0: all), retries a failed task
// per the restart policy (condition any counts as on-failure: a completed
// task is never restarted) and starts no task once done.
func TestReplicatedJob(t *testing.T) {
	for _, tc := range []struct {
		name        string
		completions uint64
		concurrent  uint64
		restart     string // "" = the job default (on-failure)
		maxAttempts int
		exit        func(*api.Task, int) int
		wantMost    int
		want        map[string]int // tasks by state at the end
	}{
		{"3 completions, 2 at once", 3, 2, "", 0, exitOK, 2, map[string]int{api.TaskComplete: 3}},
		{"max concurrent defaults to replicas", 4, 0, "", 0, exitOK, 4, map[string]int{api.TaskComplete: 4}},
		{"max concurrent above replicas", 2, 5, "", 0, exitOK, 2, map[string]int{api.TaskComplete: 2}},
		{"one at a time", 3, 1, "", 0, exitOK, 1, map[string]int{api.TaskComplete: 3}},
		{"failure retried", 2, 2, "", 0, func(tk *api.Task, n int) int {
			if tk.Slot == 1 && n == 0 {
				return 3
			}
			return 0
		}, 2, map[string]int{api.TaskComplete: 2, api.TaskFailed: 1}},
		{"condition any: success not restarted", 2, 1, api.RestartAny, 0, exitOK, 1, map[string]int{api.TaskComplete: 2}},
		{"condition none: failure not retried", 2, 2, api.RestartNone, 0, func(tk *api.Task, _ int) int {
			if tk.Slot == 2 {
				return 1
			}
			return 0
		}, 2, map[string]int{api.TaskComplete: 1, api.TaskFailed: 1}},
		{"max attempts", 1, 1, api.RestartOnFailure, 2, func(*api.Task, int) int { return 1 }, 1, map[string]int{api.TaskFailed: 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := jobCluster(t, "n1", "n2", "n3")
			sp := jobSpec("job", api.ModeReplicatedJob, tc.completions, tc.concurrent)
			if tc.restart != "" {
				sp.RestartPolicy.Condition = tc.restart
			}
			sp.RestartPolicy.MaxAttempts = tc.maxAttempts
			s := c.CreateService(sp)
			if most := runJob(t, c, s.ID, tc.exit); most != tc.wantMost {
				t.Errorf("%d tasks ran at once, want %d", most, tc.wantMost)
			}
			got := jobTasks(c, s.ID)
			if len(got) != len(tc.want) {
				t.Fatalf("tasks by state %v, want %v", got, tc.want)
			}
			for st, n := range tc.want {
				if got[st] != n {
					t.Fatalf("tasks by state %v, want %v", got, tc.want)
				}
			}
			finishedDesiredComplete(t, c, s.ID)
			// Done: an hour later nothing more runs.
			c.Now = c.Now.Add(time.Hour)
			if p := step(t, c); !p.Empty() {
				t.Fatalf("a finished job planned more: %s", simcluster.Summarize(p))
			}
		})
	}
}

// TestJobUpdateRunsAgain: any write of a job's service (a new version: a
// new image, --force, a scale) runs it again as docker does: the tasks of
// the earlier run go (a running one is stopped), and Replicas tasks of the
// new run complete.
func TestJobUpdateRunsAgain(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*api.ServiceSpec)
		want   int
	}{
		{"force", func(s *api.ServiceSpec) { s.ForceUpdate++ }, 2},
		{"new image", func(s *api.ServiceSpec) { s.Image = "img:2" }, 2},
		{"scale", func(s *api.ServiceSpec) { s.Replicas = 3 }, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := jobCluster(t, "n1", "n2")
			s := c.CreateService(jobSpec("mig", api.ModeReplicatedJob, 2, 1))
			runJob(t, c, s.ID, exitOK)
			// The second run is updated while its first task runs.
			s = c.UpdateService(s.ID, func(sp *api.ServiceSpec) { sp.ForceUpdate += 10 })
			step(t, c)
			c.Report()
			var running string
			for _, tk := range c.Tasks {
				if tk.State == api.TaskRunning {
					running = tk.ID
				}
			}
			if running == "" {
				t.Fatal("the second run started nothing")
			}
			s = c.UpdateService(s.ID, tc.mutate)
			p := step(t, c)
			if !strings.Contains(simcluster.Summarize(p), "update "+running+" running/shutdown") {
				t.Fatalf("the earlier run's running task was not stopped: %s", simcluster.Summarize(p))
			}
			runJob(t, c, s.ID, exitOK)
			for _, tk := range c.Tasks {
				if tk.SpecVersion != s.Version {
					t.Fatalf("task %s of an earlier run kept: %+v", tk.ID, tk)
				}
			}
			if got := jobTasks(c, s.ID); got[api.TaskComplete] != tc.want || len(got) != 1 {
				t.Fatalf("tasks by state %v, want %d complete", got, tc.want)
			}
		})
	}
}

// TestGlobalJob: a global job runs one task to completion on every
// eligible node, and on a node that joins later; a drained node gets none;
// a completed task is not run again.
func TestGlobalJob(t *testing.T) {
	c := jobCluster(t, "n1", "n2", "n3")
	c.Nodes["n3"].Availability = api.AvailabilityDrain
	s := c.CreateService(jobSpec("sweep", api.ModeGlobalJob, 0, 0))
	fails := map[string]bool{"n2": true} // n2's first run fails
	runJob(t, c, s.ID, func(tk *api.Task, _ int) int {
		if fails[tk.NodeID] {
			delete(fails, tk.NodeID)
			return 1
		}
		return 0
	})
	perNode := func() map[string]int {
		out := map[string]int{}
		for _, tk := range c.Tasks {
			if tk.State == api.TaskComplete {
				out[tk.NodeID]++
			}
		}
		return out
	}
	if got := perNode(); len(got) != 2 || got["n1"] != 1 || got["n2"] != 1 {
		t.Fatalf("completed per node %v, want one on n1 and n2", got)
	}
	c.AddNode("n4", nil)
	c.Levels["n4"] = servicespec.JobLevel
	runJob(t, c, s.ID, exitOK)
	if got := perNode(); len(got) != 3 || got["n4"] != 1 {
		t.Fatalf("completed per node %v, want n4's too", got)
	}
	if got := jobTasks(c, s.ID); got[api.TaskComplete] != 3 || got[api.TaskFailed] != 1 || len(got) != 2 {
		t.Fatalf("tasks by state %v", got)
	}
	finishedDesiredComplete(t, c, s.ID)
}

// TestJobLevel: during a rolling upgrade a job's task goes only to a node
// whose agent knows jobs; with none it waits, saying so.
func TestJobLevel(t *testing.T) {
	c := cluster(t, "n1", "n2")
	c.Levels = map[string]int{"n1": servicespec.JobLevel - 1}
	s := c.CreateService(jobSpec("job", api.ModeReplicatedJob, 1, 0))
	step(t, c)
	act := c.Active(s.ID)
	if len(act) != 1 || act[0].State != api.TaskNew || !strings.Contains(act[0].Message, "the spec's mode needs protocol level 5") {
		t.Fatalf("task on older nodes: %+v", act)
	}
	c.Levels["n2"] = servicespec.JobLevel
	runJob(t, c, s.ID, exitOK)
	var got []api.Task
	for _, tk := range c.Tasks {
		if tk.ServiceID == s.ID {
			got = append(got, *tk)
		}
	}
	if len(got) != 1 || got[0].NodeID != "n2" || got[0].State != api.TaskComplete || got[0].DesiredState != api.TaskComplete {
		t.Fatalf("after n2's upgrade: %+v", got)
	}
}

// TestJobNodeDown: a job's task on a node that goes down is run again
// elsewhere at once, as a replicated service's task is (it used to wait out
// the whole disconnect grace, 60 s by default, before the job went on).
// The original is kept for its node's return; once the slot completes on
// the replacement it is told to stop, and the job counts one completion.
func TestJobNodeDown(t *testing.T) {
	c := jobCluster(t, "n1", "n2")
	sp := jobSpec("job", api.ModeReplicatedJob, 1, 0)
	s := c.CreateService(sp)
	step(t, c)
	c.Report()
	act := c.Active(s.ID)
	if len(act) != 1 || act[0].State != api.TaskRunning {
		t.Fatalf("before: %+v", act)
	}
	first := act[0]
	c.SetNodeStatus(first.NodeID, api.NodeDown)
	p := step(t, c)
	if len(p.Create) != 1 || p.Create[0].NodeID == first.NodeID || p.Create[0].Slot != first.Slot {
		t.Fatalf("node down: want a replacement of slot %d elsewhere at once, got %s", first.Slot, simcluster.Summarize(p))
	}
	if orig := c.Tasks[first.ID]; orig.DesiredState != api.TaskRunning || orig.State != api.TaskRunning {
		t.Fatalf("the original is kept for its node's return: %+v", orig)
	}
	runJob(t, c, s.ID, exitOK)
	done := 0
	for _, tk := range c.Tasks {
		if tk.State == api.TaskComplete {
			done++
			if tk.NodeID == first.NodeID {
				t.Fatalf("completed on the down node: %+v", tk)
			}
		}
	}
	if done != 1 {
		t.Fatalf("%d completions, want 1: %v", done, jobTasks(c, s.ID))
	}
	if orig := c.Tasks[first.ID]; orig.DesiredState != api.TaskShutdown {
		t.Fatalf("the slot completed elsewhere, the original must be told to stop: %+v", orig)
	}
}

// TestJobNodeBackOriginalWins: the node comes back within the grace with
// its original still running, beside the replacement. Whichever completes
// first completes the slot; the other is stopped, and the job counts one
// completion, never two.
func TestJobNodeBackOriginalWins(t *testing.T) {
	c := jobCluster(t, "n1", "n2")
	s := c.CreateService(jobSpec("job", api.ModeReplicatedJob, 1, 0))
	step(t, c)
	c.Report()
	first := c.Active(s.ID)[0]
	c.SetNodeStatus(first.NodeID, api.NodeDown)
	p := step(t, c)
	if len(p.Create) != 1 {
		t.Fatalf("node down: %s", simcluster.Summarize(p))
	}
	c.Report()
	c.SetNodeStatus(first.NodeID, api.NodeReady)
	c.Now = c.Now.Add(5 * time.Second)
	c.Finish(first.ID, 0)
	if _, err := c.Converge(50); err != nil {
		t.Fatal(err)
	}
	var completed, running int
	for _, tk := range c.Tasks {
		switch {
		case tk.ServiceID != s.ID:
		case tk.State == api.TaskComplete:
			completed++
		case tk.DesiredState == api.TaskRunning:
			running++
		}
	}
	if completed != 1 || running != 0 {
		t.Fatalf("want the original's completion alone and nothing left running: %v", jobTasks(c, s.ID))
	}
}

// TestJobAtMostOnceNodeDown: an at-most-once job never runs a slot twice at
// once, so its task on a down node holds the slot until it is written off.
func TestJobAtMostOnceNodeDown(t *testing.T) {
	c := jobCluster(t, "n1", "n2")
	sp := jobSpec("job", api.ModeReplicatedJob, 1, 0)
	sp.AtMostOnce = true
	s := c.CreateService(sp)
	step(t, c)
	c.Report()
	first := c.Active(s.ID)[0]
	c.SetNodeStatus(first.NodeID, api.NodeDown)
	p := step(t, c)
	if len(p.Create) != 0 || p.NextWake.IsZero() {
		t.Fatalf("within the grace: %s, wake %v", simcluster.Summarize(p), p.NextWake)
	}
	c.Now = p.NextWake
	runJob(t, c, s.ID, exitOK)
	if n := jobTasks(c, s.ID)[api.TaskComplete]; n != 1 {
		t.Fatalf("%d completions, want 1: %v", n, jobTasks(c, s.ID))
	}
}

// TestJobAtMostOnceRemovedNode: an at-most-once job's task orphaned with
// its removed node (node rm --force of a live node) holds its slot until
// the node's fence has surely stopped it; the job then runs once more.
func TestJobAtMostOnceRemovedNode(t *testing.T) {
	c := jobCluster(t, "n1", "n2")
	sp := jobSpec("job", api.ModeReplicatedJob, 1, 0)
	sp.AtMostOnce = true
	s := c.CreateService(sp)
	step(t, c)
	c.Report()
	first := c.Active(s.ID)[0]
	c.RemoveNode(first.NodeID)
	p := step(t, c)
	if len(p.Create) != 0 || p.NextWake.IsZero() {
		t.Fatalf("right after the removal: %s, wake %v", simcluster.Summarize(p), p.NextWake)
	}
	c.Now = p.NextWake
	runJob(t, c, s.ID, exitOK)
	if n := jobTasks(c, s.ID)[api.TaskComplete]; n != 1 {
		t.Fatalf("%d completions, want 1: %v", n, jobTasks(c, s.ID))
	}
}

// TestJobGiveUp: a job task that failed and will not be retried
// (--restart-condition none, or max attempts reached) is stored desired
// shutdown, as swarmkit does, once every node is at jobs.GiveUpLevel, and
// the job never runs it again; below that level (an older leader would
// read the slot as empty and run the job again) it keeps desired running.
func TestJobGiveUp(t *testing.T) {
	exitFail := func(*api.Task, int) int { return 1 }
	for _, tc := range []struct {
		name    string
		level   int
		policy  api.RestartPolicy
		runs    int
		desired string
	}{
		{"condition none", jobs.GiveUpLevel, api.RestartPolicy{Condition: api.RestartNone}, 1, api.TaskShutdown},
		{"max attempts reached", jobs.GiveUpLevel, api.RestartPolicy{Condition: api.RestartOnFailure, MaxAttempts: 2, Delay: time.Second}, 3, api.TaskShutdown},
		{"condition none, a node below the level", jobs.GiveUpLevel - 1, api.RestartPolicy{Condition: api.RestartNone}, 1, api.TaskRunning},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := jobCluster(t, "n1", "n2")
			c.Levels["n1"] = jobs.GiveUpLevel
			c.Levels["n2"] = tc.level
			sp := jobSpec("job", api.ModeReplicatedJob, 1, 0)
			sp.RestartPolicy = tc.policy
			s := c.CreateService(sp)
			runJob(t, c, s.ID, exitFail)
			// A minute on, still nothing to do.
			c.Now = c.Now.Add(time.Minute)
			if p := step(t, c); !p.Empty() {
				t.Fatalf("a minute later the plan is not empty: %s", simcluster.Summarize(p))
			}
			var ended []*api.Task
			for _, tk := range c.Tasks {
				if tk.ServiceID == s.ID {
					ended = append(ended, tk)
				}
			}
			sort.Slice(ended, func(i, j int) bool { return ended[i].ID < ended[j].ID })
			if len(ended) != tc.runs {
				t.Fatalf("%d tasks, want %d runs", len(ended), tc.runs)
			}
			for i, tk := range ended {
				want := api.TaskShutdown // retried: retired
				if i == len(ended)-1 {
					want = tc.desired
				}
				if tk.State != api.TaskFailed || tk.DesiredState != want {
					t.Errorf("task %s: %s desired %s, want failed desired %s", tk.ID, tk.State, tk.DesiredState, want)
				}
			}
		})
	}
}
