package test

// End-to-end tests of placement beyond constraints: max replicas per node
// and spread preferences over a node label, through the CLI on 3 nodes.

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

func TestPlacementMaxPerNodeAndSpread(t *testing.T) {
	c, _ := svcCluster(t, 3)
	h1, h2 := c.Host(1), c.Host(2)

	// --replicas 4 --replicas-max-per-node 1 on 3 nodes: one task on
	// each, the fourth pending with the reason in service ps.
	h1.MustCLI(t, "service", "create", "-d", "--name", "one", "--replicas", "4", "--replicas-max-per-node", "1",
		"bb:1", "sleep", "1000")
	const reason = "no suitable node (3 nodes at max replicas per node (1))"
	waitOnePerNodeOnePending(t, h2, "one", reason)
	var svc api.Service
	if err := h2.JSON(&svc, "service", "inspect", "one"); err != nil {
		t.Fatal(err)
	}
	if svc.Spec.MaxReplicasPerNode != 1 {
		t.Fatalf("service inspect: max_replicas_per_node %d, want 1", svc.Spec.MaxReplicasPerNode)
	}
	if out, _, err := h1.CLI("service", "ps", "--no-trunc", "one"); err != nil || !strings.Contains(out, "max replicas per node") {
		t.Fatalf("service ps does not say why the task is pending: %v\n%s", err, out)
	}

	// Scale to 3: 3 running, none pending.
	h1.MustCLI(t, "service", "scale", "one=3")
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		tasks := tasksOf(t, h1, "one")
		per, msg := runningBySlot(tasks, 3, "")
		if per == nil {
			return false, msg
		}
		for _, tk := range tasks {
			if tk.DesiredState == api.TaskRunning && tk.State == api.TaskNew {
				return false, "still pending: " + tk.Name
			}
		}
		return len(per) == 3, fmt.Sprintf("%v", per)
	}, "3 running, none pending")

	// Back to 4 (one pending again), then raise the limit to 2: the
	// pending task places and none of the running ones is replaced.
	running := map[string]bool{}
	for _, tk := range tasksOf(t, h1, "one") {
		if tk.DesiredState == api.TaskRunning && tk.State == api.TaskRunning {
			running[tk.ID] = true
		}
	}
	h1.MustCLI(t, "service", "scale", "-d", "one=4")
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		for _, tk := range tasksOf(t, h1, "one") {
			if tk.DesiredState == api.TaskRunning && tk.State == api.TaskNew {
				return tk.Message == reason, tk.Message
			}
		}
		return false, "no pending task"
	}, "a pending task at 4 replicas")
	h1.MustCLI(t, "service", "update", "-d", "--replicas-max-per-node", "2", "one")
	waitSlots(t, h2, "one", 4, "", 60*time.Second)
	for _, tk := range tasksOf(t, h1, "one") {
		if running[tk.ID] && tk.DesiredState != api.TaskRunning {
			t.Fatalf("raising the limit replaced task %s (%s: %s)", tk.Name, tk.State, tk.Message)
		}
	}

	// A bad limit and a bad preference are refused, naming them.
	_, _, err := h1.CLI("service", "create", "-d", "--name", "bad", "--mode", "global", "--replicas-max-per-node", "1", "bb:1")
	mustFail(t, err, "a limit on a global service", "replicas-max-per-node")
	_, _, err = h1.CLI("service", "create", "-d", "--name", "bad", "--placement-pref", "spread=node.hostname", "bb:1")
	mustFail(t, err, "a spread over a hostname", "node.labels.NAME")

	// Spread over zone: two nodes in a, one in b. 4 tasks: 2 in each zone,
	// so b's one node gets 2.
	h1.MustCLI(t, "node", "update", "--label-add", "zone=a", c.Host(1).NodeID(t))
	h1.MustCLI(t, "node", "update", "--label-add", "zone=a", c.Host(2).NodeID(t))
	h1.MustCLI(t, "node", "update", "--label-add", "zone=b", c.Host(3).NodeID(t))
	for i := 1; i <= 3; i++ {
		zone := map[int]string{1: "a", 2: "a", 3: "b"}[i]
		harness.Eventually(t, 30*time.Second, labelSeen(c.Host(i).NodeID(t), "zone", zone, c.Hosts()...), "label zone=%s", zone)
	}
	h1.MustCLI(t, "service", "create", "--name", "spread", "--replicas", "4", "--placement-pref", "spread=node.labels.zone",
		"bb:1", "sleep", "1000")
	per := waitSlots(t, h2, "spread", 4, "", 60*time.Second)
	a := per[hostname(c.Host(1))] + per[hostname(c.Host(2))]
	b := per[hostname(c.Host(3))]
	if a != 2 || b != 2 {
		t.Fatalf("spread over zone: a %d, b %d (per node %v), want 2 and 2", a, b, per)
	}
	if err := h2.JSON(&svc, "service", "inspect", "spread"); err != nil {
		t.Fatal(err)
	}
	if want := []api.PlacementPreference{{Spread: "node.labels.zone"}}; fmt.Sprint(svc.Spec.PlacementPreferences) != fmt.Sprint(want) {
		t.Fatalf("service inspect: placement_preferences %v, want %v", svc.Spec.PlacementPreferences, want)
	}
}

