package autopilot

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/consensus/raftnode"
	"github.com/shoal-org/shoal/consensus/raftnode/raftdirtest"
)

var apNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// apNode describes one node of an autopilot test case compactly.
type apNode struct {
	id         string
	inRaft     bool // present in the raft configuration
	voter      bool
	ready      bool
	downFor    time.Duration // when !ready
	age        int           // bigger = created earlier
	notInState bool
	worker     bool          // role worker
	unfit      bool          // cannot persist its state (a full disk)
	heardAgo   time.Duration // last raft answer this long before apNow (0: never)
	joinedAgo  time.Duration // created this long before apNow (0: age hours)
}

func apInput(leader string, nodes ...apNode) Input {
	in := Input{LeaderID: leader, Now: apNow}
	for _, n := range nodes {
		if n.inRaft || n.voter {
			in.Servers = append(in.Servers, raftnode.Server{ID: n.id, Addr: n.id + ":2377", Voter: n.voter})
		}
		if !n.notInState {
			h := NodeHealth{ID: n.id, Ready: n.ready, CreatedAt: apNow.Add(-time.Duration(n.age) * time.Hour), Worker: n.worker, Unfit: n.unfit}
			if !n.ready {
				h.StatusChangedAt = apNow.Add(-n.downFor)
			}
			if n.heardAgo > 0 {
				h.HeardAt = apNow.Add(-n.heardAgo)
			}
			if n.joinedAgo > 0 {
				h.CreatedAt = apNow.Add(-n.joinedAgo)
			}
			in.Nodes = append(in.Nodes, h)
		}
	}
	return in
}

func v(id string, age int) apNode {
	return apNode{id: id, inRaft: true, voter: true, ready: true, age: age}
}
func nv(id string, age int) apNode { return apNode{id: id, inRaft: true, ready: true, age: age} }
func down(n apNode, d time.Duration) apNode {
	n.ready, n.downFor = false, d
	return n
}

func wk(n apNode) apNode { n.worker = true; return n }

// heard sets when the leader last had a raft answer from n.
func heard(n apNode, ago time.Duration) apNode { n.heardAgo = ago; return n }

// joined sets when n was created, ago before apNow.
func joined(n apNode, ago time.Duration) apNode { n.joinedAgo = ago; return n }

// contact is a Config with MaxContactAge d.
func contact(d time.Duration) func(*Config) { return func(c *Config) { c.MaxContactAge = d } }

// full marks a node whose disk is full (NodeHealth.Unfit).
func full(n apNode) apNode { n.unfit = true; return n }

// burst is k non-voters b1..bk that joined ago, ago+10ms, ... before apNow
// (b1 the oldest), after the nodes given.
func burst(k int, ago time.Duration, nodes ...apNode) []apNode {
	for i := k; i >= 1; i-- {
		n := nv(fmt.Sprintf("b%d", i), 0)
		n.joinedAgo = ago + time.Duration(k-i)*10*time.Millisecond
		nodes = append(nodes, n)
	}
	return nodes
}

func transfer(id string) VoterChange {
	return VoterChange{Action: ActionTransfer, ID: id, Addr: id + ":2377"}
}
func promote(id string) VoterChange {
	return VoterChange{Action: ActionPromote, ID: id, Addr: id + ":2377"}
}
func demote(id string) VoterChange {
	return VoterChange{Action: ActionDemote, ID: id, Addr: id + ":2377"}
}
func remove(id string) VoterChange {
	return VoterChange{Action: ActionRemove, ID: id, Addr: id + ":2377"}
}

// handTo is the unfit leader's transfer of leadership to the voter to.
func handTo(leader, to string) VoterChange {
	c := transfer(leader)
	c.To, c.ToAddr = to, to+":2377"
	return c
}

