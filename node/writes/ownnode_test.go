package writes

import (
	"reflect"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

func TestOwnNodeReports(t *testing.T) {
	me := api.Node{ID: "me", WireGuardKey: "a2V5"}
	other := api.Node{ID: "them"}
	status := command.TaskStatus{NodeID: "me"}
	for _, tc := range []struct {
		name    string
		in      command.Command
		want    command.Command
		changed bool
	}{
		{"own record", command.UpsertNode{Node: me}, command.UpdateOwnNode{Node: me}, true},
		{"own record, pointer", &command.UpsertNode{Node: me}, command.UpdateOwnNode{Node: me}, true},
		{"in a batch (renewal)", command.Batch{Commands: []command.Command{command.SetNodeCert{ID: "me"}, &command.UpsertNode{Node: me}}},
			command.Batch{Commands: []command.Command{command.SetNodeCert{ID: "me"}, command.UpdateOwnNode{Node: me}}}, true},
		// authz refuses another node's record; left as it is here.
		{"another node's record", command.UpsertNode{Node: other}, command.UpsertNode{Node: other}, false},
		{"other commands", status, status, false},
	} {
		got, changed := ownNodeReports("me", tc.in)
		if changed != tc.changed || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: ownNodeReports = %#v, %v; want %#v, %v", tc.name, got, changed, tc.want, tc.changed)
		}
	}
}