// TestPlacementRebalanceNewZone: 6 tasks spread over zone run 3/3 on the
// nodes of zones a and b while the node of zone c is drained; once it is
// active again rebalancing moves tasks to it, across the zones, until each
// zone runs 2, and the running count never drops below 6 on the way
// (start-first moves, one at a time by the update parallelism).
func TestPlacementRebalanceNewZone(t *testing.T) {
	c, _ := svcCluster(t, 3)
	h1 := c.Host(1)
	zones := map[int]string{1: "a", 2: "b", 3: "c"}
	for i := 1; i <= 3; i++ {
		h1.MustCLI(t, "node", "update", "--label-add", "zone="+zones[i], c.Host(i).NodeID(t))
	}
	h3 := c.Host(3).NodeID(t)
	h1.MustCLI(t, "node", "update", "--availability", "drain", h3)
	for i := 1; i <= 3; i++ {
		harness.Eventually(t, 20*time.Second, labelSeen(c.Host(i).NodeID(t), "zone", zones[i], h1), "label zone=%s", zones[i])
	}
	h1.MustCLI(t, "service", "create", "--name", "zoned", "--replicas", "6", "--update-parallelism", "1",
		"--placement-pref", "spread=node.labels.zone", "bb:1", "sleep", "100000")
	per := waitSlots(t, h1, "zoned", 6, "", 40*time.Second)
	if per[hostname(c.Host(1))] != 3 || per[hostname(c.Host(2))] != 3 {
		t.Fatalf("zones a and b before: %v, want 3 and 3", per)
	}

	stop := watchRunningFloor(harness.Context(t, time.Minute), h1, "zoned", 6)
	defer stop()

	h1.MustCLI(t, "node", "update", "--availability", "active", h3)
	harness.Eventually(t, 45*time.Second, func() (bool, string) {
		per, msg := runningBySlot(tasksOf(t, h1, "zoned"), 6, "")
		if per == nil {
			return false, msg
		}
		for _, h := range c.Hosts() {
			if per[hostname(h)] != 2 {
				return false, fmt.Sprintf("spread %v", per)
			}
		}
		return true, ""
	}, "2/2/2 over the zones")
	polls, lowest := stop()
	t.Logf("%d polls, lowest running count %d", polls, lowest)
	if lowest < 6 {
		t.Fatalf("running count dropped to %d during rebalancing", lowest)
	}
	// The tasks on zone c's node are rebalancing moves (each replaces a
	// task of zone a or b), not new placements.
	moved := 0
	for _, tk := range tasksOf(t, h1, "zoned") {
		if tk.Node == hostname(c.Host(3)) && tk.DesiredState == api.TaskRunning && tk.Replaces != "" {
			moved++
		}
	}
	if moved != 2 {
		t.Fatalf("%d tasks moved to zone c, want 2", moved)
	}
}

// TestPlacementHostModePort: a host-mode published port is a node
// resource, as in Swarm: 4 replicas on 3 nodes are 3 running on 3
// distinct nodes and 1 pending saying why (two tasks on one node were
// both told to bind the port); scaling to 3 leaves none pending.
func TestPlacementHostModePort(t *testing.T) {
	c, _ := svcCluster(t, 3)
	h1, h2 := c.Host(1), c.Host(2)

	h1.MustCLI(t, "service", "create", "-d", "--name", "hp", "--replicas", "4",
		"--publish", "mode=host,published=18095,target=80", "bb:1", "sleep", "1000")
	const reason = "no suitable node (3 nodes with host-mode port 18095/tcp already in use)"
	waitOnePerNodeOnePending(t, h2, "hp", reason)
	if out, _, err := h1.CLI("service", "ps", "--no-trunc", "hp"); err != nil || !strings.Contains(out, "host-mode port 18095/tcp already in use") {
		t.Fatalf("service ps does not say why the task is pending: %v\n%s", err, out)
	}

	h1.MustCLI(t, "service", "scale", "hp=3")
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		tasks := tasksOf(t, h1, "hp")
		per, msg := runningBySlot(tasks, 3, "")
		if per == nil {
			return false, msg
		}
		nodes := map[string]bool{}
		for _, tk := range tasks {
			if tk.DesiredState == api.TaskRunning && tk.State == api.TaskNew {
				return false, "still pending: " + tk.Name
			}
			if tk.DesiredState == api.TaskRunning && tk.State == api.TaskRunning {
				nodes[tk.Node] = true
			}
		}
		return len(per) == 3 && len(nodes) == 3, fmt.Sprintf("%v on %d nodes", per, len(nodes))
	}, "3 running on 3 nodes, none pending")
}

// waitOnePerNodeOnePending waits until service name runs one task on each
// of 3 nodes and one more task is pending with reason, as h sees it.
func waitOnePerNodeOnePending(t *testing.T, h *harness.Host, name, reason string) {
	t.Helper()
	harness.Eventually(t, 90*time.Second, func() (bool, string) {
		per := map[string]int{}
		var pending []string
		for _, tk := range tasksOf(t, h, name) {
			switch {
			case tk.DesiredState != api.TaskRunning:
			case tk.State == api.TaskRunning:
				per[tk.Node]++
			case tk.State == api.TaskNew:
				pending = append(pending, tk.Message)
			}
		}
		ok := len(per) == 3 && len(pending) == 1 && pending[0] == reason
		for _, n := range per {
			ok = ok && n == 1
		}
		return ok, fmt.Sprintf("running per node %v, pending %q", per, pending)
	}, "3 running (one per node) and 1 pending")
}
