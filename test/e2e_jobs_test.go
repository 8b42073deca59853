package test

import (
	"fmt"
	"os"
	"path/filepath"
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
	// --replicas 0 means no completion to wait for: nothing runs (it ran
	// one task, the agent taking 0 for "unset").
	stdout, stderr, err = h1.CLI("service", "create", "--name", "none", "--mode", "replicated-job", "--replicas", "0",
		"--timeout", "20s", "bb:1", "sh", "-c", "exit 0")
	if err != nil {
		t.Fatalf("create a job of 0 completions: %v\n%s%s", err, stdout, stderr)
	}
	harness.Consistently(t, 3*time.Second, func() (bool, string) {
		tasks := tasksOf(t, h1, "none")
		return len(tasks) == 0, fmt.Sprintf("%d tasks", len(tasks))
	}, "no task for a job of 0 completions")
	if ls := h2.MustCLI(t, "service", "ls"); !strings.Contains(ls, "0/0 (0/0 completed)") {
		t.Fatalf("service ls:\n%s", ls)
	}
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
	// A finished job task is desired complete in the stored state, as
	// docker shows it (it used to stay desired running).
	harness.Eventually(t, 10*time.Second, func() (bool, string) {
		for _, tk := range tasksOf(t, h2, "once") {
			if tk.DesiredState != api.TaskComplete {
				return false, fmt.Sprintf("task %s: state %s, desired %s", tk.Name, tk.State, tk.DesiredState)
			}
		}
		return true, ""
	}, "finished tasks desired complete")
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

// TestServiceJobNodeDown: the node running a job's task dies; the job is
// run again elsewhere at once and completes well within the disconnect
// grace (60 s by default), counting one completion. Before, the task was
// kept for the grace and the job stood still for a minute.
func TestServiceJobNodeDown(t *testing.T) {
	harness.Context(t, 90*time.Second)
	c, tar := svcCluster(t, 3)
	h1 := c.Host(1)
	// Every node holds the image: the task may land on h1, the node the
	// image was imported on, and with h1 dead no other node could fetch
	// it (CI saw the replacement rejected: "no ready node holds it").
	for _, h := range c.Hosts()[1:] {
		h.MustCLI(t, "image", "import", tar, "bb:1")
	}
	h1.MustCLI(t, "service", "create", "-d", "--name", "mig", "--mode", "replicated-job", "--replicas", "1",
		"bb:1", "sh", "-c", "sleep 6; exit 0")
	var first api.Task
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		for _, tk := range tasksOf(t, h1, "mig") {
			if tk.State == api.TaskRunning {
				first = tk
				return true, ""
			}
		}
		return false, "no task running yet"
	}, "the job's task runs")
	victim := hostOf(t, c, first)
	var watcher *harness.Host
	for _, h := range c.Hosts() {
		if h != victim {
			watcher = h
			break
		}
	}
	t.Logf("job task %s runs on %s: killing it", first.Name, victim.Name)
	killed := time.Now()
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	var done api.Task
	harness.Eventually(t, 40*time.Second, func() (bool, string) {
		tasks := tasksOf(t, watcher, "mig")
		for _, tk := range tasks {
			if tk.State == api.TaskComplete && tk.ExitCode == 0 {
				done = tk
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d tasks, none complete: %+v", len(tasks), tasks)
	}, "the job completes on another node well within the disconnect grace")
	t.Logf("completed on %s %.1f s after the kill", done.Node, time.Since(killed).Seconds())
	if done.ID == first.ID || done.Node == first.Node {
		t.Fatalf("completed by the task of the dead node: %+v", done)
	}
	ls := watcher.MustCLI(t, "service", "ls")
	if !strings.Contains(ls, "(1/1 completed)") {
		t.Fatalf("service ls:\n%s", ls)
	}
	for _, tk := range tasksOf(t, watcher, "mig") {
		if tk.ID == first.ID && tk.DesiredState != api.TaskShutdown {
			t.Fatalf("the dead node's task is still meant to run after the job completed: %+v", tk)
		}
	}
}

// TestStackRedeployRunsJobAgain: deploying the same compose file again
// runs its job again, as docker's stack deploy does (it updates every
// service, and an update of a job starts a new run), while the unchanged
// replicated service beside it is left as it is.
func TestStackRedeployRunsJobAgain(t *testing.T) {
	harness.Context(t, 90*time.Second)
	c, _ := svcCluster(t, 2)
	h1, h2 := c.Host(1), c.Host(2)
	file := filepath.Join(t.TempDir(), "compose.yml")
	const compose = `services:
  mig:
    image: bb:1
    command: ["true"]
    deploy:
      mode: replicated-job
  web:
    image: bb:1
    command: ["sleep", "100000"]
`
	if err := os.WriteFile(file, []byte(compose), 0o644); err != nil {
		t.Fatal(err)
	}
	completed := func(h *harness.Host) (map[string]bool, string) {
		ids := map[string]bool{}
		tasks := tasksOf(t, h, "app_mig")
		for _, tk := range tasks {
			if tk.State == api.TaskComplete && tk.ExitCode == 0 {
				ids[tk.ID] = true
			}
		}
		return ids, fmt.Sprintf("%+v", tasks)
	}
	h1.MustCLI(t, "stack", "deploy", "-c", file, "app")
	var first map[string]bool
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		var desc string
		first, desc = completed(h1)
		return len(first) == 1, desc
	}, "the job completes once")
	webBefore := tasksOf(t, h1, "app_web")
	out, _, err := h2.CLI("stack", "deploy", "-c", file, "app")
	if err != nil || !strings.Contains(out, "Updating service app_mig") || !strings.Contains(out, "Service app_web is up to date") {
		t.Fatalf("redeploy of the same file: %v\n%s", err, out)
	}
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		ids, desc := completed(h2)
		for id := range ids {
			if !first[id] {
				return true, ""
			}
		}
		return false, desc
	}, "the job runs again and completes")
	webAfter := tasksOf(t, h1, "app_web")
	if len(webBefore) != len(webAfter) || webBefore[0].ID != webAfter[0].ID {
		t.Fatalf("the unchanged service rolled: before %+v, after %+v", webBefore, webAfter)
	}
}

