package runtime

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/api"
)

// execCollect runs a process in id and returns its stdout, stderr and exit
// code.
func execCollect(t *testing.T, rt *Runtime, id string, opts ExecOptions, stdin string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := rt.Exec(ctx, id, opts)
	if err != nil {
		t.Fatalf("exec %q: %v", opts.Args, err)
	}
	defer p.Close()
	if p.Stdin != nil {
		go func() {
			_, _ = io.WriteString(p.Stdin, stdin)
			p.Stdin.Close()
		}()
	}
	outCh, errCh := make(chan string, 1), make(chan string, 1)
	read := func(f *os.File, ch chan string) {
		b, _ := io.ReadAll(f)
		ch <- string(b)
	}
	if opts.Tty {
		go read(p.Console, outCh) // ends with EIO once the terminal is closed
		errCh <- ""
	} else {
		go read(p.Stdout, outCh)
		go read(p.Stderr, errCh)
	}
	select {
	case <-p.Done():
	case <-ctx.Done():
		t.Fatalf("exec %q did not end", opts.Args)
	}
	return <-outCh, <-errCh, p.ExitCode()
}

func TestExec(t *testing.T) {
	h := startHarness(t, testConfig(t))
	c := h.run(t, Spec{Image: "busybox", Command: []string{"sleep", "3600"}, Env: []string{"FROM_SPEC=1"},
		Mounts: []api.Mount{{Type: api.MountVolume, Source: "v1", Target: "/data"}, {Type: api.MountTmpfs, Target: "/scratch", TmpfsSize: 1 << 20}}})

	out, errOut, code := execCollect(t, h.rt, c.Name, ExecOptions{Args: []string{"sh", "-c", "echo out $FROM_SPEC $X; echo err >&2; exit 4"}, Env: []string{"X=y"}}, "")
	if out != "out 1 y\n" || errOut != "err\n" || code != 4 {
		t.Fatalf("exec: stdout %q stderr %q code %d", out, errOut, code)
	}
	out, _, code = execCollect(t, h.rt, c.ID, ExecOptions{Args: []string{"cat"}, Stdin: true}, "piped")
	if out != "piped" || code != 0 {
		t.Fatalf("exec cat: %q %d", out, code)
	}
	out, _, code = execCollect(t, h.rt, c.ID, ExecOptions{Args: []string{"sh", "-c", "tty; stty size"}, Tty: true, Width: 90, Height: 30}, "")
	if !strings.Contains(out, "/dev/pts/") || !strings.Contains(out, "30 90") || code != 0 {
		t.Fatalf("exec tty: %q %d", out, code)
	}
	out, _, _ = execCollect(t, h.rt, c.ID, ExecOptions{Args: []string{"sh", "-c", "echo kept > /data/f; grep -E ' /(data|scratch) ' /proc/mounts"}}, "")
	if !strings.Contains(out, "tmpfs /scratch tmpfs") || !strings.Contains(out, " /data ") {
		t.Fatalf("exec mounts: %q", out)
	}
	if out, _, _ = execCollect(t, h.rt, c.ID, ExecOptions{Args: []string{"sh", "-c", "id -u; pwd"}, User: "1000", Workdir: "/tmp"}, ""); out != "1000\n/tmp\n" {
		t.Fatalf("exec user/workdir: %q", out)
	}

	// Signals reach the process; its status says so.
	p, err := h.rt.Exec(context.Background(), c.ID, ExecOptions{Args: []string{"sleep", "100"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := p.ExitCode(); code != 128+9 {
		t.Fatalf("killed exec: code %d", code)
	}
	p.Close()

	// runc would refuse a missing command itself (ErrExecFailed); here the
	// command goes through the init, which installs the container's
	// seccomp filter, and the init says why it cannot run it and exits
	// 127, as docker's exec of a missing command does.
	if _, errOut, code := execCollect(t, h.rt, c.ID, ExecOptions{Args: []string{"no-such-cmd"}}, ""); code != 127 || !strings.Contains(errOut, "no-such-cmd") {
		t.Fatalf("missing command: exit %d, stderr %q", code, errOut)
	}
	if _, err := h.rt.Exec(context.Background(), c.ID, ExecOptions{Args: []string{"true"}, Workdir: "rel"}); !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("relative workdir: %v", err)
	}

	// The volume outlives the container, and is in use until it is removed.
	if err := h.rt.RemoveVolume("v1"); !errors.Is(err, ErrVolumeInUse) {
		t.Fatalf("remove a mounted volume: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := h.rt.Stop(ctx, c.ID, -1); err != nil {
		t.Fatal(err)
	}
	if _, err := h.rt.Exec(ctx, c.ID, ExecOptions{Args: []string{"true"}}); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("exec in a stopped container: %v", err)
	}
	if err := h.rt.RemoveVolume("v1"); !errors.Is(err, ErrVolumeInUse) {
		t.Fatalf("remove a volume of a stopped container: %v", err)
	}
	if err := h.rt.Remove(ctx, c.ID, false); err != nil {
		t.Fatal(err)
	}
	v, err := h.rt.Volume("v1")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(v.Mountpoint, "f")); err != nil || string(b) != "kept\n" {
		t.Fatalf("volume data after the container: %q %v", b, err)
	}
	if err := h.rt.RemoveVolume("v1"); err != nil {
		t.Fatal(err)
	}

	// A missing bind source fails the create, naming the mount.
	_, err = h.rt.RunContainer(ctx, Spec{Image: "busybox", Command: []string{"true"},
		Mounts: []api.Mount{{Type: api.MountBind, Source: "/nonexistent/src", Target: "/x"}}})
	if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), "type=bind,source=/nonexistent/src,target=/x") {
		t.Fatalf("missing bind source: %v", err)
	}
}

