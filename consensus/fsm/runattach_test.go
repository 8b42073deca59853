package fsm

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

// TestRunAttachments: a network with a `shoal run` container attached
// cannot be removed (docker's "has active endpoints"), the refusal naming
// the container and its node, and nothing changes; a node's record of its
// run containers replaces its previous one on every network (a node that
// restarts writes what it finds), leaves other nodes' alone, ignores a
// network no longer stored; once no container is attached, or once the
// node is removed, the network goes. Before, DeleteNetwork checked
// services only and a run container lost its interface.
func TestRunAttachments(t *testing.T) {
	h := newHarness(t)
	h.bootstrap()
	h.must(command.UpsertNode{Node: testNode("n2", "host-n2")})
	h.must(netCmd("nb", "back-net", "10.60.0.0/16"))
	h.must(netCmd("nf", "front", "10.61.0.0/16"))
	attached := func(name string) map[string][]string {
		t.Helper()
		n, err := h.store.ResolveNetwork(name)
		if err != nil {
			t.Fatalf("network %s: %v", name, err)
		}
		return n.RunContainers
	}
	h.must(command.SetRunAttachments{NodeID: "n2", Networks: map[string][]string{"nb": {"onback", "", "onback", "another"}, "gone": {"x"}}})
	h.must(command.SetRunAttachments{NodeID: "n1", Networks: map[string][]string{"nb": {"mine"}, "nf": {"mine"}}})
	if got := attached("back-net"); !slices.Equal(got["n2"], []string{"another", "onback"}) || !slices.Equal(got["n1"], []string{"mine"}) || len(got) != 2 {
		t.Fatalf("back-net's run containers: %v", got)
	}

	for _, tc := range []struct {
		name, net string
		words     []string
	}{
		{"two nodes' containers", "nb", []string{"network back-net has active endpoints", "container mine on node host1", "container onback on node host-n2", "container another on node host-n2"}},
		{"one node's", "nf", []string{"network front has active endpoints", "container mine on node host1"}},
	} {
		before := stateOf(t, h.store)
		r := h.apply(command.DeleteNetwork{ID: tc.net})
		if !errors.Is(r.Err, consensus.ErrInUse) {
			t.Fatalf("%s: delete: %v, want ErrInUse", tc.name, r.Err)
		}
		for _, w := range tc.words {
			if !strings.Contains(r.Err.Error(), w) {
				t.Errorf("%s: refusal %q does not say %q", tc.name, r.Err, w)
			}
		}
		if stateOf(t, h.store) != before {
			t.Fatalf("%s: a refused delete changed the state", tc.name)
		}
	}

	// n1's next record replaces its previous one everywhere: front is free.
	h.must(command.SetRunAttachments{NodeID: "n1", Networks: map[string][]string{"nb": {"mine"}}})
	if got := attached("front"); got != nil {
		t.Fatalf("front after n1 left it: %v", got)
	}
	h.must(command.DeleteNetwork{ID: "nf"})
	// n1 records nothing: only n2's containers hold back-net.
	h.must(command.SetRunAttachments{NodeID: "n1"})
	if got := attached("back-net"); len(got) != 1 || got["n2"] == nil {
		t.Fatalf("back-net after n1 recorded none: %v", got)
	}
	// A record from an unknown node changes nothing.
	if r := h.apply(command.SetRunAttachments{NodeID: "nope", Networks: map[string][]string{"nb": {"x"}}}); !errors.Is(r.Err, consensus.ErrNotFound) {
		t.Fatalf("record of an unknown node: %v, want ErrNotFound", r.Err)
	}
	// Removing the node takes its attachments with it.
	h.must(command.RemoveNode{ID: "n2"})
	if got := attached("back-net"); got != nil {
		t.Fatalf("back-net after n2's removal: %v", got)
	}
	h.must(command.DeleteNetwork{ID: "nb"})

	// Run containers cannot be given at creation.
	bad := netCmd("nc", "c", "10.62.0.0/16")
	bad.Network.RunContainers = map[string][]string{"n1": {"x"}}
	if r := h.apply(bad); !errors.Is(r.Err, consensus.ErrInvalid) {
		t.Fatalf("create with run containers: %v, want ErrInvalid", r.Err)
	}
}

// A node writes only its own record, but it cannot bloat every member's
// state through it: too many containers on one network, or a name longer
// than a container's, is refused and nothing changes.
func TestRunAttachmentsBounded(t *testing.T) {
	h := newHarness(t)
	h.bootstrap()
	h.must(netCmd("nb", "back-net", "10.60.0.0/16"))
	many := make([]string, maxRunContainers+1)
	for i := range many {
		many[i] = "c" + strconv.Itoa(i)
	}
	for _, tc := range []struct {
		name  string
		names []string
	}{
		{"too many containers", many},
		{"name too long", []string{strings.Repeat("x", maxRunContainerName+1)}},
	} {
		before := stateOf(t, h.store)
		r := h.apply(command.SetRunAttachments{NodeID: "n1", Networks: map[string][]string{"nb": tc.names}})
		if !errors.Is(r.Err, consensus.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", tc.name, r.Err)
		}
		if stateOf(t, h.store) != before {
			t.Errorf("%s: a refused record changed the state", tc.name)
		}
	}
	h.must(command.SetRunAttachments{NodeID: "n1", Networks: map[string][]string{"nb": many[:maxRunContainers]}})
}