func TestPlanVoters(t *testing.T) {
	const long, short = time.Minute, 3 * time.Second
	cases := []struct {
		name string
		in   Input
		cfg  func(*Config)
		want []VoterChange
	}{
		{name: "single node", in: apInput("a", v("a", 9))},
		// MaxContactAge: only a non-voter the leader heard from lately is
		// promoted (a promotion counts it in the quorum at once).
		{name: "promote those heard from lately",
			in:   apInput("a", v("a", 9), heard(nv("b", 5), 100*time.Millisecond), heard(nv("c", 4), 200*time.Millisecond)),
			cfg:  contact(300 * time.Millisecond),
			want: []VoterChange{promote("b"), promote("c")}},
		{name: "no promotion of one heard from too long ago",
			in:   apInput("a", v("a", 9), heard(nv("b", 5), 1300*time.Millisecond), heard(nv("c", 4), 100*time.Millisecond)),
			cfg:  contact(750 * time.Millisecond),
			want: []VoterChange{promote("c")}},
		{name: "no promotion of one never heard from",
			in:  apInput("a", v("a", 9), nv("b", 5), nv("c", 4)),
			cfg: contact(300 * time.Millisecond)},
		{name: "a younger node in contact is promoted before an older one out of it",
			in:   apInput("a", v("a", 9), v("d", 8), heard(nv("b", 5), time.Second), heard(nv("c", 1), 50*time.Millisecond)),
			cfg:  contact(300 * time.Millisecond),
			want: []VoterChange{promote("c")}},
		{name: "without a bound contact is not looked at",
			in:   apInput("a", v("a", 9), nv("b", 5), nv("c", 4)),
			want: []VoterChange{promote("b"), promote("c")}},
		// A burst of joins (SettleJoins within SettleWindow) holds the
		// promotions while every voter is healthy, for SettleMax at most.
		{name: "a burst of joins holds promotions",
			in: apInput("a", burst(8, time.Second, v("a", 9))...)},
		{name: "fewer joins than a burst promote at once",
			in:   apInput("a", burst(7, time.Second, v("a", 9))...),
			want: []VoterChange{promote("b1"), promote("b2"), promote("b3"), promote("b4")}},
		{name: "the burst over, promotions resume",
			in:   apInput("a", burst(8, 3*time.Second, v("a", 9))...),
			want: []VoterChange{promote("b1"), promote("b2"), promote("b3"), promote("b4")}},
		{name: "held no longer than SettleMax",
			in:   apInput("a", burst(8, time.Second, v("a", 9), joined(nv("c", 0), 30*time.Second))...),
			want: []VoterChange{promote("c"), promote("b1"), promote("b2"), promote("b3")}},
		{name: "a down voter is replaced during a burst",
			in:   apInput("a", burst(8, time.Second, v("a", 9), down(v("d", 8), short), v("e", 7))...),
			want: []VoterChange{promote("b1"), promote("b2")}},
		{name: "an unfit voter is swapped during a burst",
			in:   apInput("a", burst(8, time.Second, v("a", 9), full(v("d", 8)), v("e", 7))...),
			want: []VoterChange{promote("b1"), promote("b2"), promote("b3"), demote("d")}},
		{name: "a node not admitted to raft yet holds promotions",
			in: apInput("a", v("a", 9), joined(nv("b", 0), 20*time.Second), joined(nv("c", 0), 20*time.Second),
				apNode{id: "d", ready: true, joinedAgo: 10 * time.Second})},
		{name: "a node not admitted to raft yet holds them for SettleMax at most",
			in: apInput("a", v("a", 9), joined(nv("b", 0), 30*time.Second), joined(nv("c", 0), 20*time.Second),
				apNode{id: "d", ready: true, joinedAgo: 10 * time.Second}),
			want: []VoterChange{promote("b"), promote("c")}},
		{name: "no burst hold without SettleJoins",
			in:   apInput("a", burst(8, time.Second, v("a", 9))...),
			cfg:  func(c *Config) { c.SettleJoins = 0 },
			want: []VoterChange{promote("b1"), promote("b2"), promote("b3"), promote("b4")}},
		// Unfit nodes (a full disk): never promoted; a voting one swapped
		// for a healthy non-voter, never the leader.
		{name: "unfit node not promoted",
			in:   apInput("a", v("a", 9), full(nv("b", 5)), nv("c", 1)),
			want: []VoterChange{promote("c")}},
		{name: "only unfit nodes to promote",
			in: apInput("a", v("a", 9), full(nv("b", 5)), full(nv("c", 1)))},
		{name: "unfit voter swapped for a healthy non-voter",
			in:   apInput("a", v("a", 9), full(v("b", 5)), v("c", 4), nv("d", 1)),
			want: []VoterChange{promote("d"), demote("b")}},
		{name: "unfit voter kept without a replacement",
			in: apInput("a", v("a", 9), full(v("b", 5)), v("c", 4))},
		{name: "unfit leader hands over to the oldest fit voter",
			in:   apInput("a", full(v("a", 9)), v("b", 5), v("c", 7), nv("d", 1)),
			want: []VoterChange{handTo("a", "c")}},
		{name: "unfit leader never hands to an unfit voter",
			in:   apInput("a", full(v("a", 9)), full(v("b", 8)), v("c", 4)),
			want: []VoterChange{handTo("a", "c")}},
		{name: "unfit leader never hands to a down voter",
			in:   apInput("a", full(v("a", 9)), down(v("b", 8), 3*time.Second), v("c", 4)),
			want: []VoterChange{handTo("a", "c")}},
		{name: "unfit leader with only unfit voters stays",
			in: apInput("a", full(v("a", 9)), full(v("b", 8)), full(v("c", 4)))},
		{name: "unfit lone leader stays",
			in: apInput("a", full(v("a", 9)), nv("b", 8))},
		{name: "unfit leader hands over after the promotions",
			in:   apInput("a", full(v("a", 9)), v("b", 8), nv("c", 4)),
			want: []VoterChange{promote("c"), handTo("a", "b")}},
		{name: "unfit worker leader hands to a fit manager",
			in:   apInput("a", full(wk(v("a", 9))), full(v("b", 8)), v("c", 4)),
			want: []VoterChange{demote("b"), handTo("a", "c")}},
		{name: "fit leader that was unfit keeps leading",
			in: apInput("b", v("a", 9), v("b", 8), v("c", 4))},
		{name: "unfit extra voter demoted first",
			in:   apInput("a", v("a", 9), v("b", 5), full(v("c", 8)), v("d", 4), down(nv("e", 1), long)),
			want: []VoterChange{demote("c")}},
		{name: "two nodes keep one voter", in: apInput("a", v("a", 9), nv("b", 5))},
		{name: "third node: promote both, oldest first",
			in:   apInput("a", v("a", 9), nv("c", 1), nv("b", 5)),
			want: []VoterChange{promote("b"), promote("c")}},
		{name: "five nodes grow to five voters",
			in:   apInput("a", v("a", 9), v("b", 8), v("c", 7), nv("d", 6), nv("e", 5)),
			want: []VoterChange{promote("d"), promote("e")}},
		{name: "four nodes stay at three",
			in: apInput("a", v("a", 9), v("b", 8), v("c", 7), nv("d", 6))},
		{name: "six nodes stay at five",
			in: apInput("a", v("a", 9), v("b", 8), v("c", 7), v("d", 6), v("e", 5), nv("f", 4))},
		{name: "unhealthy nonvoter is not promoted",
			in:   apInput("a", v("a", 9), down(nv("b", 8), long), nv("c", 7), nv("d", 1)),
			want: []VoterChange{promote("c"), promote("d")}},
		{name: "voter down within grace is not replaced",
			in: apInput("a", v("a", 9), v("b", 8), down(v("c", 7), short), nv("d", 6))},
		{name: "voter dead past grace: promote replacement, then demote",
			in:   apInput("a", v("a", 9), v("b", 8), down(v("c", 7), long), nv("d", 6)),
			want: []VoterChange{promote("d"), demote("c")}},
		{name: "dead voter without replacement stays",
			in: apInput("a", v("a", 9), v("b", 8), down(v("c", 7), long))},
		{name: "dead voter stays when only a dead nonvoter could replace it",
			in: apInput("a", v("a", 9), v("b", 8), down(v("c", 7), long), down(nv("d", 6), long))},
		{name: "five voters, one dead, four alive: shrink to three healthy",
			in:   apInput("a", v("a", 9), v("b", 8), v("c", 7), v("d", 6), down(v("e", 5), long)),
			want: []VoterChange{demote("e"), demote("d")}},
		{name: "five voters, two dead: demote both",
			in:   apInput("a", v("a", 9), down(v("b", 8), 2*long), v("c", 7), v("d", 6), down(v("e", 5), long)),
			want: []VoterChange{demote("b"), demote("e")}},
		{name: "dead leader entry is impossible but the leader is never touched",
			in: apInput("a", down(v("a", 9), long), v("b", 8), v("c", 7), nv("d", 1))},
		{name: "removed node is removed from raft",
			in:   apInput("a", v("a", 9), v("b", 8), v("c", 7), apNode{id: "x", inRaft: true, voter: true, notInState: true}, apNode{id: "y", inRaft: true, notInState: true}),
			want: []VoterChange{remove("x"), remove("y")}},
		{name: "leader missing from state is not removed",
			in: apInput("a", apNode{id: "a", inRaft: true, voter: true, notInState: true}, v("b", 8), v("c", 7))},
		{name: "removed voter replaced in the same plan",
			in:   apInput("a", v("a", 9), v("b", 8), apNode{id: "x", voter: true, notInState: true}, nv("d", 6)),
			want: []VoterChange{remove("x"), promote("d")}},
		{name: "returning node is a healthy nonvoter again",
			in: apInput("a", v("a", 9), v("b", 8), v("d", 6), nv("c", 7))},
		{name: "extra voter demoted, never the leader",
			in:   apInput("b", v("a", 9), v("b", 1)),
			want: []VoterChange{demote("a")}},
		{name: "extras: suspect voter demoted before healthy ones",
			in:   apInput("a", v("a", 9), v("b", 8), v("c", 7), down(v("d", 6), short), v("e", 1)),
			cfg:  func(c *Config) { c.MaxVoters = 3 },
			want: []VoterChange{demote("d"), demote("e")}},
		{name: "never demote below quorum",
			// 3 voters, one dead, only 2 alive nodes: target 1, but demoting
			// the healthy follower would leave 1 healthy of 2 voters.
			in: apInput("a", v("a", 9), v("b", 8), down(v("c", 7), long))},
		{name: "max voters three",
			in:   apInput("a", v("a", 9), nv("b", 8), nv("c", 7), nv("d", 6), nv("e", 5), nv("f", 4)),
			cfg:  func(c *Config) { c.MaxVoters = 3 },
			want: []VoterChange{promote("b"), promote("c")}},
		{name: "ties on age broken by ID",
			in:   apInput("a", v("a", 9), nv("z", 5), nv("m", 5)),
			want: []VoterChange{promote("m"), promote("z")}},
		{name: "node in state but not yet in raft is ignored",
			in: apInput("a", v("a", 9), apNode{id: "j", ready: true, age: 8}, apNode{id: "k", ready: true, age: 7})},
		{name: "worker nonvoter is never promoted, nor counted",
			// a and c are the only managers: two nodes, one voter.
			in: apInput("a", v("a", 9), wk(nv("b", 8)), nv("c", 7))},
		{name: "workers do not make up the target",
			in:   apInput("a", v("a", 9), wk(nv("b", 8)), wk(nv("c", 7)), nv("d", 6), nv("e", 5)),
			want: []VoterChange{promote("d"), promote("e")}},
		{name: "voting worker replaced, then demoted",
			in:   apInput("a", v("a", 9), wk(v("b", 8)), v("c", 7), nv("d", 6)),
			want: []VoterChange{promote("d"), demote("b")}},
		{name: "voting worker demoted even without a replacement",
			in:   apInput("a", v("a", 9), wk(v("b", 8)), v("c", 7)),
			want: []VoterChange{demote("b"), demote("c")}},
		{name: "dead voting worker is demoted when quorum allows",
			in:   apInput("a", v("a", 9), v("b", 8), v("c", 7), down(wk(v("d", 6)), long), v("e", 5)),
			want: []VoterChange{demote("d"), demote("e")}},
		{name: "worker leader hands leadership to a manager",
			in:   apInput("a", wk(v("a", 9)), v("b", 8), v("c", 7)),
			want: []VoterChange{demote("c"), transfer("a")}},
		{name: "lone worker leader promotes a manager first",
			in:   apInput("a", wk(v("a", 9)), nv("b", 8)),
			want: []VoterChange{promote("b"), transfer("a")}},
		{name: "lone worker leader with no manager keeps leading",
			in: apInput("a", wk(v("a", 9)), wk(nv("b", 8)))},
		{name: "no leader, no plan",
			in: apInput("", v("a", 9), nv("b", 8), nv("c", 7))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			got := PlanVoters(tc.in, cfg)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("plan = %v, want %v", got, tc.want)
			}
			// Deterministic whatever the input order.
			rng := rand.New(rand.NewSource(1))
			for i := 0; i < 5; i++ {
				in := tc.in
				in.Servers = append([]raftnode.Server(nil), in.Servers...)
				in.Nodes = append([]NodeHealth(nil), in.Nodes...)
				rng.Shuffle(len(in.Servers), func(a, b int) { in.Servers[a], in.Servers[b] = in.Servers[b], in.Servers[a] })
				rng.Shuffle(len(in.Nodes), func(a, b int) { in.Nodes[a], in.Nodes[b] = in.Nodes[b], in.Nodes[a] })
				if again := PlanVoters(in, cfg); !reflect.DeepEqual(again, got) {
					t.Fatalf("shuffled input gave %v, want %v", again, got)
				}
			}
			// Applying the plan keeps a quorum of healthy voters at every step
			// and reaches a fixed point.
			// A transfer hands the rest to the next leader: allow one more
			// round, which must not transfer again.
			checkPlanSafe(t, tc.in, got)
			next := PlanVoters(applyPlan(tc.in, got), cfg)
			if hasTransfer(got) {
				after := applyPlan(applyPlan(tc.in, got), next)
				if hasTransfer(next) {
					t.Fatalf("second transfer: %v", next)
				}
				next = PlanVoters(after, cfg)
			}
			if len(next) != 0 {
				t.Fatalf("plan is not a fixed point: then %v", next)
			}
		})
	}
}

