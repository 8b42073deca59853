package authz

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
)

func TestWireGuardKeyTaken(t *testing.T) {
	key := func(c byte) string { return base64.StdEncoding.EncodeToString([]byte(strings.Repeat(string(c), 32))) }
	ka, ka2, kb, kb2 := key('a'), key('A'), key('b'), key('B')
	// kb with the unused bits of its last character set: the overlay
	// decodes it to kb's bytes.
	raw := []byte(kb)
	raw[len(raw)-2]++ // 'I' -> 'J': only the two unused bits change
	kbAlt := string(raw)
	if b, err := base64.StdEncoding.DecodeString(kbAlt); err != nil || base64.StdEncoding.EncodeToString(b) != kb {
		t.Fatalf("%s does not decode to %s's key: %v", kbAlt, kb, err)
	}
	nodes := []*api.Node{
		{ID: "a", WireGuardKey: ka, WireGuardNextKey: ka2},
		{ID: "b", WireGuardKey: kb},
	}
	for _, tc := range []struct {
		name  string
		n     api.Node
		taken bool
	}{
		{"own keys again", api.Node{ID: "a", WireGuardKey: ka, WireGuardNextKey: ka2}, false},
		{"new keys", api.Node{ID: "b", WireGuardKey: kb, WireGuardNextKey: kb2}, false},
		{"no keys", api.Node{ID: "c"}, false},
		{"not a key", api.Node{ID: "c", WireGuardKey: "k"}, false},
		{"another's current key", api.Node{ID: "c", WireGuardKey: kb}, true},
		{"another's next key as current", api.Node{ID: "c", WireGuardKey: ka2}, true},
		{"another's key as next", api.Node{ID: "b", WireGuardKey: kb, WireGuardNextKey: ka}, true},
		{"another's key with a space", api.Node{ID: "c", WireGuardKey: kb + "\n"}, true},
		{"another's key, other unused bits", api.Node{ID: "c", WireGuardKey: kbAlt}, true},
		{"a key too long", api.Node{ID: "c", WireGuardKey: strings.Repeat("x", MaxWireGuardKey+1)}, true},
	} {
		if got := WireGuardKeyTaken(nodes, tc.n) != ""; got != tc.taken {
			t.Errorf("%s: taken = %v, want %v", tc.name, got, tc.taken)
		}
	}
}
