package runtime

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

// TestStopWithoutRuncKill: a graceful stop signals the container's init
// itself: no `runc kill` process per stop (an update stops many containers
// at once, on the CPU their replacements start on).
func TestStopWithoutRuncKill(t *testing.T) {
	cfg := testConfig(t)
	real, err := exec.LookPath("runc")
	if err != nil {
		t.Skip("no runc")
	}
	dir := t.TempDir()
	calls := filepath.Join(dir, "calls")
	wrapper := filepath.Join(dir, "runc")
	script := "#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in kill|run|delete|state) echo \"$a\" >> " + calls + ";; esac; done\nexec " + real + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg.RuncBinary = wrapper
	h := startHarness(t, cfg)
	c := h.run(t, Spec{Image: "busybox", Command: []string{"sleep", "1000"}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err = h.rt.Stop(ctx, c.ID, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if c.State != api.ContainerExited || c.ExitCode != 143 {
		t.Errorf("state %s exit %d, want exited 143 (SIGTERM)", c.State, c.ExitCode)
	}
	b, _ := os.ReadFile(calls)
	if !strings.Contains(string(b), "run") {
		t.Fatalf("the wrapper saw no runc run (%q): the test does not watch runc", b)
	}
	if strings.Contains(string(b), "kill") {
		t.Errorf("runc calls %q: a graceful stop ran runc kill", strings.Fields(string(b)))
	}
}