func applyPlan(in Input, plan []VoterChange) Input {
	out := in
	out.Servers = nil
	byID := map[string]raftnode.Server{}
	var order []string
	for _, s := range in.Servers {
		byID[s.ID] = s
		order = append(order, s.ID)
	}
	for _, c := range plan {
		s := byID[c.ID]
		switch c.Action {
		case ActionPromote:
			s.Voter = true
		case ActionDemote:
			s.Voter = false
		case ActionRemove:
			delete(byID, c.ID)
			continue
		case ActionTransfer:
			if c.To != "" {
				out.LeaderID = c.To
				continue
			}
			// raft picks a voter; the first healthy manager voter by ID here.
			out.LeaderID = ""
			ids := append([]string(nil), order...)
			sort.Strings(ids)
			for _, id := range ids {
				if s, ok := byID[id]; ok && s.Voter && id != c.ID && healthyManager(in, id) {
					out.LeaderID = id
					break
				}
			}
			continue
		}
		byID[c.ID] = s
	}
	for _, id := range order {
		if s, ok := byID[id]; ok {
			out.Servers = append(out.Servers, s)
		}
	}
	return out
}

func hasTransfer(plan []VoterChange) bool {
	for _, c := range plan {
		if c.Action == ActionTransfer {
			return true
		}
	}
	return false
}

