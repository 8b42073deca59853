package fsm

import (
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

func sharesOf(t *testing.T, h *harness, name string) map[string]string {
	t.Helper()
	n, err := h.store.ResolveNetwork(name)
	if err != nil {
		t.Fatalf("network %s: %v", name, err)
	}
	return n.Shares
}

// TestNetworkShares walks the life of allocated shares on a /26 network
// (2 shares of /28): a node gets the lowest free share when a task of the
// network is first assigned to it, keeps it (stable across more tasks,
// shutdowns, a claim), a third node is refused with "no address space
// left" and nothing changes, a removed node's share goes back and the next
// node takes it. A network with index-derived shares never gets any.
func TestNetworkShares(t *testing.T) {
	h := newHarness(t)
	h.bootstrap()
	for _, id := range []string{"n2", "n3"} {
		h.must(command.UpsertNode{Node: testNode(id, "host-"+id)})
	}
	small := smallNetCmd("nw", "small", "172.28.0.0/26")
	small.Network.Attachable = true
	h.must(small)
	h.must(smallNetCmd("nn", "closed", "172.29.0.0/26"))
	h.must(netCmd("nb", "big", "10.60.0.0/16"))
	spec := api.ServiceSpec{Name: "web", Networks: []string{"small", "big"}}
	h.must(command.CreateService{Service: api.Service{ID: "s1", Name: "web", Spec: spec}})
	task := func(id, node, desired string) api.Task {
		return api.Task{ID: id, ServiceID: "s1", Slot: 1, NodeID: node, DesiredState: desired, State: api.TaskAssigned, Spec: spec}
	}
	// Pending (no node, or a global task made for its node but not
	// placed: state new) and shutdown tasks take nothing.
	pendingGlobal := task("tg", "n3", api.TaskRunning)
	pendingGlobal.State, pendingGlobal.Slot = api.TaskNew, 0
	h.must(command.UpsertTasks{Tasks: []api.Task{task("t0", "", api.TaskRunning), task("tx", "n3", api.TaskShutdown), pendingGlobal}})
	if got := sharesOf(t, h, "small"); len(got) != 0 {
		t.Fatalf("shares before any assignment: %v", got)
	}
	h.must(command.UpsertTasks{Tasks: []api.Task{task("t1", "n2", api.TaskRunning)}})
	want := map[string]string{"n2": "172.28.0.0/28"}
	if got := sharesOf(t, h, "small"); !maps.Equal(got, want) {
		t.Fatalf("after the first assignment: %v, want %v", got, want)
	}
	h.must(command.UpsertTasks{Tasks: []api.Task{task("t2", "n1", api.TaskRunning), task("t3", "n2", api.TaskRunning)}})
	h.must(command.ClaimNetworkShare{Network: "nw", NodeID: "n1"})
	want = map[string]string{"n2": "172.28.0.0/28", "n1": "172.28.0.16/28"}
	if got := sharesOf(t, h, "small"); !maps.Equal(got, want) {
		t.Fatalf("after more tasks: %v, want %v (stable, the next free one)", got, want)
	}
	if got := sharesOf(t, h, "big"); got != nil {
		t.Fatalf("an index-derived network got shares: %v", got)
	}

	before := stateOf(t, h.store)
	for _, cmd := range []command.Command{
		command.UpsertTasks{Tasks: []api.Task{task("t4", "n3", api.TaskRunning)}},
		command.ClaimNetworkShare{Network: "nw", NodeID: "n3"},
	} {
		r := h.apply(cmd)
		if !errors.Is(r.Err, consensus.ErrInUse) || !strings.Contains(r.Err.Error(), "no address space left") || !strings.Contains(r.Err.Error(), "network small") {
			t.Fatalf("%T on a full network: %v, want ErrInUse saying no address space left on network small", cmd, r.Err)
		}
	}
	if after := stateOf(t, h.store); after != before {
		t.Fatalf("a refused assignment changed the state")
	}
	for _, tc := range []struct {
		cmd  command.ClaimNetworkShare
		want error
	}{
		{command.ClaimNetworkShare{Network: "nope", NodeID: "n1"}, consensus.ErrNotFound},
		{command.ClaimNetworkShare{Network: "nw", NodeID: "nope"}, consensus.ErrNotFound},
		{command.ClaimNetworkShare{Network: "nn", NodeID: "n1"}, consensus.ErrInvalid}, // not attachable
	} {
		if r := h.apply(tc.cmd); !errors.Is(r.Err, tc.want) {
			t.Fatalf("%+v: %v, want %v", tc.cmd, r.Err, tc.want)
		}
	}
	if r := h.apply(command.ClaimNetworkShare{Network: "nb", NodeID: "n3"}); r.Err != nil || sharesOf(t, h, "big") != nil {
		t.Fatalf("a claim on an index-derived network: %v, shares %v", r.Err, sharesOf(t, h, "big"))
	}

	h.must(command.RemoveNode{ID: "n2", Now: t0})
	want = map[string]string{"n1": "172.28.0.16/28"}
	if got := sharesOf(t, h, "small"); !maps.Equal(got, want) {
		t.Fatalf("after removing n2: %v, want %v", got, want)
	}
	h.must(command.UpsertTasks{Tasks: []api.Task{task("t4", "n3", api.TaskRunning)}})
	want["n3"] = "172.28.0.0/28"
	if got := sharesOf(t, h, "small"); !maps.Equal(got, want) {
		t.Fatalf("after n2's share was freed: %v, want %v", got, want)
	}
}

// TestNetworkSharesAgree: two replicas applying the same log hold the
// same shares, whatever order the tasks of one entry come in within a
// command (command order decides, on every replica alike).
func TestNetworkSharesAgree(t *testing.T) {
	run := func() string {
		h := newHarness(t)
		h.bootstrap()
		for i := 2; i <= 9; i++ {
			h.must(command.UpsertNode{Node: testNode(fmt.Sprintf("n%d", i), fmt.Sprintf("h%d", i))})
		}
		h.must(smallNetCmd("nw", "small", "172.28.0.0/24"))
		spec := api.ServiceSpec{Name: "web", Networks: []string{"small"}}
		h.must(command.CreateService{Service: api.Service{ID: "s1", Name: "web", Spec: spec}})
		var tasks []api.Task
		for i := 9; i >= 2; i-- {
			tasks = append(tasks, api.Task{ID: fmt.Sprintf("t%d", i), ServiceID: "s1", Slot: i, NodeID: fmt.Sprintf("n%d", i), DesiredState: api.TaskRunning, State: api.TaskAssigned, Spec: spec})
		}
		h.must(command.UpsertTasks{Tasks: tasks})
		return fmt.Sprint(sharesOf(t, h, "small"))
	}
	a, b := run(), run()
	if a != b {
		t.Fatalf("replicas disagree: %s vs %s", a, b)
	}
	if !strings.Contains(a, "n9:172.28.0.0/28") || !strings.Contains(a, "n2:172.28.0.112/28") {
		t.Fatalf("shares %s: want n9 (first in the command) on the lowest share, n2 on the 8th", a)
	}
}
