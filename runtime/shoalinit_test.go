package runtime

import (
	"bufio"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/runtime/initproc"
	"github.com/shoal-org/shoal/runtime/seccompprog"
)

// The container init (init/shoal-init.c) on its own: run as PID 1 of a fresh
// pid namespace, as in a container, with the host's /bin/sh as its command.

func needInit(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (a pid namespace)")
	}
	if testInit == "" {
		t.Fatalf("shoal-init not built: %v", fixtureErr)
	}
}

// startInit starts `shoal-init -- args...` as PID 1 of a new pid namespace;
// its stdout and stderr go to the returned pipe.
func startInit(t *testing.T, args ...string) (*exec.Cmd, *os.File) {
	t.Helper()
	cmd := exec.Command(testInit, append([]string{"--"}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		r.Close()
	})
	return cmd, r
}

// runInitOnce runs `shoal-init args...` with env to its end, as PID 1 of
// a new pid namespace or as a plain process, and returns its exit code and
// output.
func runInitOnce(t *testing.T, pid1 bool, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(testInit, args...)
	cmd.Env = env
	if pid1 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

// runInit runs shoal-init to its end and returns its exit code and output.
func runInit(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd, out := startInit(t, args...)
	b, err := io.ReadAll(out)
	if err != nil {
		t.Fatal(err)
	}
	return exitCode(t, cmd), string(b)
}

func exitCode(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	err := cmd.Wait()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		t.Fatalf("shoal-init itself killed by %v", ws.Signal())
	}
	return ws.ExitStatus()
}

func TestShoalInitExitStatus(t *testing.T) {
	needInit(t)
	dir := t.TempDir()
	noexec := filepath.Join(dir, "noexec")
	if err := os.WriteFile(noexec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "script") // no #!: execvp runs it with /bin/sh
	if err := os.WriteFile(script, []byte("echo script $1; exit 4\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args     []string
		want     int
		wantOut  string
		exactOut bool
	}{
		{args: []string{"sh", "-c", "exit 0"}, want: 0},
		{args: []string{"sh", "-c", "echo out; echo err >&2; exit 3"}, want: 3, wantOut: "out\nerr\n", exactOut: true},
		{args: []string{"/bin/sh", "-c", "exit 255"}, want: 255},
		{args: []string{"sh", "-c", "kill -9 $$"}, want: 128 + 9},
		{args: []string{"sh", "-c", "kill -USR1 $$"}, want: 128 + 10},
		{args: []string{"no-such-command"}, want: 127, wantOut: "exec no-such-command failed: No such file or directory"},
		{args: []string{"/no/such"}, want: 127, wantOut: "exec /no/such failed: No such file or directory"},
		{args: []string{noexec}, want: 126, wantOut: "failed: Permission denied"},
		{args: []string{script, "x"}, want: 4, wantOut: "script x\n", exactOut: true},
	}
	for _, tt := range tests {
		code, out := runInit(t, tt.args...)
		if code != tt.want {
			t.Errorf("%q: exit %d, want %d (output %q)", tt.args, code, tt.want, out)
		}
		if tt.exactOut && out != tt.wantOut || !strings.Contains(out, tt.wantOut) {
			t.Errorf("%q: output %q, want %q", tt.args, out, tt.wantOut)
		}
	}
}

// TestShoalInitExecMode: run as an exec'd process (not PID 1) with
// SHOAL_EXEC_RLIMITS, the init sets those rlimits, drops the variable and
// becomes the command (same pid, no fork), with the 127/126 exits of a
// PID 1's command; a malformed or refused limit is 126. This is how `shoal
// exec` gives the command the container's nofile soft limit, which runc 1.1
// built with Go >= 1.19 leaves at the hard limit (runtime/execproc,
// rlimitsThroughInit). As PID 1 the variable changes nothing.
func TestShoalInitExecMode(t *testing.T) {
	needInit(t)
	run := func(rlimits string, pid1 bool, args ...string) (int, string) {
		t.Helper()
		env := []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "SHOAL_EXEC_RLIMITS=" + rlimits, "KEEP=1"}
		return runInitOnce(t, pid1, env, append([]string{"--"}, args...)...)
	}
	// Its parent is this test: the init became the shell, it did not fork it.
	show := `echo "$(ulimit -S -n) $(ulimit -H -n) $(ulimit -c)" "${SHOAL_EXEC_RLIMITS-unset}" "$KEEP" "$PPID"`
	me := strconv.Itoa(os.Getpid())
	nofile, core := strconv.Itoa(unix.RLIMIT_NOFILE), strconv.Itoa(unix.RLIMIT_CORE)
	for _, tt := range []struct {
		name, rlimits string
		pid1          bool
		args          []string
		want          int
		wantOut       string
	}{
		{name: "limits set", rlimits: nofile + ":100:200," + core + ":0:0", args: []string{"sh", "-c", show}, want: 0, wantOut: "100 200 0 unset 1 " + me + "\n"},
		{name: "not found", rlimits: nofile + ":100:200", args: []string{"no-such-command"}, want: 127, wantOut: "exec no-such-command failed: No such file or directory"},
		{name: "soft above hard", rlimits: nofile + ":300:200", args: []string{"true"}, want: 126, wantOut: "SHOAL_EXEC_RLIMITS: setrlimit: Invalid argument"},
		{name: "malformed", rlimits: "nofile=1", args: []string{"true"}, want: 126, wantOut: "want RESOURCE:SOFT:HARD"},
		{name: "as PID 1: ignored", rlimits: nofile + ":100:200", pid1: true, args: []string{"sh", "-c", `ulimit -S -n`}, want: 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out := run(tt.rlimits, tt.pid1, tt.args...)
			if code != tt.want || !strings.Contains(out, tt.wantOut) {
				t.Errorf("exit %d output %q, want %d and %q", code, out, tt.want, tt.wantOut)
			}
			if tt.pid1 && strings.TrimSpace(out) == "100" {
				t.Errorf("as PID 1 the limits were set: %q", out)
			}
		})
	}
}

