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
