package test

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

// TestServiceReplicatedJob: a replicated job of 3 completions, at most 2
// at once, whose command exits 0, on 2 nodes: `service create` waits until
// the job is complete; `service ps` shows 3 complete tasks (slots 1..3,
// exit code 0) and no more ever start; no two tasks beyond the limit ran
// at once (their recorded run times); `service ls` shows docker's
// "0/0 (3/3 completed)"; `service update --force` runs it again.
func TestServiceReplicatedJob(t *testing.T) {
	harness.Context(t, 60*time.Second)
	c, _ := svcCluster(t, 2)
	h1, h2 := c.Host(1), c.Host(2)
	stdout, stderr, err := h1.CLI("service", "create", "--name", "mig", "--mode", "replicated-job", "--replicas", "3",
		"--max-concurrent", "2", "--timeout", "40s", "bb:1", "sh", "-c", "sleep 1; exit 0")
	if err != nil || !strings.Contains(stdout+stderr, "mig: job complete, 3/3 completed") {
		t.Fatalf("service create did not wait for the job: %v\n%s%s", err, stdout, stderr)
	}
	complete := func() (int, string) {
		tasks := tasksOf(t, h2, "mig")
		slots := map[int]bool{}
		n := 0
		for _, tk := range tasks {
			if tk.State == api.TaskComplete && tk.ExitCode == 0 {
				n++
				slots[tk.Slot] = true
			}
		}
		return n, fmt.Sprintf("%d tasks, %d complete in slots %v", len(tasks), n, slots)
	}
	tasks := tasksOf(t, h2, "mig")
	if n, desc := complete(); n != 3 || len(tasks) != 3 {
		t.Fatalf("after the job: %s, want exactly 3 complete tasks", desc)
	}
	// At most 2 at once: sort the runs' starts and ends and sweep.
	type edge struct {
		at    time.Time
		delta int
	}
	var edges []edge
	for _, tk := range tasks {
		if tk.StartedAt.IsZero() || !tk.UpdatedAt.After(tk.StartedAt) {
			t.Fatalf("task %s has no run recorded: started %v, ended %v", tk.Name, tk.StartedAt, tk.UpdatedAt)
		}
		edges = append(edges, edge{tk.StartedAt, 1}, edge{tk.UpdatedAt, -1})
	}
	sort.Slice(edges, func(i, j int) bool {
		if !edges[i].at.Equal(edges[j].at) {
			return edges[i].at.Before(edges[j].at)
		}
		return edges[i].delta < edges[j].delta
	})
	cur, most := 0, 0
	for _, e := range edges {
		cur += e.delta
		most = max(most, cur)
	}
	if most > 2 {
		t.Fatalf("%d tasks ran at once, max concurrent 2: %+v", most, tasks)
	}
	// A completed task is never run again (restart delay 5s by default:
	// a restart would show within this window).
	harness.Consistently(t, 7*time.Second, func() (bool, string) {
		tasks := tasksOf(t, h1, "mig")
		n, desc := complete()
		return len(tasks) == 3 && n == 3, desc
	}, "no task after the job completed")
	ls := h2.MustCLI(t, "service", "ls")
	if !strings.Contains(ls, "replicated-job") || !strings.Contains(ls, "0/0 (3/3 completed)") {
		t.Fatalf("service ls:\n%s", ls)
	}
	// An update runs the job again (docker's JobIteration): 3 new
	// completions, the earlier run's tasks gone.
	old := map[string]bool{}
	for _, tk := range tasks {
		old[tk.ID] = true
	}
	stdout, stderr, err = h2.CLI("service", "update", "--force", "--timeout", "30s", "mig")
	if err != nil || !strings.Contains(stdout+stderr, "mig: job complete, 3/3 completed") {
		t.Fatalf("service update did not run the job again: %v\n%s%s", err, stdout, stderr)
	}
	harness.Eventually(t, 10*time.Second, func() (bool, string) {
		tasks := tasksOf(t, h1, "mig")
		n, desc := complete()
		for _, tk := range tasks {
			if old[tk.ID] {
				return false, "a task of the first run is still listed: " + desc
			}
		}
		return len(tasks) == 3 && n == 3, desc
	}, "the second run")
}