func TestShoalInitUsage(t *testing.T) {
	needInit(t)
	for _, args := range [][]string{{}, {"--"}, {"-s", "/prog", "true"}, {"-s", "/prog", "--"}, {"-x", "200000", "--", "true"}, {"-s", "/prog", "-x"}} {
		cmd := exec.Command(testInit, args...)
		out, _ := cmd.CombinedOutput()
		if cmd.ProcessState.ExitCode() != 2 || !strings.Contains(string(out), "usage") {
			t.Errorf("%q: exit %d output %q, want 2 and the usage", args, cmd.ProcessState.ExitCode(), out)
		}
	}
}

// TestShoalInitSeccomp: with -s PROGRAM the init installs the program
// before anything else, as PID 1 (CMD runs under it) and as an exec's
// wrapper (it becomes CMD under it, without SHOAL_EXEC_RLIMITS too); a
// program it cannot read or install ends it with 126 before CMD runs.
// The test's program refuses uname(2) with EPERM and allows the rest.
func TestShoalInitSeccomp(t *testing.T) {
	needInit(t)
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const ldNr, jeq, ret = 0x20, 0x15, 0x06
	const allow, errnoEPERM = 0x7fff0000, 0x00050000 | 1
	prog := write("prog", seccompprog.Encode([]unix.SockFilter{
		{Code: ldNr, K: 0}, // seccomp_data.nr
		{Code: jeq, Jt: 0, Jf: 1, K: unix.SYS_UNAME},
		{Code: ret, K: errnoEPERM},
		{Code: ret, K: allow},
	}))
	short := write("short", []byte("12 bytes ..."))
	refused := write("refused", seccompprog.Encode([]unix.SockFilter{{Code: 0xffff}}))
	show := `grep -E 'Seccomp_filters|CapBnd|CapEff' /proc/self/status; uname -s || echo uname refused; echo "ppid $PPID"`
	// Root's capabilities less CAP_SYS_ADMIN (21) and CAP_SETPCAP (8),
	// from the full set this test runs with.
	var full uint64
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "CapBnd:\t"); ok {
				full, _ = strconv.ParseUint(v, 16, 64)
			}
		}
	}
	less := fmt.Sprintf("%016x", full&^(1<<21|1<<8))
	me := strconv.Itoa(os.Getpid())
	for _, tt := range []struct {
		name    string
		pid1    bool
		file    string
		extra   string
		want    int
		wantOut []string
	}{
		{name: "exec mode giving up capabilities", file: prog, extra: "200100", want: 0,
			wantOut: []string{"Seccomp_filters:\t1", "uname refused", "CapBnd:\t" + less, "CapEff:\t" + less}},
		{name: "a bad mask", file: prog, extra: "2g", want: 126, wantOut: []string{"capabilities: want a hex mask"}},
		{name: "PID 1", pid1: true, file: prog, want: 0, wantOut: []string{"Seccomp_filters:\t1", "uname refused"}},
		{name: "exec mode", file: prog, want: 0, wantOut: []string{"Seccomp_filters:\t1", "uname refused", "ppid " + me}},
		{name: "no program", pid1: true, file: filepath.Join(dir, "none"), want: 126, wantOut: []string{"seccomp filter " + dir + "/none: open: No such file"}},
		{name: "not a program", file: short, want: 126, wantOut: []string{"not a filter program"}},
		{name: "refused by the kernel", pid1: true, file: refused, want: 126, wantOut: []string{"install: Invalid argument"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"-s", tt.file}
			if tt.extra != "" {
				args = append(args, "-x", tt.extra)
			}
			code, out := runInitOnce(t, tt.pid1, []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, append(args, "--", "sh", "-c", show)...)
			if code != tt.want {
				t.Errorf("exit %d, want %d; output %q", code, tt.want, out)
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("output %q lacks %q", out, w)
				}
			}
			if tt.want != 0 && strings.Contains(out, "Seccomp_filters") {
				t.Errorf("the command ran without its filter: %q", out)
			}
		})
	}
}

