package initproc

import (
	"errors"
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"
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
	if err := Signal(cmd.Process.Pid, "/shoal-none/nobody", unix.SIGTERM); !errors.Is(err, ErrNotInit) {
		t.Fatalf("signalInit of a stranger = %v, want ErrNotInit", err)
	}
	if err := unix.Kill(cmd.Process.Pid, 0); err != nil {
		t.Fatalf("the stranger is gone: %v", err)
	}
	if err := Signal(0, "/x", unix.SIGTERM); !errors.Is(err, ErrNotInit) {
		t.Fatalf("Signal(0) = %v, want ErrNotInit", err)
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
