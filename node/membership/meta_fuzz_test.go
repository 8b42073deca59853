package membership

import (
	"testing"
)

// The decoders of bytes a peer controls never panic, and what they accept
// survives the checks that follow them. `go test` runs the seeds; `go test
// -fuzz FuzzX ./node/membership` explores. The RPC request decoder's
// target is in node/wire.

func FuzzDecodeMeta(f *testing.F) {
	for _, s := range []string{
		`{"id":"n1","cp":2377,"sn":"10.42.1.0/24"}`,
		`{"id":"other","cp":2377}`,
		`{"id":""}`, `{"cp":-1}`, `null`, `[]`, `{"id":"n1","cp":"x"}`, "", "\xff\xfe",
	} {
		f.Add("n1", []byte(s))
	}
	f.Fuzz(func(t *testing.T, name string, b []byte) {
		m := decodeMeta(name, b)
		if m.NodeID != name {
			t.Fatalf("metadata of member %q names node %q", name, m.NodeID)
		}
	})
}
