package node

import (
	"encoding/json"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/authz"
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
			_ = authz.Authorize(authz.Caller{Kind: authz.Node, NodeID: "n"}, cmd, &api.Node{ID: "n"})
			_ = authz.Authorize(authz.Caller{Kind: authz.Admin, NodeID: "n"}, cmd, nil)
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
