package seccompprog

import (
	"bytes"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// profile is a small profile: everything allowed but two calls and one
// form of a third. (Not an allow-list: runc init's Go runtime goes on
// running under the filter until it execs, and a list short enough to read
// here would break it, with a crash as soon as a preemption signal's
// handler cannot return.)
func profile() *specs.LinuxSeccomp {
	errno := uint(1)
	return &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86},
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"uname", "sethostname"}, Action: specs.ActErrno, ErrnoRet: &errno},
			{Names: []string{"personality"}, Action: specs.ActErrno, ErrnoRet: &errno, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 8, Op: specs.OpEqualTo}}},
		},
	}
}

// cacheForTest returns a Cache whose runc is a wrapper that logs each of
// its calls to the returned file, and whose init says it takes -s.
func cacheForTest(t *testing.T) (*Cache, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (runc, ptrace)")
	}
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Skip("needs runc")
	}
	dir := t.TempDir()
	calls := filepath.Join(dir, "calls")
	wrapper := filepath.Join(dir, "runc")
	script := "#!/bin/sh\necho \"$*\" >> " + calls + "\nexec " + runc + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	init := filepath.Join(dir, "init")
	if err := os.WriteFile(init, []byte("\x7fELF...usage: "+initUsage+" [ARG...]\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	c := &Cache{Runc: wrapper, Dir: filepath.Join(dir, "programs"), CgroupParent: "/shoal-seccompprog-test",
		Init: init, Log: slog.New(slog.NewTextHandler(testWriter{t}, nil))}
	t.Cleanup(func() {
		out, _ := exec.Command(runc, "--root", filepath.Join(c.Dir, "runc"), "list", "-q").Output()
		if ids := strings.Fields(string(out)); len(ids) > 0 {
			t.Errorf("capture containers left: %v", ids)
			for _, id := range ids {
				_ = exec.Command(runc, "--root", filepath.Join(c.Dir, "runc"), "delete", "--force", id).Run()
			}
		}
		// runc removes each capture's cgroup but not the parent it made.
		dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", strings.TrimPrefix(c.CgroupParent, "/")))
		for _, d := range dirs {
			_ = os.Remove(d) // only when empty
		}
	})
	return c, calls
}

func creates(t *testing.T, calls string) int {
	t.Helper()
	b, _ := os.ReadFile(calls)
	return strings.Count(string(b), " create ")
}

// TestProgram: the program of a profile is captured once however many
// ask for it at once, is a whole number of instructions, readable by any
// user, and installs (the init's way: the kernel takes it as is); another
// profile gets another file; no capture container is left.
func TestProgram(t *testing.T) {
	c, calls := cacheForTest(t)
	var wg sync.WaitGroup
	paths := make([]string, 4)
	for i := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			paths[i] = c.Program(profile())
		}()
	}
	wg.Wait()
	if paths[0] == "" {
		t.Fatal("no program")
	}
	for _, p := range paths[1:] {
		if p != paths[0] {
			t.Fatalf("paths differ: %q", paths)
		}
	}
	if n := creates(t, calls); n != 1 {
		t.Errorf("%d captures for one profile", n)
	}
	fi, err := os.Stat(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() == 0 || fi.Size()%8 != 0 || fi.Mode().Perm() != 0o644 {
		t.Errorf("program file: %d bytes, mode %v", fi.Size(), fi.Mode())
	}
	other := profile()
	other.Syscalls = other.Syscalls[:1]
	p2 := c.Program(other)
	if p2 == "" || p2 == paths[0] {
		t.Fatalf("another profile: %q (first %q)", p2, paths[0])
	}
	a, _ := os.ReadFile(paths[0])
	b, _ := os.ReadFile(p2)
	if bytes.Equal(a, b) {
		t.Error("two profiles, one program")
	}
	if n := creates(t, calls); n != 2 {
		t.Errorf("%d captures for two profiles", n)
	}
}

// TestProgramFailures: without an init that takes -s nothing is captured;
// a capture that fails gives "" and is not tried again at once.
func TestProgramFailures(t *testing.T) {
	c, calls := cacheForTest(t)
	good := c.Init
	c.Init = filepath.Join(t.TempDir(), "tini")
	if err := os.WriteFile(c.Init, []byte("usage: tini [OPTIONS] PROGRAM -- [ARGS]"), 0o755); err != nil {
		t.Fatal(err)
	}
	if p := c.Program(profile()); p != "" {
		t.Errorf("program %q for an init that cannot install it", p)
	}
	if b, _ := os.ReadFile(calls); len(b) > 0 {
		t.Errorf("runc ran for an init that cannot install programs: %s", b)
	}

	c2, calls2 := cacheForTest(t)
	c2.Init = good
	bad := profile()
	bad.DefaultAction = "SCMP_ACT_NO_SUCH_ACTION" // runc refuses the config
	for range 2 {
		if p := c2.Program(bad); p != "" {
			t.Errorf("program %q from a capture that cannot work", p)
		}
	}
	if n := creates(t, calls2); n != 1 {
		t.Errorf("%d captures of a failing profile, want 1 (then no retry for %v)", n, retryAfter)
	}
}

func TestInitLoads(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{"new": "usage: " + initUsage + " [ARG...]\n", "old": "usage: shoal-init -- CMD [ARG...]\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if !InitLoads(filepath.Join(dir, "new")) || InitLoads(filepath.Join(dir, "old")) || InitLoads(filepath.Join(dir, "none")) {
		t.Error("InitLoads: want true for the init with -s only")
	}
}

// testWriter sends a Cache's log to the test's.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}