func healthyManager(in Input, id string) bool {
	for _, n := range in.Nodes {
		if n.ID == id {
			return n.Ready && !n.Worker
		}
	}
	return false
}

func checkPlanSafe(t *testing.T, in Input, plan []VoterChange) {
	t.Helper()
	healthy := map[string]bool{in.LeaderID: true}
	for _, n := range in.Nodes {
		if n.Ready {
			healthy[n.ID] = true
		}
	}
	cur := in
	for i := range plan {
		cur = applyPlan(cur, plan[i:i+1])
		v, hv := 0, 0
		for _, s := range cur.Servers {
			if s.Voter {
				v++
				if healthy[s.ID] {
					hv++
				}
			}
			if s.ID == in.LeaderID && !s.Voter {
				t.Fatalf("step %d demoted the leader", i)
			}
		}
		if in.LeaderID != "" && hv < v/2+1 {
			t.Fatalf("step %d (%v) leaves %d healthy of %d voters", i, plan[i], hv, v)
		}
	}
}

func TestNodeHealthFrom(t *testing.T) {
	at := apNow.Add(-time.Minute)
	got := NodeHealthFrom([]*api.Node{
		{ID: "a", Status: api.NodeReady, Availability: api.AvailabilityDrain, CreatedAt: apNow},
		{ID: "b", Status: api.NodeDown, StatusChangedAt: at},
	})
	want := []NodeHealth{{ID: "a", Ready: true, CreatedAt: apNow}, {ID: "b", StatusChangedAt: at}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v", got)
	}
	if VoterTarget(2, 5) != 1 || VoterTarget(4, 5) != 3 || VoterTarget(7, 5) != 5 || VoterTarget(7, 3) != 3 || VoterTarget(7, 1) != 1 {
		t.Fatal("VoterTarget")
	}
}