// TestShoalInitForwardsSignals: a signal to the init reaches the command —
// which dies of it (exit 128+N) or handles it — and the init outlives it.
func TestShoalInitForwardsSignals(t *testing.T) {
	needInit(t)
	for _, tt := range []struct {
		sig  unix.Signal
		args []string
		want int
	}{
		{unix.SIGTERM, []string{"sleep", "1000"}, 128 + 15},
		{unix.SIGHUP, []string{"sleep", "1000"}, 128 + 1},
		{unix.SIGINT, []string{"sh", "-c", `trap "echo got INT; exit 7" INT; echo ready; while :; do sleep 0.05; done`}, 7},
		{unix.SIGUSR2, []string{"sh", "-c", `trap "echo got USR2; exit 8" USR2; echo ready; while :; do sleep 0.05; done`}, 8},
	} {
		cmd, out := startInit(t, tt.args...)
		rd := bufio.NewReader(out)
		if tt.args[0] == "sh" {
			if l, err := rd.ReadString('\n'); l != "ready\n" {
				t.Fatalf("%v: first line %q %v", tt.sig, l, err)
			}
		} else {
			// As the runtime does before a stop (stop.go): until the init
			// has blocked the signal, a PID 1 would drop it.
			deadline := time.Now().Add(30 * time.Second)
			for !initproc.Ready(cmd.Process.Pid) {
				if time.Now().After(deadline) {
					t.Fatalf("%v: init never ready", tt.sig)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
		if err := cmd.Process.Signal(tt.sig); err != nil {
			t.Fatal(err)
		}
		if code := exitCode(t, cmd); code != tt.want {
			t.Errorf("%v to %q: init exit %d, want %d", tt.sig, tt.args, code, tt.want)
		}
	}
}

// TestShoalInitReapsOrphans: a process orphaned inside the namespace is
// handed to the init, which must reap it when it ends, while the command
// runs on.
func TestShoalInitReapsOrphans(t *testing.T) {
	needInit(t)
	cmd, _ := startInit(t, "sh", "-c", "(sleep 1 &); exec sleep 1000")
	pid := cmd.Process.Pid
	children := func() []string {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + strconv.Itoa(pid) + "/children")
		return strings.Fields(string(b))
	}
	// The orphan (sleep 1) joins the command as the init's child...
	deadline := time.Now().Add(30 * time.Second)
	for len(children()) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the orphan never became the init's child: children %v", children())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// ...and is gone, not a zombie, soon after it ends.
	deadline = time.Now().Add(30 * time.Second)
	for len(children()) != 1 {
		if time.Now().After(deadline) {
			var states []string
			for _, c := range children() {
				b, _ := os.ReadFile("/proc/" + c + "/stat")
				states = append(states, string(b))
			}
			t.Fatalf("orphan not reaped: %q", states)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := cmd.Process.Signal(unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := exitCode(t, cmd); code != 143 {
		t.Errorf("exit %d after SIGTERM, want 143", code)
	}
}

// TestShoalInitStatic: no loader (it must start in any image) and no
// writable segment — nothing of it is copied per container but the stack.
func TestShoalInitStatic(t *testing.T) {
	needInit(t)
	f, err := elf.Open(testInit)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("shoal-init has an interpreter: not static")
		}
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_W != 0 {
			t.Errorf("shoal-init has a writable segment of %d bytes", p.Memsz)
		}
	}
}

// TestContainerInitFootprint: what one container's init costs in memory,
// for a container started through the runtime — its anonymous memory is
// charged to the container's limit and copied per container. tini-static,
// the init before, had 52–56 KiB; shoal-init has its stack (one or two
// pages). The budget is a size, not a time.
func TestContainerInitFootprint(t *testing.T) {
	h := startHarness(t, testConfig(t))
	c, err := h.rt.RunContainer(context.Background(), Spec{Image: "busybox", Command: []string{"sleep", "1000"}})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !initproc.Ready(c.Pid) {
		if time.Now().After(deadline) {
			t.Fatal("init never ready")
		}
		time.Sleep(5 * time.Millisecond)
	}
	anon, rss := smapsKB(c.Pid, "Anonymous"), smapsKB(c.Pid, "Rss")
	t.Logf("container init: Rss %d KiB, Anonymous %d KiB, Pss %d KiB", rss, anon, pssKB(c.Pid))
	if rss == 0 || anon > 12 || rss > 16 {
		t.Errorf("container init uses Rss %d KiB (anonymous %d): want ≤ 16 KiB (≤ 12 anonymous)", rss, anon)
	}
}
