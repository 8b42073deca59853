package test

// End-to-end tests of services: real agents in network namespaces, real
// containers under runc, driven only through the CLI as DESIGN.md states.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/image/imagetest"
	"github.com/shoal-org/shoal/test/harness"
)

// svcCluster forms an n-node cluster and imports the busybox image as bb:1
// on the first host only (others fetch it from a peer when they need it).
func svcCluster(t *testing.T, n int) (*harness.Cluster, string) {
	t.Helper()
	c := harness.New(t, n)
	c.Form(t)
	tar := busyboxTar(t)
	c.Host(1).MustCLI(t, "image", "import", tar, "bb:1")
	return c, tar
}

// busyboxTar writes the busybox test rootfs as a tarball.
func busyboxTar(t testing.TB) string {
	t.Helper()
	return imagetest.BusyboxRootfsTar(t, t.TempDir())
}

// svcImportV2 imports a second version of the image: the same rootfs with
// one more file, hence a different layer and image ID.
func svcImportV2(t testing.TB, h *harness.Host, rootfs string) {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("tar", "-C", root, "-xf", rootfs).CombinedOutput(); err != nil {
		t.Fatalf("untar: %v: %s", err, out)
	}
	if err := os.WriteFile(filepath.Join(root, "version"), []byte("2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "bb2.tar")
	if out, err := exec.Command("tar", "-C", root, "-cf", p, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	h.MustCLI(t, "image", "import", p, "bb:2")
}

// hostname is the node name of a harness host (its namespace name).
func hostname(h *harness.Host) string { return h.NS }

func tasksOf(t *testing.T, h *harness.Host, svc string) []api.Task {
	t.Helper()
	var tasks []api.Task
	if err := h.JSON(&tasks, "service", "ps", svc); err != nil {
		t.Fatalf("service ps %s on %s: %v", svc, h.Name, err)
	}
	return tasks
}

// runningBySlot checks that every slot 1..n has exactly one running task
// desired running, and returns the per-node counts.
func runningBySlot(tasks []api.Task, n int, image string) (map[string]int, string) {
	perSlot := map[int]int{}
	perNode := map[string]int{}
	for _, tk := range tasks {
		if tk.DesiredState == api.TaskRunning && tk.State == api.TaskRunning && (image == "" || tk.Image == image) {
			perSlot[tk.Slot]++
			perNode[tk.Node]++
		}
	}
	for s := 1; s <= n; s++ {
		if perSlot[s] != 1 {
			return nil, fmt.Sprintf("slot %d has %d running tasks (%v)", s, perSlot[s], perSlot)
		}
	}
	if len(perSlot) != n {
		return nil, fmt.Sprintf("%d slots running, want %d", len(perSlot), n)
	}
	return perNode, ""
}

func waitSlots(t *testing.T, h *harness.Host, svc string, n int, image string, timeout time.Duration) map[string]int {
	t.Helper()
	var per map[string]int
	harness.Eventually(t, timeout, func() (bool, string) {
		var msg string
		per, msg = runningBySlot(tasksOf(t, h, svc), n, image)
		return per != nil, msg
	}, "%s: %d running slots", svc, n)
	return per
}

func containersOn(t *testing.T, h *harness.Host, all bool) []api.Container {
	t.Helper()
	args := []string{"ps"}
	if all {
		args = append(args, "-a")
	}
	var cs []api.Container
	if err := h.JSON(&cs, args...); err != nil {
		t.Fatalf("ps on %s: %v", h.Name, err)
	}
	return cs
}

func TestServiceSpreadScaleRemove(t *testing.T) {
	c, _ := svcCluster(t, 4)
	h1, h2, h4 := c.Host(1), c.Host(2), c.Host(4)
	h2.MustCLI(t, "node", "update", "--availability", "drain", c.Host(4).NodeID(t))

	out := h1.MustCLI(t, "service", "create", "--name", "web", "--replicas", "6", "bb:1", "httpd", "-f", "-p", "80")
	if !strings.Contains(out, "converged") && !strings.Contains(out, "running") {
		t.Logf("create output: %s", out)
	}
	per := waitSlots(t, h1, "web", 6, "bb:1", 60*time.Second)
	for _, h := range []string{hostname(c.Host(1)), hostname(c.Host(2)), hostname(c.Host(3))} {
		if per[h] != 2 {
			t.Fatalf("spread %v, want 2 per active node", per)
		}
	}

	// Scale from a non-leader and from a (drained) non-voter.
	leader := c.Leader(t, 30*time.Second)
	var other *harness.Host
	for _, h := range c.Hosts()[:3] {
		if h != leader {
			other = h
			break
		}
	}
	other.MustCLI(t, "service", "scale", "web=9")
	waitSlots(t, h1, "web", 9, "", 60*time.Second)
	h4.MustCLI(t, "service", "scale", "web=3")
	waitSlots(t, h4, "web", 3, "", 60*time.Second)
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		n := 0
		for _, h := range c.Hosts() {
			n += len(containersOn(t, h, false))
		}
		return n == 3, fmt.Sprintf("%d containers running, want 3", n)
	}, "scale down stops containers")

	// Logs from every node, merged.
	h2.MustCLI(t, "service", "create", "-d", "--name", "talk", "--replicas", "3", "bb:1", "sh", "-c", "echo hello from $(hostname); sleep 1000")
	waitSlots(t, h2, "talk", 3, "", 60*time.Second)
	harness.Eventually(t, 20*time.Second, func() (bool, string) {
		out, _, err := h2.CLI("service", "logs", "talk")
		return err == nil && strings.Count(out, "hello from") == 3, out
	}, "service logs from 3 tasks")

	// rm leaves no container, mount or cgroup behind, on any node.
	h1.MustCLI(t, "service", "rm", "web", "talk")
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		for _, h := range c.Hosts() {
			if cs := containersOn(t, h, true); len(cs) != 0 {
				return false, fmt.Sprintf("%s still has %d containers", h.Name, len(cs))
			}
		}
		return true, ""
	}, "every container removed")
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, h := range c.Hosts() {
		if strings.Contains(string(mounts), h.DataDir+"/") {
			t.Fatalf("mounts left under %s", h.DataDir)
		}
	}
	var svcs []api.Service
	if err := h1.JSON(&svcs, "service", "ls"); err != nil || len(svcs) != 0 {
		t.Fatalf("service ls after rm: %v %v", svcs, err)
	}
}

