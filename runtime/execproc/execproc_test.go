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

// TestProcessSpecRlimitsThroughInit: a container whose nofile soft limit is
// below its hard one runs an exec'd command through its init
// (`/.shoal/init -- CMD`, SHOAL_EXEC_RLIMITS with every rlimit of the
// config), because runc 1.1 (Go >= 1.19) leaves the exec'd process's soft
// nofile at the hard limit: `--ulimit nofile=2000:4000` gave PID 1
// 2000/4000 and `shoal exec` 4000/4000. Otherwise (no such limit, equal
// limits, another init than Shoal's) the command runs as it is.
func TestProcessSpecRlimitsThroughInit(t *testing.T) {
	dir := t.TempDir()
	nofile := specs.POSIXRlimit{Type: "RLIMIT_NOFILE", Soft: 2000, Hard: 4000}
	core := specs.POSIXRlimit{Type: "RLIMIT_CORE", Soft: 0, Hard: 1 << 20}
	initMount := specs.Mount{Destination: "/.shoal/init", Source: "/usr/lib/shoal/shoal-init", Type: "bind"}
	tiniMount := specs.Mount{Destination: "/.shoal/init", Source: "/usr/bin/tini-static", Type: "bind"}
	initArgs := []string{"/.shoal/init", "--", "sleep", "1000"}
	for _, tt := range []struct {
		name    string
		args    []string
		mounts  []specs.Mount
		rlimits []specs.POSIXRlimit
		opts    Options
		want    []string
		wantEnv string // the SHOAL_EXEC_RLIMITS entry, or ""
	}{
		{name: "nofile soft below hard", args: initArgs, mounts: []specs.Mount{initMount}, rlimits: []specs.POSIXRlimit{nofile},
			want: []string{"/.shoal/init", "--", "cat", "/proc/self/limits"}, wantEnv: "SHOAL_EXEC_RLIMITS=7:2000:4000"},
		{name: "every rlimit of the config", args: initArgs, mounts: []specs.Mount{initMount}, rlimits: []specs.POSIXRlimit{core, nofile},
			want: []string{"/.shoal/init", "--", "cat", "/proc/self/limits"}, wantEnv: "SHOAL_EXEC_RLIMITS=4:0:1048576,7:2000:4000"},
		{name: "the caller's variable does not win", args: initArgs, mounts: []specs.Mount{initMount}, rlimits: []specs.POSIXRlimit{nofile},
			opts: Options{Env: []string{"SHOAL_EXEC_RLIMITS=7:1:1"}},
			want: []string{"/.shoal/init", "--", "cat", "/proc/self/limits"}, wantEnv: "SHOAL_EXEC_RLIMITS=7:2000:4000"},
		{name: "nofile soft equal to hard", args: initArgs, mounts: []specs.Mount{initMount},
			rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 4000, Hard: 4000}}, want: []string{"cat", "/proc/self/limits"}},
		{name: "other limits only", args: initArgs, mounts: []specs.Mount{initMount}, rlimits: []specs.POSIXRlimit{core},
			want: []string{"cat", "/proc/self/limits"}},
		{name: "no limits", args: initArgs, mounts: []specs.Mount{initMount}, want: []string{"cat", "/proc/self/limits"}},
		{name: "tini as the init", args: initArgs, mounts: []specs.Mount{tiniMount}, rlimits: []specs.POSIXRlimit{nofile},
			want: []string{"cat", "/proc/self/limits"}},
		{name: "no init", args: []string{"sleep", "1000"}, rlimits: []specs.POSIXRlimit{nofile},
			want: []string{"cat", "/proc/self/limits"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(specs.Spec{Process: &specs.Process{Args: tt.args, Env: []string{"PATH=/bin"}, Rlimits: tt.rlimits}, Mounts: tt.mounts})
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dir, "config.json")
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			opts := tt.opts
			opts.Args = []string{"cat", "/proc/self/limits"}
			proc, err := ProcessSpec(p, dir, opts)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(proc.Args, tt.want) {
				t.Errorf("args %q, want %q", proc.Args, tt.want)
			}
			var got []string
			for _, e := range proc.Env {
				if strings.HasPrefix(e, "SHOAL_EXEC_RLIMITS=") {
					got = append(got, e)
				}
			}
			if want := []string{tt.wantEnv}; (tt.wantEnv == "" && len(got) != 0) || (tt.wantEnv != "" && !slices.Equal(got, want)) {
				t.Errorf("SHOAL_EXEC_RLIMITS entries %q, want %q", got, tt.wantEnv)
			}
			if !slices.Equal(proc.Rlimits, tt.rlimits) {
				t.Errorf("rlimits %v, want the config's %v", proc.Rlimits, tt.rlimits)
			}
		})
	}
}