// childSubreaper reports PR_GET_CHILD_SUBREAPER of this process.
func childSubreaper(t *testing.T) int32 {
	t.Helper()
	var on int32
	if err := unix.Prctl(unix.PR_GET_CHILD_SUBREAPER, uintptr(unsafe.Pointer(&on)), 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	return on
}

// TestExecExitCodeWithoutSubreaper: the agent (this test process) is not a
// child subreaper, yet exec'd processes report their exit codes: the node
// supervisor is their parent once runc exits, reaps them and tells the
// agent. Codes from concurrent execs do not mix, a process that ends before
// runc does is not lost, and a new agent on the same Root (a restart) execs
// through the same supervisor.
func TestExecExitCodeWithoutSubreaper(t *testing.T) {
	if on := childSubreaper(t); on != 0 {
		t.Fatalf("PR_GET_CHILD_SUBREAPER = %d in the test process, want 0", on)
	}
	cfg := testConfig(t)
	a := startHarness(t, cfg)
	c := a.run(t, Spec{Image: "busybox", Command: []string{"sleep", "3600"}})

	cases := []struct {
		args []string
		want int
	}{
		{[]string{"true"}, 0}, // likely ends before runc exits
		{[]string{"false"}, 1},
		{[]string{"sh", "-c", "exit 7"}, 7},
		{[]string{"sh", "-c", "sleep 0.3; exit 42"}, 42},
		{[]string{"sh", "-c", "kill -TERM $$"}, 128 + 15},
		{[]string{"sh", "-c", "echo out; exit 3"}, 3},
	}
	var wg sync.WaitGroup
	got := make([]int, len(cases))
	for i, tc := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			p, err := a.rt.Exec(ctx, c.ID, ExecOptions{Args: tc.args})
			if err != nil {
				t.Errorf("exec %q: %v", tc.args, err)
				return
			}
			defer p.Close()
			go io.Copy(io.Discard, p.Stdout)
			go io.Copy(io.Discard, p.Stderr)
			select {
			case <-p.Done():
				got[i] = p.ExitCode()
			case <-ctx.Done():
				t.Errorf("exec %q did not end", tc.args)
			}
		}()
	}
	wg.Wait()
	for i, tc := range cases {
		if got[i] != tc.want {
			t.Errorf("exec %q: exit code %d, want %d", tc.args, got[i], tc.want)
		}
	}

	// The process is the supervisor's child, not this process's.
	p, err := a.rt.Exec(context.Background(), c.ID, ExecOptions{Args: []string{"sleep", "100"}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	sb, err := os.ReadFile(filepath.Join(cfg.Root, supervisorPidFile))
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if want := "PPid:\t" + strings.TrimSpace(string(sb)) + "\n"; !strings.Contains(string(st), want) {
		t.Errorf("exec'd process %d: want %q in its status:\n%s", p.Pid, want, st)
	}

	// The agent goes away: the process it started keeps running (its
	// status is lost to that agent), and a new agent execs as before.
	a.stop()
	select {
	case <-p.Done():
		if p.ExitCode() != -1 {
			t.Errorf("exec after its agent stopped: code %d, want -1", p.ExitCode())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Done not closed when Run ended")
	}
	if err := unix.Kill(p.Pid, 0); err != nil {
		t.Errorf("exec'd process gone with its agent: %v", err)
	}
	b := startHarness(t, cfg)
	if _, _, code := execCollect(t, b.rt, c.ID, ExecOptions{Args: []string{"sh", "-c", "exit 5"}}, ""); code != 5 {
		t.Errorf("exec after an agent restart: code %d, want 5", code)
	}
	if out, _, code := execCollect(t, b.rt, c.ID, ExecOptions{Args: []string{"sh", "-c", "tty; exit 6"}, Tty: true}, ""); code != 6 || !strings.Contains(out, "/dev/pts/") {
		t.Errorf("exec -t after an agent restart: %q code %d, want a pts and 6", out, code)
	}
	_ = unix.Kill(p.Pid, unix.SIGKILL)
}

// TestSupervisorExecBadRequests: exec requests the supervisor cannot act on
// get a clear error, start nothing and leave it serving.
func TestSupervisorExecBadRequests(t *testing.T) {
	cfg := testConfig(t)
	h := startHarness(t, cfg)
	c := h.run(t, Spec{Image: "busybox", Command: []string{"sleep", "3600"}})
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	ask := func(req supRequest, files ...*os.File) supReply {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := h.rt.sup.Dial(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		b, _ := json.Marshal(req)
		var oob []byte
		if len(files) > 0 {
			fds := make([]int, len(files))
			for i, f := range files {
				fds[i] = int(f.Fd())
			}
			oob = unix.UnixRights(fds...)
		}
		if _, _, err := conn.(*net.UnixConn).WriteMsgUnix(append(b, '\n'), oob, nil); err != nil {
			t.Fatal(err)
		}
		line, err := readLine(bufio.NewReader(conn), supMaxRequest)
		if err != nil {
			t.Fatal(err)
		}
		var rep supReply
		if err := json.Unmarshal(line, &rep); err != nil {
			t.Fatal(err)
		}
		return rep
	}
	dir := t.TempDir()
	good := supRequest{Op: "exec", ID: c.ID, Runc: h.rt.cfg.RuncBinary, RuncRoot: cfg.RuncRoot,
		Process: filepath.Join(dir, "process.json"), PidFile: filepath.Join(dir, "pid")}
	for _, tc := range []struct {
		name  string
		req   supRequest
		files []*os.File
		want  string
	}{
		{"no descriptors", good, nil, "want 3 file descriptors"},
		{"two descriptors", good, []*os.File{devnull, devnull}, "want 3 file descriptors"},
		{"four descriptors", good, []*os.File{devnull, devnull, devnull, devnull}, "more than 3 file descriptors"},
		{"relative process", func() supRequest { r := good; r.Process = "process.json"; return r }(), []*os.File{devnull, devnull, devnull}, "bad exec request"},
		{"bad id", func() supRequest { r := good; r.ID = "../x"; return r }(), []*os.File{devnull, devnull, devnull}, "bad exec request"},
		{"descriptors with watch", supRequest{Op: "watch"}, []*os.File{devnull}, "takes no file descriptors"},
	} {
		if rep := ask(tc.req, tc.files...); !strings.Contains(rep.Error, tc.want) || rep.Pid != 0 {
			t.Errorf("%s: reply %+v, want an error with %q", tc.name, rep, tc.want)
		}
	}
	// runc's refusal (no process.json) is marked as runc's.
	if rep := ask(good, devnull, devnull, devnull); !rep.RuncFailed || rep.Pid != 0 {
		t.Errorf("exec without a process file: reply %+v, want runc_failed", rep)
	}
	if _, _, code := execCollect(t, h.rt, c.ID, ExecOptions{Args: []string{"sh", "-c", "exit 9"}}, ""); code != 9 {
		t.Errorf("exec after bad requests: code %d, want 9", code)
	}
}
