package scheduler_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
)

// The reason a task of a read_only spec waits on a cluster of older agents.
const olderShoal = "on an older Shoal (the spec's read_only needs protocol level 3)"

// TestLevelReplicated: during a rolling upgrade, a task whose spec uses a
// field of protocol level 3 (read_only) is placed only on the upgraded
// node: an older agent would drop the field and start the task writable.
// A spec without such fields still uses every node. With no upgraded node
// the task waits, saying why, and starts once a node is upgraded.
func TestLevelReplicated(t *testing.T) {
	c := cluster(t, "n1", "n2", "n3")
	c.Levels = map[string]int{"n1": 2, "n2": 3} // n3: unknown, the base level
	ro := testSpec("ro", 3)
	ro.ReadOnly = true
	s := c.CreateService(ro)
	plain := c.CreateService(testSpec("plain", 3))
	converge(t, c)
	checkSlots(t, c, s.ID)
	if got := c.RunningPerNode(s.ID); !reflect.DeepEqual(got, map[string]int{"n2": 3}) {
		t.Fatalf("read_only tasks run on %v, want all on n2 (the only node of level 3)", got)
	}
	if got := c.RunningPerNode(plain.ID); !reflect.DeepEqual(got, map[string]int{"n1": 1, "n2": 1, "n3": 1}) {
		t.Fatalf("plain tasks run on %v, want one per node", got)
	}

	c2 := cluster(t, "n1")
	c2.Levels = map[string]int{"n1": 2}
	s2 := c2.CreateService(ro)
	converge(t, c2)
	act := c2.Active(s2.ID)
	if len(act) != 3 {
		t.Fatalf("%d active tasks, want 3 pending", len(act))
	}
	for _, tk := range act {
		if tk.State != api.TaskNew || tk.NodeID != "" || !strings.Contains(tk.Message, olderShoal) {
			t.Fatalf("task %s: state %s on %q, message %q; want pending, %q", tk.Name, tk.State, tk.NodeID, tk.Message, olderShoal)
		}
	}
	c2.Levels["n1"] = 3 // upgraded
	converge(t, c2)
	checkSlots(t, c2, s2.ID)
}

// TestLevelGlobal: a global service whose spec needs level 3 runs on the
// upgraded nodes; an older node gets a task that waits with the reason
// (not silently nothing) and starts once the node is upgraded.
func TestLevelGlobal(t *testing.T) {
	c := cluster(t, "n1", "n2")
	c.Levels = map[string]int{"n1": 2, "n2": 3}
	sp := testSpec("agent", 0)
	sp.Mode = api.ModeGlobal
	sp.ReadOnly = true
	s := c.CreateService(sp)
	converge(t, c)
	if got := c.RunningPerNode(s.ID); !reflect.DeepEqual(got, map[string]int{"n2": 1}) {
		t.Fatalf("global tasks run on %v, want n2 only", got)
	}
	var waiting []api.Task
	for _, tk := range c.Active(s.ID) {
		if tk.NodeID == "n1" {
			waiting = append(waiting, tk)
		}
	}
	if len(waiting) != 1 || waiting[0].State != api.TaskNew || !strings.Contains(waiting[0].Message, olderShoal) {
		t.Fatalf("n1's tasks %+v, want one pending with %q", waiting, olderShoal)
	}
	c.Levels["n1"] = 3
	converge(t, c)
	if got := c.RunningPerNode(s.ID); !reflect.DeepEqual(got, map[string]int{"n1": 1, "n2": 1}) {
		t.Fatalf("after the upgrade global tasks run on %v, want one per node", got)
	}
}

// TestLevelUpdateKeepsOldTasks: tasks already running on an older node
// were placed when their spec was one it could run; an update that adds
// a level-3 field moves them to upgraded nodes instead of starting them
// writable where they are.
func TestLevelUpdateKeepsOldTasks(t *testing.T) {
	c := cluster(t, "n1", "n2")
	c.Levels = map[string]int{"n1": 2, "n2": 3}
	s := c.CreateService(testSpec("web", 2))
	converge(t, c)
	if got := c.RunningPerNode(s.ID); !reflect.DeepEqual(got, map[string]int{"n1": 1, "n2": 1}) {
		t.Fatalf("before the update tasks run on %v", got)
	}
	c.UpdateService(s.ID, func(sp *api.ServiceSpec) { sp.CapDrop = []string{"ALL"} })
	converge(t, c)
	checkSlots(t, c, s.ID)
	if got := c.RunningPerNode(s.ID); !reflect.DeepEqual(got, map[string]int{"n2": 2}) {
		t.Fatalf("after adding cap_drop tasks run on %v, want both on n2", got)
	}
}
