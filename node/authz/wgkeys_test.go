package authz

import (
	"testing"

	"github.com/shoal-org/shoal/api"
)

func TestWireGuardKeyTaken(t *testing.T) {
	nodes := []*api.Node{
		{ID: "a", WireGuardKey: "ka", WireGuardNextKey: "ka2"},
		{ID: "b", WireGuardKey: "kb"},
	}
	for _, tc := range []struct {
		name  string
		n     api.Node
		taken bool
	}{
		{"own keys again", api.Node{ID: "a", WireGuardKey: "ka", WireGuardNextKey: "ka2"}, false},
		{"new keys", api.Node{ID: "b", WireGuardKey: "kb", WireGuardNextKey: "kb2"}, false},
		{"no keys", api.Node{ID: "c"}, false},
		{"another's current key", api.Node{ID: "c", WireGuardKey: "kb"}, true},
		{"another's next key as current", api.Node{ID: "c", WireGuardKey: "ka2"}, true},
		{"another's key as next", api.Node{ID: "b", WireGuardKey: "kb", WireGuardNextKey: "ka"}, true},
	} {
		if got := WireGuardKeyTaken(nodes, tc.n) != ""; got != tc.taken {
			t.Errorf("%s: taken = %v, want %v", tc.name, got, tc.taken)
		}
	}
}