// TestServiceGlobalJob: a global job whose command exits 0 on 2 nodes:
// `service create` waits until it is complete; each node gets exactly one
// task, complete with exit code 0, and none is ever run again; `service
// ls` shows docker's "0/0 (2/2 completed)". (A node that joins later and
// gets its own task is covered by the scheduler's TestGlobalJob only.)
func TestServiceGlobalJob(t *testing.T) {
	harness.Context(t, 40*time.Second)
	c, _ := svcCluster(t, 2)
	h1, h2 := c.Host(1), c.Host(2)
	stdout, stderr, err := h1.CLI("service", "create", "--name", "once", "--mode", "global-job",
		"--timeout", "20s", "bb:1", "sh", "-c", "exit 0")
	if err != nil || !strings.Contains(stdout+stderr, "once: job complete, 2/2 completed") {
		t.Fatalf("service create did not wait for the job: %v\n%s%s", err, stdout, stderr)
	}
	// perNode: each node's tasks, and how many of them are complete
	// with exit code 0.
	perNode := func(h *harness.Host) (map[string]int, int, string) {
		tasks := tasksOf(t, h, "once")
		per := map[string]int{}
		done := 0
		for _, tk := range tasks {
			per[tk.NodeID]++
			if tk.State == api.TaskComplete && tk.ExitCode == 0 {
				done++
			}
		}
		return per, done, fmt.Sprintf("%d tasks, %d complete, per node %v", len(tasks), done, per)
	}
	onePerNode := func(h *harness.Host, nodes int) (bool, string) {
		per, done, desc := perNode(h)
		if len(per) != nodes || done != nodes {
			return false, desc
		}
		for _, k := range per {
			if k != 1 {
				return false, desc
			}
		}
		return true, desc
	}
	if ok, desc := onePerNode(h2, 2); !ok {
		t.Fatalf("after the job: %s, want one complete task on each of 2 nodes", desc)
	}
	// A completed task is never run again (restart delay 5s by default:
	// a restart would show within this window).
	harness.Consistently(t, 6*time.Second, func() (bool, string) { return onePerNode(h1, 2) },
		"no task after the job completed")
	ls := h2.MustCLI(t, "service", "ls")
	if !strings.Contains(ls, "global-job") || !strings.Contains(ls, "0/0 (2/2 completed)") {
		t.Fatalf("service ls:\n%s", ls)
	}
}

// TestServiceGlobalJobJoin: a node that joins after a global job completed
// runs the job once too (docker's documented behaviour), and the job's
// count grows to 3/3 completed.
func TestServiceGlobalJobJoin(t *testing.T) {
	harness.Context(t, 90*time.Second)
	c, _ := svcCluster(t, 2)
	h1 := c.Host(1)
	stdout, stderr, err := h1.CLI("service", "create", "--name", "once", "--mode", "global-job",
		"--timeout", "20s", "bb:1", "sh", "-c", "exit 0")
	if err != nil || !strings.Contains(stdout+stderr, "once: job complete, 2/2 completed") {
		t.Fatalf("service create did not wait for the job: %v\n%s%s", err, stdout, stderr)
	}
	h3 := c.AddHost()
	h3.MustStart(t)
	if err := h3.Join(h1.Token(t), h1); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 45*time.Second, func() (bool, string) {
		per := map[string]int{}
		done := 0
		tasks := tasksOf(t, h1, "once")
		for _, tk := range tasks {
			per[tk.NodeID]++
			if tk.State == api.TaskComplete && tk.ExitCode == 0 {
				done++
			}
		}
		ps, _, _ := h1.CLI("service", "ps", "once")
		return len(per) == 3 && done == 3, fmt.Sprintf("%d tasks, %d complete, per node %v\n%s", len(tasks), done, per, ps)
	}, "one complete task on each of 3 nodes after the join")
	harness.Eventually(t, 10*time.Second, func() (bool, string) {
		ls, _, _ := h1.CLI("service", "ls")
		return strings.Contains(ls, "0/0 (3/3 completed)"), ls
	}, "service ls counts the joined node's completion")
}
