package runtime

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	runc "github.com/containerd/go-runc"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/api/timerslack"
)

// TestChildrenKeepDefaultTimerSlack: with this process's threads at a
// coarse timer slack, as the agent's are (api/timerslack), what the
// runtime starts keeps the slack the process had before: the node
// supervisor, a container's init and its process, and a health probe
// started by `runc exec` through go-runc.
func TestChildrenKeepDefaultTimerSlack(t *testing.T) {
	cfg := testConfig(t)
	if err := timerslack.Coarsen(3 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	want := strconv.FormatInt(timerslack.Child().Nanoseconds(), 10)
	if want == "3000000" || want == "0" {
		t.Fatalf("slack before Coarsen %s: cannot tell the two apart", want)
	}
	slackOf := func(path string) string {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	if got := slackOf("/proc/self/timerslack_ns"); got != "3000000" {
		t.Fatalf("this thread's slack %s after Coarsen, want 3000000", got)
	}

	a := startHarness(t, cfg)
	if _, ok := runc.Monitor.(slackMonitor); !ok {
		t.Fatalf("go-runc's monitor is %T, want slackMonitor", runc.Monitor)
	}
	var out bytes.Buffer
	cmd := exec.Command("cat", "/proc/self/timerslack_ns")
	cmd.Stdout = &out
	ec, err := runc.Monitor.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if status, _ := runc.Monitor.Wait(cmd, ec); status != 0 || strings.TrimSpace(out.String()) != want {
		t.Errorf("process started by the monitor: status %d, slack %q, want %s", status, out.String(), want)
	}

	c := a.run(t, Spec{Image: "busybox", Command: []string{"sleep", "3600"},
		Healthcheck: &api.HealthConfig{
			Test:     []string{"CMD-SHELL", "cat /proc/self/timerslack_ns > /tmp/probe-slack"},
			Interval: 100 * time.Millisecond, Timeout: 5 * time.Second, Retries: 3,
		}})
	sup, err := os.ReadFile(filepath.Join(cfg.Root, supervisorPidFile))
	if err != nil {
		t.Fatal(err)
	}
	if got := slackOf(fmt.Sprintf("/proc/%s/timerslack_ns", strings.TrimSpace(string(sup)))); got != want {
		t.Errorf("node supervisor: slack %s, want %s", got, want)
	}
	if got := slackOf(fmt.Sprintf("/proc/%d/timerslack_ns", c.Pid)); got != want {
		t.Errorf("container init %d: slack %s, want %s", c.Pid, got, want)
	}
	probe := fmt.Sprintf("/proc/%d/root/tmp/probe-slack", c.Pid)
	poll(t, "the health probe's record", 30*time.Second, func() bool {
		b, err := os.ReadFile(probe)
		return err == nil && len(bytes.TrimSpace(b)) > 0
	})
	if got := slackOf(probe); got != want {
		t.Errorf("health probe (runc exec): slack %s, want %s", got, want)
	}
}
