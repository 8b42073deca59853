package runtime

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/api"
)

func TestInCgroup(t *testing.T) {
	const cg = "/shoal-ab12/0123abcd"
	for _, tt := range []struct {
		name, listing string
		want          bool
	}{
		{"v1 hierarchies", "12:pids:/shoal-ab12/0123abcd\n11:memory:/shoal-ab12/0123abcd\n0::/\n", true},
		{"v2 only", "0::/shoal-ab12/0123abcd\n", true},
		{"another container", "12:pids:/shoal-ab12/0123abcdef\n0::/shoal-ab12/0123abcdef\n", false},
		{"a child cgroup", "0::/shoal-ab12/0123abcd/sub\n", false},
		{"the parent", "12:pids:/shoal-ab12\n", false},
		{"empty", "", false},
		{"malformed", "/shoal-ab12/0123abcd\n", false},
	} {
		if got := inCgroup(tt.listing, cg); got != tt.want {
			t.Errorf("%s: inCgroup = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestSignalInitRefusesStranger: a pid that is not in the container's
// cgroup (here: a process of our own, as after a pid reuse) gets no
// signal.
func TestSignalInitRefusesStranger(t *testing.T) {
	cmd := exec.Command("sleep", "100")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	if err := signalInit(cmd.Process.Pid, "/shoal-none/nobody", unix.SIGTERM); !errors.Is(err, errNotInit) {
		t.Fatalf("signalInit of a stranger = %v, want errNotInit", err)
	}
	if err := unix.Kill(cmd.Process.Pid, 0); err != nil {
		t.Fatalf("the stranger is gone: %v", err)
	}
	if err := signalInit(0, "/x", unix.SIGTERM); !errors.Is(err, errNotInit) {
		t.Fatalf("signalInit(0) = %v, want errNotInit", err)
	}
}

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

func TestStatusTakesTERM(t *testing.T) {
	for _, tc := range []struct {
		name, status string
		ready, known bool
	}{
		{"runc's init, catching everything", "Name:\trunc:[2:INIT]\nSigBlk:\t0000000000000000\nSigCgt:\tfffffffe7fc1feff\n", false, true},
		{"init blocking every signal", "Name:\tshoal-init\nSigBlk:\tfffffffffffbfeff\nSigCgt:\t0000000000000000\n", true, true},
		{"init catching SIGTERM", "Name:\tinit\nSigBlk:\t0000000000000000\nSigCgt:\t0000000000004000\n", true, true},
		{"nothing set up yet", "Name:\tshoal-init\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\nSigCgt:\t0000000000000000\n", false, false},
	} {
		ready, known := statusTakesTERM(tc.status)
		if ready != tc.ready || known != tc.known {
			t.Errorf("%s: ready %v known %v, want %v %v", tc.name, ready, known, tc.ready, tc.known)
		}
	}
}