// TestAutopilotOnRaft runs plans against a real in-memory cluster: a lone
// voter with two nonvoters grows to three voters, then shrinks back after
// one of them dies past the grace with a replacement at hand.
func TestAutopilotOnRaft(t *testing.T) {
	nodes := newInmemRaft(t, 4)
	first := nodes[0]
	if err := first.r.BootstrapSelf(); err != nil {
		t.Fatal(err)
	}
	l := waitLeader(t, first)
	ctx := context.Background()
	for i, n := range nodes {
		node := testNode(n.id)
		node.CreatedAt = apNow.Add(time.Duration(i) * time.Minute)
		if i == 0 {
			if _, err := l.r.Apply(ctx, command.BootstrapCluster{Cluster: testCluster(), Node: node}); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if _, err := l.r.Apply(ctx, command.UpsertNode{Node: node}); err != nil {
			t.Fatal(err)
		}
		if err := l.r.AddNonvoter(ctx, n.id, string(n.trans.LocalAddr())); err != nil {
			t.Fatal(err)
		}
	}
	step := func(now time.Time) []VoterChange {
		t.Helper()
		servers, err := l.r.Servers()
		if err != nil {
			t.Fatal(err)
		}
		plan := PlanVoters(Input{Servers: servers, Nodes: NodeHealthFrom(l.store.Nodes()),
			LeaderID: l.id, Now: now}, DefaultConfig())
		for _, ch := range plan {
			if err := ApplyVoterChange(ctx, l.r, ch); err != nil {
				t.Fatalf("%v: %v", ch, err)
			}
			if _, err := l.r.Apply(ctx, command.SetNodeVoter{ID: ch.ID, Voter: ch.Action == ActionPromote}); err != nil {
				t.Fatal(err)
			}
		}
		return plan
	}
	if plan := step(apNow); !reflect.DeepEqual(plan, []VoterChange{
		{Action: ActionPromote, ID: "n2", Addr: string(nodes[1].trans.LocalAddr())},
		{Action: ActionPromote, ID: "n3", Addr: string(nodes[2].trans.LocalAddr())},
	}) {
		t.Fatalf("grow plan = %v", plan)
	}
	// n2 dies; after the grace n4 replaces it.
	stopNode(t, nodes, nodes[1])
	if _, err := l.r.Apply(ctx, command.SetNodeStatus{Statuses: []command.NodeStatus{{ID: "n2", Status: api.NodeDown, At: apNow}}}); err != nil {
		t.Fatal(err)
	}
	if plan := step(apNow.Add(time.Second)); len(plan) != 0 {
		t.Fatalf("plan within grace = %v", plan)
	}
	plan := step(apNow.Add(time.Minute))
	if len(plan) != 2 || plan[0].Action != ActionPromote || plan[0].ID != "n4" || plan[1].Action != ActionDemote || plan[1].ID != "n2" {
		t.Fatalf("replace plan = %v", plan)
	}
	servers, _ := l.r.Servers()
	voters := map[string]bool{}
	for _, s := range servers {
		if s.Voter {
			voters[s.ID] = true
		}
	}
	if !reflect.DeepEqual(voters, map[string]bool{"n1": true, "n3": true, "n4": true}) {
		t.Fatalf("voters = %v", voters)
	}
	if n, _ := l.store.Node("n2"); n.Voter {
		t.Fatal("n2 still recorded as voter")
	}
	if err := ApplyVoterChange(ctx, l.r, VoterChange{Action: "bogus"}); err == nil {
		t.Fatal("bogus action accepted")
	}
}

// inmemNode is one raft node of TestAutopilotOnRaft, on raft's in-memory
// transport (consensus's own raft tests have the fuller harness).
type inmemNode struct {
	id    string
	store *consensus.Store
	trans *raft.InmemTransport
	r     *raftnode.Raft
	down  bool
}

// newInmemRaft starts n connected nodes n1…nN with consensus's test timings.
func newInmemRaft(t *testing.T, n int) []*inmemNode {
	t.Helper()
	var nodes []*inmemNode
	for i := 0; i < n; i++ {
		nd := &inmemNode{id: fmt.Sprintf("n%d", i+1), store: consensus.NewStore()}
		_, nd.trans = raft.NewInmemTransport("")
		cfg := raftnode.DefaultConfig()
		cfg.NodeID = nd.id
		cfg.HeartbeatTimeout = 200 * time.Millisecond
		cfg.ElectionTimeout = 200 * time.Millisecond
		cfg.LeaderLeaseTimeout = 150 * time.Millisecond
		cfg.HeartbeatInterval = 60 * time.Millisecond
		cfg.CommitTimeout = 5 * time.Millisecond
		cfg.ApplyTimeout = 5 * time.Second
		cfg.DataDir = raftdirtest.Dir(t)
		cfg.Transport = nd.trans
		r, err := raftnode.New(cfg, nd.store)
		if err != nil {
			t.Fatalf("start %s: %v", nd.id, err)
		}
		nd.r = r
		nodes = append(nodes, nd)
	}
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b {
				a.trans.Connect(b.trans.LocalAddr(), b.trans)
			}
		}
	}
	t.Cleanup(func() {
		for _, nd := range nodes {
			if !nd.down {
				_ = nd.r.Shutdown()
			}
		}
	})
	return nodes
}

