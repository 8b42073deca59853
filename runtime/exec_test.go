package runtime

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

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

	if _, err := h.rt.Exec(context.Background(), c.ID, ExecOptions{Args: []string{"no-such-cmd"}}); !errors.Is(err, ErrExecFailed) || !strings.Contains(err.Error(), "no-such-cmd") {
		t.Fatalf("missing command: %v", err)
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
