package execproc

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestProcessSpecTerm: with a terminal the process gets TERM=xterm, as
// docker exec -t gives it, unless the container or the caller sets TERM;
// without one, none is added. Before, `shoal exec -it web.1 sh` had no TERM
// and top, vi or clear refused to run.
func TestProcessSpecTerm(t *testing.T) {
	dir := t.TempDir()
	write := func(env []string) string {
		b, err := json.Marshal(specs.Spec{Process: &specs.Process{Args: []string{"init"}, Env: env}})
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "config.json")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := []string{"PATH=/bin", "A=1"}
	for _, tt := range []struct {
		name string
		env  []string
		opts Options
		want []string
	}{
		{name: "tty", env: base, opts: Options{Args: []string{"sh"}, Tty: true}, want: []string{"PATH=/bin", "A=1", "TERM=xterm"}},
		{name: "no tty", env: base, opts: Options{Args: []string{"sh"}}, want: []string{"PATH=/bin", "A=1"}},
		{name: "container's TERM", env: append(slices.Clone(base), "TERM=vt100"), opts: Options{Args: []string{"sh"}, Tty: true}, want: []string{"PATH=/bin", "A=1", "TERM=vt100"}},
		{name: "caller's TERM", env: base, opts: Options{Args: []string{"sh"}, Tty: true, Env: []string{"TERM=screen"}}, want: []string{"PATH=/bin", "A=1", "TERM=screen"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			proc, err := ProcessSpec(write(tt.env), dir, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(proc.Env, tt.want) {
				t.Errorf("env %q, want %q", proc.Env, tt.want)
			}
		})
	}
}

// TestRuncMessage: what a user reads of runc's failure to start an exec'd
// process; runc's own "exec failed: " is dropped, ErrFailed says it (it
// was "exec failed: exec failed: unable to start container process: ...").
func TestRuncMessage(t *testing.T) {
	for _, tc := range []struct{ out, want string }{
		{`time="2026-01-01T00:00:00Z" level=error msg="exec failed: unable to start container process: exec: \"nosuch\": executable file not found in $PATH"`,
			`unable to start container process: exec: "nosuch": executable file not found in $PATH`},
		{`time="x" level=error msg="runc: container not running"`, "runc: container not running"},
		{"", "exit status 1"},
		{"plain words\n", "plain words"},
	} {
		if got := runcMessage(tc.out, errors.New("exit status 1")); got != tc.want {
			t.Errorf("runcMessage(%q) = %q, want %q", tc.out, got, tc.want)
		}
	}
}

// TestProcessSpecUnknownUser: -u with a user or group the container's
// passwd or group file lacks is an exec that could not start (ErrFailed,
// "exec failed: unable to find user nobody: ...":
// the API's 422, exit code 126 as docker), not a malformed request (it
// was exit code 1); a uid needs no entry.
func TestProcessSpecUnknownUser(t *testing.T) {
	dir := t.TempDir()
	b, err := json.Marshal(specs.Spec{Process: &specs.Process{Args: []string{"init"}}})
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "config.json")
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	for p, data := range map[string]string{config: string(b),
		filepath.Join(rootfs, "etc/passwd"): "root:x:0:0:root:/root:/bin/sh\n",
		filepath.Join(rootfs, "etc/group"):  "root:x:0:\n"} {
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		user   string
		failed bool
	}{
		{"nobody", true},
		{"root:nogroup", true},
		{"root", false},
		{"1000:1000", false},
	} {
		proc, err := ProcessSpec(config, rootfs, Options{Args: []string{"id"}, User: tc.user})
		switch {
		case tc.failed && (!errors.Is(err, ErrFailed) || !strings.HasPrefix(err.Error(), "exec failed: unable to find ")):
			t.Errorf("-u %s: %v, want ErrFailed: unable to find ...", tc.user, err)
		case !tc.failed && err != nil:
			t.Errorf("-u %s: %v", tc.user, err)
		case !tc.failed && tc.user == "1000:1000" && (proc.User.UID != 1000 || proc.User.GID != 1000):
			t.Errorf("-u %s: user %+v", tc.user, proc.User)
		}
	}
}
