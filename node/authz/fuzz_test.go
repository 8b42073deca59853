package node

import (
	"encoding/json"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
)

// The decoders of bytes a peer controls never panic, and what they accept
// survives the checks that follow them. `go test` runs the seeds; `go test
// -fuzz FuzzX ./node/` explores.

func FuzzDecodeRPCRequest(f *testing.F) {
	for _, s := range []string{
		`{"method":"ping"}`,
		`{"method":"join","body":{"secret":"s","csr":"AAAA","node_id":"n","hostname":"h","addr":"10.0.0.1","cluster_port":2377,"gossip_port":7946}}`,
		`{"method":"apply","body":{"command":"DQF7Im5vZGVfaWQiOiJuIn0="}}`,
		`{"method":"admin_write","body":{"action":"rotate_token"}}`,
		`{"method":"blob","body":{"digest":"sha256:00"}}`,
		`{"method":"logs","body":{"container_id":"c","follow":true,"tail":-1}}`,
		`{"method":""}`, `{}`, `null`, `[]`, `{"method":1}`, "", "\x00\xff", `{"method":"ping","body":`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		req, err := decodeRPCRequest(line)
		if err != nil {
			return
		}
		if req.Method == "" {
			t.Fatal("accepted a request without a method")
		}
		// The bodies the dispatcher decodes next must not panic either.
		var (
			j joinRPCRequest
			p applyRPCRequest
			w adminWriteRequest
			o adminRPCRequest
			b blobRPCRequest
			l logsRPCRequest
		)
		for _, v := range []any{&j, &p, &w, &o, &b, &l} {
			_ = json.Unmarshal(req.Body, v)
		}
		// A forwarded command decodes or is refused, and authorize has an
		// answer for whatever decodes.
		if cmd, err := consensus.DecodeCommand(p.Command); err == nil {
			_ = authorize(caller{Kind: callerNode, NodeID: "n"}, cmd, &api.Node{ID: "n"})
			_ = authorize(caller{Kind: callerAdmin, NodeID: "n"}, cmd, nil)
		}
	})
}

func FuzzAuthorizeForwardedCommand(f *testing.F) {
	for _, cmd := range []consensus.Command{
		consensus.TaskStatus{NodeID: "n", Statuses: []api.TaskStatus{{TaskID: "t", State: api.TaskRunning}}},
		consensus.UpsertNode{Node: api.Node{ID: "n", Addr: "10.0.0.2"}},
		consensus.UpsertImage{Image: api.Image{ID: "sha256:1", Nodes: []string{"n", "m"}}},
		consensus.Batch{Commands: []consensus.Command{consensus.SetImageNode{ImageID: "i", NodeID: "n"}, consensus.TrimTasks{}}},
		consensus.CreateService{Service: api.Service{ID: "s", Spec: api.ServiceSpec{Name: "web", Image: "busybox", Ports: []api.PortConfig{{Published: 2377, Target: 80}}}}},
	} {
		enc, err := consensus.EncodeCommand(cmd)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
	}
	self := &api.Node{ID: "n", Addr: "10.0.0.1", Labels: map[string]string{"a": "b"}}
	f.Fuzz(func(t *testing.T, enc []byte) {
		cmd, err := consensus.DecodeCommand(enc)
		if err != nil {
			return
		}
		own := authorize(caller{Kind: callerNode, NodeID: "n"}, cmd, self)
		if own == nil && adminAction(cmd) != "" {
			t.Fatalf("a node's own command %s is an admin action", typeName(cmd))
		}
		if authorize(caller{Kind: callerLeader}, cmd, nil) != nil {
			t.Fatal("the leader's own command was refused")
		}
		if authorize(caller{Kind: callerAdmin, NodeID: "n", Worker: true}, cmd, nil) == nil {
			t.Fatal("a worker's admin action was allowed")
		}
		if s, ok := cmd.(consensus.CreateService); ok {
			_ = checkSpecOnLeader(s.Service.Spec, nil, []*api.Node{self})
		}
	})
}

func FuzzDecodeMemberMeta(f *testing.F) {
	for _, s := range []string{
		`{"id":"n1","cp":2377,"sn":"10.42.1.0/24"}`,
		`{"id":"other","cp":2377}`,
		`{"id":""}`, `{"cp":-1}`, `null`, `[]`, `{"id":"n1","cp":"x"}`, "", "\xff\xfe",
	} {
		f.Add("n1", []byte(s))
	}
	f.Fuzz(func(t *testing.T, name string, b []byte) {
		m := decodeMemberMeta(name, b)
		if m.NodeID != name {
			t.Fatalf("metadata of member %q names node %q", name, m.NodeID)
		}
	})
}
