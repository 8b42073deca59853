package test

// End-to-end test of the task lists a Swarm user types every day: `stack
// ps`, `node ps`, `node ls --filter`, and `stop` of a task's container by
// the task's name, on a real 2-node cluster.

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

// psCompose is a stack of 2 services; web has one task per node.
const psCompose = `services:
  web:
    image: bb:1
    command: ["sleep", "3600"]
    stop_grace_period: 1s
    deploy:
      replicas: 2
      placement:
        max_replicas_per_node: 1
  db:
    image: bb:1
    command: ["sleep", "3600"]
    stop_grace_period: 1s
`

// taskIDs returns the sorted IDs of tasks.
func taskIDs(tasks []api.Task) []string {
	ids := make([]string, 0, len(tasks))
	for _, tk := range tasks {
		ids = append(ids, tk.ID)
	}
	slices.Sort(ids)
	return ids
}

func TestCLIStackNodePs(t *testing.T) {
	c, _ := svcCluster(t, 2)
	h1, h2 := c.Host(1), c.Host(2)
	file := filepath.Join(t.TempDir(), "compose.yml")
	if err := os.WriteFile(file, []byte(psCompose), 0o644); err != nil {
		t.Fatal(err)
	}
	h1.MustCLI(t, "stack", "deploy", "-c", file, "shop")
	waitSlots(t, h1, "shop_web", 2, "bb:1", 90*time.Second)
	waitSlots(t, h1, "shop_db", 1, "bb:1", 90*time.Second)

	// 1. stack ps lists every task of both services, as service ps does.
	var stackTasks []api.Task
	if err := h2.JSON(&stackTasks, "stack", "ps", "shop"); err != nil {
		t.Fatalf("stack ps: %v", err)
	}
	want := taskIDs(append(tasksOf(t, h2, "shop_web"), tasksOf(t, h2, "shop_db")...))
	if got := taskIDs(stackTasks); !slices.Equal(got, want) {
		t.Errorf("stack ps shop: %v, want the tasks of shop_web and shop_db %v", got, want)
	}
	out, _, err := h1.CLI("stack", "ps", "shop", "--filter", "desired-state=running", "-q", "--no-trunc")
	if err != nil {
		t.Fatalf("stack ps -q: %v", err)
	}
	running := map[string]api.Task{} // running tasks of the stack by ID
	for _, tk := range stackTasks {
		if tk.DesiredState == api.TaskRunning {
			running[tk.ID] = tk
		}
	}
	if got := strings.Fields(out); len(got) != 3 || !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(maps.Keys(running))) {
		t.Errorf("stack ps --filter desired-state=running -q: %q, want the 3 running tasks %v", got, slices.Sorted(maps.Keys(running)))
	}
	_, _, err = h1.CLI("stack", "ps", "nosuch")
	mustFail(t, err, "stack ps of an unknown stack", "nothing found in stack: nosuch")

	// 2. node ps of each node lists the stack's tasks there: by default
	// the node the CLI talks to, else by hostname.
	ids := nodeIDs(t, h1, h2)
	onNode := map[string]int{}
	for i, h := range []*harness.Host{h1, h2} {
		var here []api.Task
		// h1 lists its own tasks by default and h2's by hostname.
		args := []string{"node", "ps", "--filter", "desired-state=running"}
		if h == h2 {
			args = append(args, h2.NS)
		}
		if err := h1.JSON(&here, args...); err != nil {
			t.Fatalf("%v on h1: %v", args, err)
		}
		var wantHere []string
		for id, tk := range running {
			if tk.NodeID == ids[i] {
				wantHere = append(wantHere, id)
			}
		}
		slices.Sort(wantHere)
		var got []string
		for _, tk := range here {
			if tk.NodeID != ids[i] {
				t.Errorf("node ps %s lists task %s of node %s", h.Name, tk.Name, tk.NodeID)
			}
			if _, ok := running[tk.ID]; ok {
				got = append(got, tk.ID)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, wantHere) {
			t.Errorf("node ps on %s: stack tasks %v, want %v", h.Name, got, wantHere)
		}
		onNode[h.Name] = len(got)
	}
	if onNode["h1"]+onNode["h2"] != 3 || onNode["h1"] == 0 || onNode["h2"] == 0 {
		t.Errorf("running stack tasks per node %v: want 3 over both nodes", onNode)
	}

	// 3. node ls --filter role=manager lists the managers, voters among them.
	nodes, err := h1.Nodes()
	if err != nil {
		t.Fatal(err)
	}
	var managers []string
	for _, n := range nodes {
		if n.Role == api.RoleManager || n.Role == "" {
			managers = append(managers, n.ID)
		} else if n.Voter {
			t.Errorf("voter %s has role %q", n.Hostname, n.Role)
		}
	}
	slices.Sort(managers)
	out, _, err = h2.CLI("node", "ls", "--filter", "role=manager", "-q")
	if got := slices.Sorted(slices.Values(strings.Fields(out))); err != nil || !slices.Equal(got, managers) || len(got) == 0 {
		t.Errorf("node ls --filter role=manager: %q %v, want %v", got, err, managers)
	}
	out, _, err = h2.CLI("node", "ls", "--filter", "name="+h2.NS, "-q")
	if err != nil || strings.TrimSpace(out) != ids[1] {
		t.Errorf("node ls --filter name=%s: %q %v, want %s", h2.NS, out, err, ids[1])
	}
	_, _, err = h1.CLI("node", "ls", "--filter", "colour=red")
	mustFail(t, err, "node ls with a bad filter key", "want one of id, name, role, label, node.label")

	// 4. stop by task name on the node that runs it: the cluster replaces
	// the task.
	var web1 api.Task
	for _, tk := range running {
		if tk.Name == "shop_web.1" {
			web1 = tk
		}
	}
	host := h1
	if web1.NodeID == ids[1] {
		host = h2
	}
	// On the node that does not run it, the error says where it runs.
	other := h2
	if host == h2 {
		other = h1
	}
	_, _, err = other.CLI("stop", "shop_web.1")
	mustFail(t, err, "stop shop_web.1 on the node without it", "no such container: shop_web.1 (task shop_web.1 runs on node "+host.NS)
	out, errOut, err := host.CLI("stop", "shop_web.1")
	if err != nil || out != "shop_web.1\n" {
		t.Fatalf("stop shop_web.1 on %s: %q %q %v", host.Name, out, errOut, err)
	}
	harness.Eventually(t, 90*time.Second, func() (bool, string) {
		var newer []string
		for _, tk := range tasksOf(t, h1, "shop_web") {
			if tk.Slot == 1 && tk.ID != web1.ID && tk.DesiredState == api.TaskRunning && tk.State == api.TaskRunning {
				newer = append(newer, tk.ID)
			}
		}
		return len(newer) == 1, fmt.Sprintf("new running tasks of slot 1: %v", newer)
	}, "shop_web.1 replaced after stop")
	for _, tk := range tasksOf(t, h1, "shop_web") {
		if tk.ID == web1.ID && tk.DesiredState == api.TaskRunning {
			t.Errorf("stopped task %s still desired running (%s)", tk.ID, tk.State)
		}
	}
}