func TestServiceHostFailureAndReturn(t *testing.T) {
	c, _ := svcCluster(t, 3)
	h1 := c.Host(1)
	// A 1s disconnect grace: the dead node's tasks are written off at once
	// (within the default 60s a returning node keeps them: e2e_calm_test.go).
	h1.MustCLI(t, "service", "create", "--name", "web", "--replicas", "6", "--disconnect-grace", "1s",
		"bb:1", "httpd", "-f", "-p", "80")
	waitSlots(t, h1, "web", 6, "", 60*time.Second)

	victim := c.Host(3)
	victimName := hostname(victim)
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		per, msg := runningBySlot(tasksOf(t, h1, "web"), 6, "")
		if per == nil {
			return false, msg
		}
		return per[victimName] == 0, fmt.Sprintf("running per node %v", per)
	}, "every replica running on the survivors")
	// Past the grace, the dead node's tasks are shut down in the state.
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		for _, tk := range tasksOf(t, h1, "web") {
			if tk.Node == victimName && tk.DesiredState == api.TaskRunning {
				return false, fmt.Sprintf("task %s on the dead node still desired running", tk.Name)
			}
		}
		return true, ""
	}, "dead node's tasks written off")

	// The host returns: its stale containers are stopped, no slot doubles.
	if err := victim.Restart(); err != nil {
		t.Fatal(err)
	}
	c.WaitReady(t, 60*time.Second, 3)
	// Stale: a container of a task written off. The spread may move new
	// tasks onto the returning node meanwhile; their containers are not.
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		wanted := map[string]bool{}
		for _, tk := range tasksOf(t, h1, "web") {
			if tk.Node == victimName && tk.DesiredState == api.TaskRunning {
				wanted[tk.ID] = true
			}
		}
		stale := 0
		for _, ct := range containersOn(t, victim, false) {
			if !wanted[ct.TaskID] {
				stale++
			}
		}
		return stale == 0, fmt.Sprintf("%d stale containers still running on %s", stale, victim.Name)
	}, "stale containers stopped")
	waitSlots(t, h1, "web", 6, "", 30*time.Second)
}

