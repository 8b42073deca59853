package test

import (
	"bytes"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-org/shoal/test/harness"
)

// lockedBuffer is a bytes.Buffer a command writes while the test reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestRunSignalForwarded: Ctrl-C (SIGINT) or SIGTERM to an attached `shoal
// run` reaches the container, as docker run's signal proxy: the container's
// trap runs, the CLI exits with the container's code, and --rm removes it.
// The CLI used to exit 130 at once, leaving the container running (and,
// with --rm, never removed).
func TestRunSignalForwarded(t *testing.T) {
	c := harness.New(t, 1)
	c.StartAll(t)
	h := c.Host(1)
	h.MustCLI(t, "image", "import", busyboxTar(t), "bb:1")

	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		name := map[syscall.Signal]string{syscall.SIGINT: "sigint", syscall.SIGTERM: "sigterm"}[sig]
		out := &lockedBuffer{}
		cmd := exec.Command(c.Bin, "--host", "unix://"+h.Socket, "run", "--rm", "--name", name,
			"bb:1", "sh", "-c", `trap "echo trapped; exit 7" TERM INT; echo started; while :; do sleep 0.2; done`)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		harness.Eventually(t, 30*time.Second, func() (bool, string) {
			return strings.Contains(out.String(), "started"), "output " + out.String()
		}, "the container started (", name, ")")
		if err := cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var err error
		select {
		case err = <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("%v: shoal run did not end; output %q", sig, out.String())
		}
		if code := exitCode(err); code != 7 || !strings.Contains(out.String(), "trapped") {
			t.Fatalf("%v: shoal run exited %d (%v), output %q; want 7 and the trap's line", sig, code, err, out.String())
		}
		if ps := h.MustCLI(t, "ps", "-a", "-q"); strings.TrimSpace(ps) != "" {
			t.Fatalf("%v: --rm left containers: %q", sig, ps)
		}
	}
}