// stopNode cuts n off from the others and shuts it down.
func stopNode(t *testing.T, nodes []*inmemNode, n *inmemNode) {
	t.Helper()
	for _, o := range nodes {
		if o != n {
			n.trans.Disconnect(o.trans.LocalAddr())
			o.trans.Disconnect(n.trans.LocalAddr())
		}
	}
	if err := n.r.Shutdown(); err != nil {
		t.Fatalf("shutdown %s: %v", n.id, err)
	}
	n.down = true
}

// waitLeader polls until n leads.
func waitLeader(t *testing.T, n *inmemNode) *inmemNode {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !n.r.IsLeader() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s to lead", n.id)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return n
}

func testCluster() consensus.ClusterState {
	return consensus.ClusterState{
		ClusterID:       "c1",
		CACertPEM:       []byte("cert"),
		CAKeyPEM:        []byte("key"),
		TokenSecretHash: "abc",
		GossipKeys:      [][]byte{bytes.Repeat([]byte{1}, 32)},
		ClusterCIDR:     "10.42.0.0/16",
		VIPCIDR:         "10.43.0.0/16",
		CreatedAt:       apNow,
	}
}

func testNode(id string) api.Node {
	return api.Node{ID: id, Hostname: id, Addr: "127.0.0.1", Status: api.NodeReady,
		Availability: api.AvailabilityActive, CreatedAt: apNow, CertSerial: "serial-" + id}
}
