package scheduler_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/scheduler/placement"
)

// smallNet is a /26 network with allocated shares: two /28 node shares.
func smallNet() *api.Network {
	return &api.Network{ID: "w1", Name: "small", Subnet: "172.28.0.0/26", ShareBits: api.AllocatedShareBits}
}

// TestSharesLimitNodes: tasks of a network with allocated shares go only
// to nodes that hold a share or while one is free, in one plan too (the
// plan counts the shares it hands out: the state machine would refuse the
// whole plan otherwise); the rest wait saying "no address space left on
// network small". A plain service still uses every node.
func TestSharesLimitNodes(t *testing.T) {
	c := cluster(t, "n1", "n2", "n3", "n4")
	c.Levels = map[string]int{"n1": placement.SharesLevel, "n2": placement.SharesLevel, "n3": placement.SharesLevel, "n4": placement.SharesLevel}
	c.Networks = map[string]*api.Network{"small": smallNet()}
	sp := testSpec("web", 4)
	sp.Networks = []string{"small"}
	s := c.CreateService(sp)
	plain := c.CreateService(testSpec("plain", 4))
	converge(t, c)
	if len(c.ShareRefusals) > 0 {
		t.Fatalf("the state machine would refuse: %v", c.ShareRefusals)
	}
	got := c.RunningPerNode(s.ID)
	if len(got) != 2 || got["n1"]+got["n2"] != 4 {
		t.Fatalf("web runs on %v, want its 4 tasks on the 2 nodes that got the 2 shares (n1, n2)", got)
	}
	if want := map[string]string{"n1": "172.28.0.0/28", "n2": "172.28.0.16/28"}; !reflect.DeepEqual(c.Networks["small"].Shares, want) {
		t.Fatalf("shares %v, want %v", c.Networks["small"].Shares, want)
	}
	if got := c.RunningPerNode(plain.ID); len(got) != 4 {
		t.Fatalf("plain runs on %v, want every node", got)
	}

	// A node that must hold a task but has no share: a global service
	// gets a pending task there that says why.
	g := testSpec("agent", 0)
	g.Mode, g.Networks = api.ModeGlobal, []string{"small"}
	gs := c.CreateService(g)
	converge(t, c)
	if got := c.RunningPerNode(gs.ID); !reflect.DeepEqual(got, map[string]int{"n1": 1, "n2": 1}) {
		t.Fatalf("global tasks run on %v, want n1 and n2", got)
	}
	waiting := 0
	for _, tk := range c.Active(gs.ID) {
		if tk.NodeID == "n3" || tk.NodeID == "n4" {
			waiting++
			if tk.State != api.TaskNew || !strings.Contains(tk.Message, "no address space left on network small") {
				t.Fatalf("task on %s: state %s, message %q; want pending with no address space left", tk.NodeID, tk.State, tk.Message)
			}
		}
	}
	if waiting != 2 {
		t.Fatalf("%d pending global tasks on n3, n4, want 2", waiting)
	}

	// A replicated service without room says so.
	c2 := cluster(t, "n1", "n2", "n3")
	c2.Levels = map[string]int{"n1": placement.SharesLevel, "n2": placement.SharesLevel, "n3": placement.SharesLevel}
	full := smallNet()
	full.Shares = map[string]string{"gone1": "172.28.0.0/28", "gone2": "172.28.0.16/28"}
	c2.Networks = map[string]*api.Network{"small": full}
	s2 := c2.CreateService(sp)
	converge(t, c2)
	for _, tk := range c2.Active(s2.ID) {
		if tk.NodeID != "" || !strings.Contains(tk.Message, "3 nodes with no address space left on network small") {
			t.Fatalf("task %s on %q: %q; want pending, no address space left", tk.Name, tk.NodeID, tk.Message)
		}
	}
}

// TestSharesNeedLevel: an agent older than SharesLevel finds no share of
// its own, so tasks of such a network are not placed there.
func TestSharesNeedLevel(t *testing.T) {
	c := cluster(t, "n1", "n2")
	c.Levels = map[string]int{"n1": placement.SharesLevel - 1, "n2": placement.SharesLevel}
	c.Networks = map[string]*api.Network{"small": smallNet()}
	sp := testSpec("web", 2)
	sp.Networks = []string{"small"}
	s := c.CreateService(sp)
	converge(t, c)
	if got := c.RunningPerNode(s.ID); !reflect.DeepEqual(got, map[string]int{"n2": 2}) {
		t.Fatalf("web runs on %v, want only on n2 (level %d)", got, placement.SharesLevel)
	}
	c1 := cluster(t, "n1")
	c1.Networks = map[string]*api.Network{"small": smallNet()}
	s1 := c1.CreateService(sp)
	converge(t, c1)
	for _, tk := range c1.Active(s1.ID) {
		if want := "the spec's network small needs protocol level 6"; !strings.Contains(tk.Message, want) {
			t.Fatalf("task %s: %q, want %q", tk.Name, tk.Message, want)
		}
	}
}
