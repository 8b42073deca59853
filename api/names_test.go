package api

import (
	"strings"
	"testing"
)

func TestHostnameProblem(t *testing.T) {
	for _, tc := range []struct {
		h    string
		want string // "" or a part of the problem
	}{
		{"node-1", ""},
		{"db1.eu-west.example.com", ""},
		{"Build_Box", ""},
		{"", "empty"},
		{strings.Repeat("a", MaxHostnameLen), ""},
		{strings.Repeat("a", MaxHostnameLen+1), "longer"},
		{"evil\x1b]52;c;aGk=\x07", `'\x1b'`},
		{"a b", `' '`},
		{"héte", "not allowed"},
	} {
		got := HostnameProblem(tc.h)
		if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("HostnameProblem(%q) = %q, want %q", tc.h, got, tc.want)
		}
	}
}

// TestNetworkNameProblem: a network's name follows the service rule, and
// the error speaks of a network.
func TestNetworkNameProblem(t *testing.T) {
	if p := NetworkNameProblem("front-1"); p != "" {
		t.Fatalf("front-1: %q", p)
	}
	if p := NetworkNameProblem("bad net"); !strings.Contains(p, "a network name is a DNS label") {
		t.Fatalf("bad net: %q", p)
	}
	if p := ServiceNameProblem("bad web"); !strings.Contains(p, "a service name is a DNS label") {
		t.Fatalf("bad web: %q", p)
	}
}
