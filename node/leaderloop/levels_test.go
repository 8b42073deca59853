package leaderloop

import (
	"net"
	"reflect"
	"testing"

	"github.com/hashicorp/memberlist"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/membership"
	"github.com/shoal-org/shoal/node/scheduler/jobs"
	"github.com/shoal-org/shoal/node/scheduler/placement"
	"github.com/shoal-org/shoal/node/scheduler/servicespec"
)

// TestNodeLevels: the planner gets each node's level as gossip advertised
// it; a node that advertised none (a release before the gate) or that
// gossip never reported is left out, i.e. counted as the base level.
func TestNodeLevels(t *testing.T) {
	m := membership.NewDetached(nil)
	join := func(name, meta string) {
		m.NotifyJoin(&memberlist.Node{Name: name, Addr: net.ParseIP("192.0.2.1"), Port: 7946, Meta: []byte(meta)})
	}
	join("n1", `{"id":"n1","v":"v1","pl":2}`)
	join("n2", `{"id":"n2","v":"v2","pl":3}`)
	join("n3", `{"id":"n3"}`)
	nodes := []api.Node{{ID: "n1"}, {ID: "n2"}, {ID: "n3"}, {ID: "n4"}}
	got := NodeLevels(m, nodes)
	if want := map[string]int{"n1": 2, "n2": 3}; !reflect.DeepEqual(got, want) {
		t.Fatalf("NodeLevels = %v, want %v", got, want)
	}
	if got := NodeLevels(nil, nodes); len(got) != 0 {
		t.Fatalf("without gossip NodeLevels = %v, want none", got)
	}
}

// TestSpecLevelsWithinProtocol: the spec field levels (servicespec) and
// the placement filter count from this binary's base level and name no
// level above the newest it applies: the packages cannot import
// consensus/fsm/command, so they restate its numbers.
func TestSpecLevelsWithinProtocol(t *testing.T) {
	if lvl, fields := servicespec.MinLevel(&api.ServiceSpec{}); lvl != command.BaseProtocolLevel || fields != nil {
		t.Fatalf("an empty spec needs level %d %v, want the base level %d", lvl, fields, command.BaseProtocolLevel)
	}
	all := api.ServiceSpec{ReadOnly: true, CapAdd: []string{"x"}, CapDrop: []string{"x"}, Sysctls: map[string]string{"a": "b"},
		Ulimits: []api.Ulimit{{Name: "nofile"}}, StopSignal: "SIGQUIT", Hostname: "h", ExtraHosts: []string{"a:1.2.3.4"}}
	if lvl, _ := servicespec.MinLevel(&all); lvl > command.ProtocolLevel {
		t.Fatalf("a spec needs level %d, above this binary's %d", lvl, command.ProtocolLevel)
	}
	if servicespec.JobLevel != command.JobLevel {
		t.Fatalf("servicespec.JobLevel %d, command.JobLevel %d: the job modes came at one level", servicespec.JobLevel, command.JobLevel)
	}
	if jobs.GiveUpLevel != command.JobGiveUpLevel {
		t.Fatalf("jobs.GiveUpLevel %d, command.JobGiveUpLevel %d: a given-up job task came at one level", jobs.GiveUpLevel, command.JobGiveUpLevel)
	}
	if placement.SharesLevel != command.SharesLevel {
		t.Fatalf("placement.SharesLevel %d, command.SharesLevel %d: allocated network shares came at one level", placement.SharesLevel, command.SharesLevel)
	}
	unknown := &placement.NodeInfo{Node: api.Node{Status: api.NodeReady}}
	if ok, _ := (placement.LevelFilter{}).Check(unknown, &placement.Request{Level: placement.LevelNeed{Level: command.BaseProtocolLevel}}); !ok {
		t.Fatal("a node of unknown level is refused a spec of the base level")
	}
	if ok, _ := (placement.LevelFilter{}).Check(unknown, &placement.Request{Level: placement.LevelNeed{Level: command.BaseProtocolLevel + 1}}); ok {
		t.Fatal("a node of unknown level is given a spec above the base level")
	}
}