// TestServiceJobGiveUp: a job task that failed and will not be retried
// (--restart-condition none) is stored desired shutdown, as docker shows
// "Shutdown  Failed"; it stayed desired running. The job never runs it
// again (well past the restart delay, 1 s here).
func TestServiceJobGiveUp(t *testing.T) {
	c, _ := svcCluster(t, 2)
	h1, h2 := c.Host(1), c.Host(2)
	h1.MustCLI(t, "service", "create", "-d", "--name", "once", "--mode", "replicated-job",
		"--restart-condition", "none", "--restart-delay", "1s", "bb:1", "sh", "-c", "exit 3")
	one := func() (bool, string) {
		tasks := tasksOf(t, h2, "once")
		if len(tasks) != 1 {
			return false, fmt.Sprintf("%d tasks: %+v", len(tasks), tasks)
		}
		tk := tasks[0]
		return tk.State == api.TaskFailed && tk.ExitCode == 3 && tk.DesiredState == api.TaskShutdown,
			fmt.Sprintf("%s: %s (exit %d), desired %s", tk.Name, tk.State, tk.ExitCode, tk.DesiredState)
	}
	harness.Eventually(t, 60*time.Second, one, "the failed task desired shutdown")
	harness.Consistently(t, 4*time.Second, one, "the job run no more")
	ps := h1.MustCLI(t, "service", "ps", "once")
	if !strings.Contains(ps, "shutdown") || !strings.Contains(ps, "failed") {
		t.Fatalf("service ps:\n%s", ps)
	}
}
