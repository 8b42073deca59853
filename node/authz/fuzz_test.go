package authz

import (
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

// Authorize has an answer for every command a peer can make the decoder
// produce. `go test` runs the seeds; `go test -fuzz
// FuzzAuthorizeForwardedCommand ./node/authz/` explores.

func FuzzAuthorizeForwardedCommand(f *testing.F) {
	for _, cmd := range []command.Command{
		command.TaskStatus{NodeID: "n", Statuses: []api.TaskStatus{{TaskID: "t", State: api.TaskRunning}}},
		command.UpsertNode{Node: api.Node{ID: "n", Addr: "10.0.0.2"}},
		command.UpsertImage{Image: api.Image{ID: "sha256:1", Nodes: []string{"n", "m"}}},
		command.Batch{Commands: []command.Command{command.SetImageNode{ImageID: "i", NodeID: "n"}, command.TrimTasks{}}},
		command.CreateService{Service: api.Service{ID: "s", Spec: api.ServiceSpec{Name: "web", Image: "busybox", Ports: []api.PortConfig{{Published: 2377, Target: 80}}}}},
	} {
		enc, err := command.Encode(cmd)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
	}
	self := &api.Node{ID: "n", Addr: "10.0.0.1", Labels: map[string]string{"a": "b"}}
	f.Fuzz(func(t *testing.T, enc []byte) {
		cmd, err := command.Decode(enc)
		if err != nil {
			return
		}
		own := Authorize(Caller{Kind: Node, NodeID: "n", Member: true}, cmd, self)
		if own == nil && AdminAction(cmd) != "" {
			t.Fatalf("a node's own command %s is an admin action", TypeName(cmd))
		}
		if Authorize(Caller{Kind: Leader}, cmd, nil) != nil {
			t.Fatal("the leader's own command was refused")
		}
		if Authorize(Caller{Kind: Admin, NodeID: "n", Member: true, Worker: true}, cmd, nil) == nil {
			t.Fatal("a worker's admin action was allowed")
		}
		if Authorize(Caller{Kind: Admin, NodeID: "n"}, cmd, nil) == nil || Authorize(Caller{Kind: Node, NodeID: "n"}, cmd, self) == nil {
			t.Fatal("a node without a record was allowed a command")
		}
		if s, ok := cmd.(command.CreateService); ok {
			_ = CheckSpecOnLeader(s.Service.Spec, nil, []*api.Node{self})
		}
	})
}
