package leaderloop

import (
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/membership"
)

// admitWait is what node/joining's AdmitWait was when these tests were
// written.
const admitWait = 3 * time.Second

// TestJoinsHoldsANewRecord: a node whose record appears during the term
// (a join, or a join again under its ID after it left) is not marked down
// before gossip sees it, for joinGrace at most; the nodes of the term's
// first pass, a node gossip has seen since, and a joiner past the grace
// are judged as before.
func TestJoinsHoldsANewRecord(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ready := func(id string) *api.Node { return &api.Node{ID: id, Status: api.NodeReady} }
	aliveOf := func(ids ...string) map[string]membership.Meta {
		m := map[string]membership.Meta{}
		for _, id := range ids {
			m[id] = membership.Meta{NodeID: id}
		}
		return m
	}
	downs := func(j *joins, nodes []*api.Node, alive map[string]membership.Meta, now time.Time) []string {
		j.observe(nodes, alive, now)
		var out []string
		for _, c := range StatusChanges(nodes, "l", alive, Opinions{
			EverSeen: func(string) bool { return true },
			Joining:  func(id string) bool { return j.joining(id, now) },
		}, now) {
			if c.Status == api.NodeDown {
				out = append(out, c.ID)
			}
		}
		return out
	}

	j := newJoins(admitWait)
	// The term's first pass: b is in the state and dead to gossip: down.
	if got := downs(j, []*api.Node{ready("l"), ready("b")}, aliveOf("l"), t0); len(got) != 1 || got[0] != "b" {
		t.Fatalf("first pass: downs %v, want [b]", got)
	}
	// c joins: its record is there, its gossip not yet.
	at := t0.Add(10 * time.Second)
	nodes := []*api.Node{ready("l"), ready("c")}
	if got := downs(j, nodes, aliveOf("l"), at); len(got) != 0 {
		t.Fatalf("c just joined: downs %v, want none", got)
	}
	if got := downs(j, nodes, aliveOf("l"), at.Add(joinGrace(admitWait)-time.Millisecond)); len(got) != 0 {
		t.Fatalf("c within the grace: downs %v, want none", got)
	}
	if got := downs(j, nodes, aliveOf("l"), at.Add(joinGrace(admitWait))); len(got) != 1 || got[0] != "c" {
		t.Fatalf("c never came to gossip: downs %v, want [c] once the grace is over", got)
	}

	// d joins and gossip sees it: from then on it is judged as any node.
	j = newJoins(admitWait)
	downs(j, []*api.Node{ready("l")}, aliveOf("l"), t0)
	nodes = []*api.Node{ready("l"), ready("d")}
	downs(j, nodes, aliveOf("l"), at)
	downs(j, nodes, aliveOf("l", "d"), at.Add(100*time.Millisecond))
	if got := downs(j, nodes, aliveOf("l"), at.Add(time.Second)); len(got) != 1 || got[0] != "d" {
		t.Fatalf("d died after gossip saw it: downs %v, want [d] at once", got)
	}

	// e leaves (its record goes) and joins again under its ID: held again.
	j = newJoins(admitWait)
	downs(j, []*api.Node{ready("l"), ready("e")}, aliveOf("l", "e"), t0)
	downs(j, []*api.Node{ready("l")}, aliveOf("l"), t0.Add(time.Second))
	if got := downs(j, []*api.Node{ready("l"), ready("e")}, aliveOf("l"), t0.Add(30*time.Second)); len(got) != 0 {
		t.Fatalf("e joined again: downs %v, want none", got)
	}
}

// TestJoinsOutlastAnAdmissionWait: a joiner hears its answer, and joins
// gossip, only after its admission waited up to admitWait behind
// other configuration changes (100 agents joining at once); it is not
// marked down when it arrives in gossip a moment after that answer.
func TestJoinsOutlastAnAdmissionWait(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	j := newJoins(admitWait)
	j.observe([]*api.Node{{ID: "l", Status: api.NodeReady}}, nil, t0)
	nodes := []*api.Node{{ID: "l", Status: api.NodeReady}, {ID: "c", Status: api.NodeReady}}
	recorded := t0.Add(time.Second)
	j.observe(nodes, nil, recorded)
	answered := recorded.Add(admitWait)
	for _, at := range []time.Time{answered, answered.Add(time.Second), answered.Add(statusGrace - time.Millisecond)} {
		changes := StatusChanges(nodes, "l", nil, Opinions{
			EverSeen: func(string) bool { return true },
			Joining:  func(id string) bool { return j.joining(id, at) },
		}, at)
		if len(changes) != 0 {
			t.Fatalf("%v after its answer: %+v, want c left ready while its gossip is on the way", at.Sub(answered), changes)
		}
	}
}

// TestJoinsAdmitting: the leader loop leaves a node's raft admission to
// the join that recorded it for admitWait, and only for nodes
// whose record appeared this term.
func TestJoinsAdmitting(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	alive := map[string]membership.Meta{"l": {NodeID: "l"}, "old": {NodeID: "old"}, "new": {NodeID: "new"}}
	j := newJoins(admitWait)
	j.observe([]*api.Node{{ID: "l"}, {ID: "old"}}, alive, t0)
	at := t0.Add(10 * time.Second)
	j.observe([]*api.Node{{ID: "l"}, {ID: "old"}, {ID: "new"}}, alive, at)
	tests := []struct {
		id   string
		now  time.Time
		want bool
	}{
		{"new", at, true},
		{"new", at.Add(admitWait - time.Millisecond), true},
		{"new", at.Add(admitWait), false},
		{"old", at, false}, // in the state at the term's first pass
		{"l", at, false},
	}
	for _, tt := range tests {
		if got := j.admitting(tt.id, tt.now); got != tt.want {
			t.Errorf("admitting(%s, +%v) = %v, want %v", tt.id, tt.now.Sub(at), got, tt.want)
		}
	}
	// Gone from the state and back: admitting again from its return.
	j.observe([]*api.Node{{ID: "l"}, {ID: "old"}}, alive, at.Add(time.Minute))
	back := at.Add(2 * time.Minute)
	j.observe([]*api.Node{{ID: "l"}, {ID: "old"}, {ID: "new"}}, alive, back)
	if !j.admitting("new", back.Add(time.Second)) {
		t.Error("a node recorded again is not left to its join")
	}
}
