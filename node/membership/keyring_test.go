package membership

import (
	"bytes"
	"slices"
	"testing"
)

func key(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func keysEqual(x, y [][]byte) bool {
	return slices.EqualFunc(x, y, func(a, b []byte) bool { return bytes.Equal(a, b) })
}

func TestKeyringPlan(t *testing.T) {
	a, b, c := key('a'), key('b'), key('c')
	tests := []struct {
		name               string
		installed, desired [][]byte
		add, remove        [][]byte
		primary            []byte
	}{
		{name: "unchanged", installed: [][]byte{a}, desired: [][]byte{a}, primary: a},
		{name: "install beside", installed: [][]byte{a}, desired: [][]byte{a, b}, add: [][]byte{b}, primary: a},
		{name: "switch primary", installed: [][]byte{a, b}, desired: [][]byte{b, a}, primary: b},
		{name: "remove old", installed: [][]byte{b, a}, desired: [][]byte{b}, primary: b, remove: [][]byte{a}},
		// A node that missed steps (down, then caught up by Raft) jumps:
		// it installs before it removes, so it never has no key.
		{name: "jump to the end", installed: [][]byte{a}, desired: [][]byte{c}, add: [][]byte{c}, primary: c, remove: [][]byte{a}},
		{name: "duplicates installed once", installed: [][]byte{a}, desired: [][]byte{b, b, a}, add: [][]byte{b}, primary: b},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			add, primary, remove := KeyringPlan(tt.installed, tt.desired)
			if !keysEqual(add, tt.add) || !bytes.Equal(primary, tt.primary) || !keysEqual(remove, tt.remove) {
				t.Fatalf("KeyringPlan = add %q primary %q remove %q; want add %q primary %q remove %q",
					add, primary, remove, tt.add, tt.primary, tt.remove)
			}
		})
	}
}

func TestFingerprintOrder(t *testing.T) {
	a, b := key('a'), key('b')
	if Fingerprint([][]byte{a, b}) == Fingerprint([][]byte{b, a}) {
		t.Fatal("the fingerprint must tell the primary apart")
	}
	if Fingerprint(nil) != "" {
		t.Fatal("no keyring has no fingerprint")
	}
}