func TestServiceLeaderKilledDuringScale(t *testing.T) {
	c, _ := svcCluster(t, 3)
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		st, err := c.Host(1).Status()
		return err == nil && len(st.Voters) == 3, fmt.Sprintf("voters %v", st.Voters)
	}, "3 voters")
	leader := c.Leader(t, 30*time.Second)
	var survivor *harness.Host
	for _, h := range c.Hosts() {
		if h != leader {
			survivor = h
			break
		}
	}
	survivor.MustCLI(t, "service", "create", "--name", "web", "--replicas", "2", "bb:1", "sleep", "1000")
	waitSlots(t, survivor, "web", 2, "", 60*time.Second)
	survivor.MustCLI(t, "service", "scale", "-d", "web=12")
	if err := leader.Kill(); err != nil {
		t.Fatal(err)
	}
	waitSlots(t, survivor, "web", 12, "", 90*time.Second)
}

func TestServiceRollingUpdateAndRollback(t *testing.T) {
	c, tar := svcCluster(t, 3)
	h1, h2 := c.Host(1), c.Host(2)
	svcImportV2(t, h1, tar)
	h1.MustCLI(t, "service", "create", "--name", "web", "--replicas", "4", "bb:1", "httpd", "-f", "-p", "80")
	waitSlots(t, h1, "web", 4, "bb:1", 60*time.Second)

	h2.MustCLI(t, "service", "update", "--image", "bb:2", "--update-parallelism", "2", "--update-delay", "200ms", "web")
	waitSlots(t, h2, "web", 4, "bb:2", 60*time.Second)
	var s api.Service
	if err := h2.JSON(&s, "service", "inspect", "web"); err != nil {
		t.Fatal(err)
	}
	if s.PreviousSpec == nil || s.PreviousSpec.Image != "bb:1" {
		t.Fatalf("previous spec not kept: %+v", s.PreviousSpec)
	}

	// Manual rollback returns to bb:1.
	h2.MustCLI(t, "service", "rollback", "web")
	waitSlots(t, h1, "web", 4, "bb:1", 60*time.Second)

	// An update whose tasks exit at once rolls back by itself.
	_, _, err := h1.CLI("service", "update", "--update-failure-action", "rollback", "--update-monitor", "3s",
		"--args", "false", "web")
	t.Logf("failing update: %v", err)
	harness.Eventually(t, 90*time.Second, func() (bool, string) {
		var s api.Service
		if err := h1.JSON(&s, "service", "inspect", "web"); err != nil {
			return false, err.Error()
		}
		st := "none"
		if s.UpdateStatus != nil {
			st = s.UpdateStatus.State
		}
		return st == api.UpdateRollbackCompleted && len(s.Spec.Command) > 0 && s.Spec.Command[0] == "httpd",
			fmt.Sprintf("update status %s, command %v", st, s.Spec.Command)
	}, "automatic rollback")
	waitSlots(t, h1, "web", 4, "bb:1", 60*time.Second)
}

