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
