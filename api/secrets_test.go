package api

import (
	"strings"
	"testing"
)

func TestFileReferenceProblem(t *testing.T) {
	for _, tc := range []struct {
		r      FileReference
		secret bool
		want   string // "" or a part of the problem
	}{
		{FileReference{Source: "db_pw"}, true, ""},
		{FileReference{Source: "db_pw", Target: "pw"}, true, ""},
		{FileReference{Source: "nginx.conf", Target: "/etc/nginx/nginx.conf"}, false, ""},
		{FileReference{Source: "c"}, false, ""},
		{FileReference{Source: "c", Target: "../x"}, true, "'..'"},
		{FileReference{Source: "c", Target: "/etc/"}, false, "must name a file"},
		// Targets that name a directory once cleaned.
		{FileReference{Source: "c", Target: "."}, true, "'.'"},
		{FileReference{Source: "c", Target: "/etc/."}, false, "'.'"},
		{FileReference{Source: "c", Target: "./pw"}, true, "'.'"},
		{FileReference{Source: "c", Target: "/run/secrets"}, true, "must name a file"},
		{FileReference{Source: "c", Target: "/run/secrets/pw"}, true, ""},
		// Bind mounted over the container's init, its state, or the
		// kernel file systems: refused as a --mount there is.
		{FileReference{Source: "c", Target: "/.shoal/init"}, false, "/.shoal is reserved"},
		{FileReference{Source: "c", Target: "/.shoal/state/exit"}, true, "/.shoal is reserved"},
		{FileReference{Source: "c", Target: "/dev/null"}, false, "/dev is reserved"},
		{FileReference{Source: "c", Target: "/proc/sysrq-trigger"}, true, "/proc is reserved"},
		{FileReference{Source: "c", Target: "/sys/kernel/x"}, false, "/sys is reserved"},
		{FileReference{Source: "c", Target: "/devices"}, false, ""},
	} {
		got := FileReferenceProblem(tc.r, tc.secret)
		if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("FileReferenceProblem(%+v, secret=%v) = %q, want %q", tc.r, tc.secret, got, tc.want)
		}
	}
}

// TestFileTargetConflict: two different files at one path of a container,
// secret or config, are a conflict; one source at two paths is not.
func TestFileTargetConflict(t *testing.T) {
	cases := []struct {
		name             string
		secrets, configs []FileReference
		want             string // substring of the problem; "" for none
	}{
		{"none", nil, nil, ""},
		{"distinct", []FileReference{{Source: "a"}, {Source: "b"}}, []FileReference{{Source: "c", Target: "/etc/c"}}, ""},
		{"one source at two targets", []FileReference{{Source: "a"}, {Source: "a", Target: "a2"}}, nil, ""},
		{"two secrets at one target", []FileReference{{Source: "a", Target: "pw"}, {Source: "b", Target: "pw"}}, nil, "secret a and secret b have the same target /run/secrets/pw"},
		{"relative and absolute spelling", []FileReference{{Source: "a", Target: "pw"}, {Source: "b", Target: "/run/secrets/pw"}}, nil, "same target /run/secrets/pw"},
		{"default target", []FileReference{{Source: "b"}, {Source: "a", Target: "b"}}, nil, "same target /run/secrets/b"},
		{"listed twice", []FileReference{{Source: "a"}, {Source: "a"}}, nil, "secret a is listed twice"},
		{"two configs", nil, []FileReference{{Source: "c", Target: "/etc/x"}, {Source: "d", Target: "/etc//x"}}, "config c and config d have the same target /etc/x"},
		{"secret and config", []FileReference{{Source: "a", Target: "/etc/x"}}, []FileReference{{Source: "c", Target: "/etc/x"}}, "secret a and config c"},
	}
	for _, tc := range cases {
		got := FileTargetConflict(tc.secrets, tc.configs)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