func TestServiceGlobalConstraintsDrainRestart(t *testing.T) {
	c, _ := svcCluster(t, 3)
	h1 := c.Host(1)
	h1.MustCLI(t, "service", "create", "--name", "agent", "--mode", "global", "bb:1", "sleep", "1000")
	countRunning := func(svc string) (int, map[string]int) {
		per := map[string]int{}
		n := 0
		for _, tk := range tasksOf(t, h1, svc) {
			if tk.DesiredState == api.TaskRunning && tk.State == api.TaskRunning {
				n++
				per[tk.Node]++
			}
		}
		return n, per
	}
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		n, per := countRunning("agent")
		return n == 3, fmt.Sprintf("%v", per)
	}, "global on 3 nodes")

	// A node that joins later gets a task too.
	h4 := c.AddHost()
	h4.MustStart(t)
	if err := h4.Join(h1.Token(t), c.Host(2)); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		n, per := countRunning("agent")
		return n == 4, fmt.Sprintf("%v", per)
	}, "global on the late node")

	// Constraints: only nodes labelled zone=a.
	h1.MustCLI(t, "node", "update", "--label-add", "zone=a", c.Host(2).NodeID(t))
	h1.MustCLI(t, "service", "create", "--name", "za", "--replicas", "3", "--constraint", "node.labels.zone==a", "bb:1", "sleep", "1000")
	per := waitSlots(t, h1, "za", 3, "", 60*time.Second)
	if len(per) != 1 || per[hostname(c.Host(2))] != 3 {
		t.Fatalf("constraint ignored: %v", per)
	}

	// Drain: the tasks move away (the constrained ones cannot: they wait).
	h1.MustCLI(t, "service", "create", "--name", "mv", "--replicas", "4", "bb:1", "sleep", "1000")
	waitSlots(t, h1, "mv", 4, "", 60*time.Second)
	drained := c.Host(3)
	h1.MustCLI(t, "node", "update", "--availability", "drain", drained.NodeID(t))
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		per, msg := runningBySlot(tasksOf(t, h1, "mv"), 4, "")
		if per == nil {
			return false, msg
		}
		return per[hostname(drained)] == 0, fmt.Sprintf("%v", per)
	}, "drained node emptied")

	// Restart policy on-failure with max attempts: the slot gives up.
	h1.MustCLI(t, "service", "create", "-d", "--name", "crash", "--replicas", "1", "--restart-condition", "on-failure",
		"--restart-max-attempts", "2", "--restart-delay", "100ms", "bb:1", "sh", "-c", "exit 3")
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		failed := 0
		for _, tk := range tasksOf(t, h1, "crash") {
			if tk.State == api.TaskFailed {
				failed++
				if tk.ExitCode != 3 {
					return false, fmt.Sprintf("exit code %d", tk.ExitCode)
				}
			}
		}
		return failed == 3, fmt.Sprintf("%d failed tasks", failed)
	}, "1 try + 2 restarts")
	// A fourth attempt would come 100 ms after the third failed: watch the
	// slot long enough that it would have shown up many times over.
	harness.Consistently(t, 2*time.Second, func() (bool, string) {
		n := 0
		for _, tk := range tasksOf(t, h1, "crash") {
			if tk.State == api.TaskFailed || !api.TaskTerminal(tk.State) {
				n++
			}
		}
		return n == 3, fmt.Sprintf("%d tasks for the slot (3 failed expected, no new attempt)", n)
	}, "restart policy stops after max attempts")
}

func TestServiceBadSpecs(t *testing.T) {
	c, _ := svcCluster(t, 1)
	h := c.Host(1)
	h.MustCLI(t, "service", "create", "-d", "--name", "web", "--publish", "8080:80", "bb:1", "sleep", "1000")
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown image", []string{"--name", "a", "nosuch:1"}, "not found"},
		{"negative replicas", []string{"--name", "b", "--replicas", "-1", "bb:1"}, "replicas"},
		{"bad constraint", []string{"--name", "c", "--constraint", "node.labels.zone~a", "bb:1"}, "constraint"},
		{"port clash", []string{"--name", "d", "--publish", "8080:81", "bb:1"}, "8080"},
		{"duplicate name", []string{"--name", "web", "bb:1"}, "web"},
		{"bad name", []string{"--name", "-x", "bb:1"}, "name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"service", "create", "-d"}, tc.args...)
			_, stderr, err := h.CLI(args...)
			if err == nil {
				t.Fatalf("%v accepted", tc.args)
			}
			if !strings.Contains(strings.ToLower(stderr), strings.ToLower(tc.want)) {
				t.Fatalf("error %q does not mention %q", stderr, tc.want)
			}
		})
	}
	var svcs []api.Service
	if err := h.JSON(&svcs, "service", "ls"); err != nil || len(svcs) != 1 {
		t.Fatalf("bad specs changed the state: %v %v", svcs, err)
	}
}
