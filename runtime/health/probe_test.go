package health

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/runtime/initproc"
)

// TestKillProbeChecksTheProcess: a timed-out probe's pid, read from its
// pid file, is killed only while it is a process of the container (the
// runtime's initproc.Signal check): a pid reused by a process of the
// host, outside the container's cgroup, gets no signal.
func TestKillProbeChecksTheProcess(t *testing.T) {
	stranger := exec.Command("sleep", "100")
	if err := stranger.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = stranger.Wait(); close(exited) }()
	defer func() { _ = stranger.Process.Kill() }()
	dir := t.TempDir()
	p := Prober{Bundle: dir, PidFile: filepath.Join(dir, "health.pid")}
	if err := os.WriteFile(p.PidFile, []byte(strconv.Itoa(stranger.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	const container = "/shoal-test/0123abcd" // not the stranger's cgroup
	p.Kill = func(pid int) error { return initproc.Signal(pid, container, unix.SIGKILL) }
	p.killProbe()
	select {
	case <-exited:
		t.Fatal("the probe's kill reached a process outside the container")
	case <-time.After(200 * time.Millisecond):
	}

	// The same process, were it in that cgroup: killed.
	listing, err := os.ReadFile("/proc/" + strconv.Itoa(stranger.Process.Pid) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(listing), "\n")
	parts := strings.SplitN(first, ":", 3)
	if len(parts) != 3 {
		t.Fatalf("cgroup listing %q", listing)
	}
	p.Kill = func(pid int) error { return initproc.Signal(pid, parts[2], unix.SIGKILL) }
	p.killProbe()
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("a probe in the container's cgroup was not killed")
	}
}
