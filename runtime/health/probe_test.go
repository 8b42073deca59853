package health

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	runc "github.com/containerd/go-runc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
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

// TestTimedOutProbeStartedLateIsKilled: a runc exec that starts its probe
// only after the probe's timeout (a loaded node) must not leave the probe
// running. Killing runc at the timeout, as Probe did, left the probe alive
// with no pid file to find it by; the fake runc here behaves like the real
// one: once its child has exec'd the probe, killing runc does not stop the
// probe, and the pid file appears when runc gets to write it.
func TestTimedOutProbeStartedLateIsKilled(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"process":{"args":["true"],"cwd":"/"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	const probePid = 4242
	killed := make(chan int, 4)
	probeDead := make(chan struct{})
	var once sync.Once
	p := Prober{
		Bundle: dir, Config: filepath.Join(dir, "config.json"), PidFile: filepath.Join(dir, "health.pid"),
		Kill: func(pid int) error {
			killed <- pid
			if pid == probePid {
				once.Do(func() { close(probeDead) })
			}
			return nil
		},
	}
	started := make(chan struct{})
	p.exec = func(ctx context.Context, id string, proc specs.Process, opts *runc.ExecOpts) error {
		// The probe starts (and runc writes its pid) only once the
		// timeout has passed, whether or not runc is killed meanwhile.
		go func() {
			<-started
			_ = os.WriteFile(opts.PidFile, []byte(strconv.Itoa(probePid)), 0o600)
		}()
		select {
		case <-ctx.Done():
			return ctx.Err() // runc killed; the probe lives on
		case <-probeDead:
			return errors.New("exit status 137")
		}
	}
	go func() {
		// After the 50 ms timeout: the probe starts.
		time.Sleep(200 * time.Millisecond)
		close(started)
	}()
	ok, msg := p.Probe(context.Background(), []string{"sleep", "1000"}, 50*time.Millisecond)
	if ok || !strings.Contains(msg, "timed out") {
		t.Fatalf("Probe = %v, %q; want a timeout", ok, msg)
	}
	select {
	case pid := <-killed:
		if pid != probePid {
			t.Fatalf("killed pid %d, want the probe's %d", pid, probePid)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the probe started after the timeout was never killed")
	}
}
