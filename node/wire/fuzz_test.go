package wire

import (
	"encoding/json"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/authz"
)

// The request decoder never panics, and what it accepts survives the
// checks that follow it: the bytes may come from a peer without a
// certificate. `go test` runs the seeds; `go test -fuzz FuzzDecodeRequest
// ./node/wire/` explores.

func FuzzDecodeRequest(f *testing.F) {
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
		req, err := DecodeRequest(line)
		if err != nil {
			return
		}
		if req.Method == "" {
			t.Fatal("accepted a request without a method")
		}
		// The bodies the dispatcher decodes next must not panic either.
		var (
			j JoinRequest
			p ApplyRequest
			w AdminWriteRequest
			o AdminRequest
			b BlobRequest
			l LogsRequest
		)
		for _, v := range []any{&j, &p, &w, &o, &b, &l} {
			_ = json.Unmarshal(req.Body, v)
		}
		// A forwarded command decodes or is refused, and authorize has an
		// answer for whatever decodes.
		if cmd, err := command.Decode(p.Command); err == nil {
			_ = authz.Authorize(authz.Caller{Kind: authz.Node, NodeID: "n", Member: true}, cmd, &api.Node{ID: "n"})
			_ = authz.Authorize(authz.Caller{Kind: authz.Admin, NodeID: "n", Member: true}, cmd, nil)
		}
	})
}
