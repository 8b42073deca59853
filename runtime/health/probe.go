package health

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	runc "github.com/containerd/go-runc"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/shoal-org/shoal/runtime/ocispec"
	"github.com/shoal-org/shoal/runtime/supervisor"
)

// Prober runs a container's health check command through `runc exec`.
type Prober struct {
	Runc *runc.Runc
	ID   string // the container's
	// Bundle is the container's bundle dir; Config (its config.json) and
	// PidFile (where runc writes the probe's pid) are paths in it.
	Bundle, Config, PidFile string
	// Kill SIGKILLs pid, the probe of a runc exec killed at the timeout,
	// only if it is still a process of the container, and reports an
	// error otherwise: the pid comes from a file, and once the probe is
	// reaped (by whichever process adopted it) the pid may be another
	// process's. The runtime's is initproc.Signal with the container's
	// cgroup. Nil kills nothing.
	Kill func(pid int) error

	// exec stands in for Runc.Exec in tests.
	exec func(ctx context.Context, id string, proc specs.Process, opts *runc.ExecOpts) error
}

// startGrace is how long a timed-out probe's runc exec may take to start
// the probe (and write its pid) before runc itself is killed; killWait is
// how long runc then has to exit once its probe is killed.
const (
	startGrace = 10 * time.Second
	killWait   = 10 * time.Second
)

// Probe runs one health check command in the container through `runc exec`
// with the container's own process settings, and reports whether it exited 0
// within timeout, with the tail of its output.
func (p Prober) Probe(ctx context.Context, args []string, timeout time.Duration) (bool, string) {
	id := p.ID
	var s specs.Spec
	b, err := supervisor.ReadCapped(p.Bundle, filepath.Base(p.Config), 16<<20)
	if err == nil {
		err = json.Unmarshal(b, &s)
	}
	if err != nil || s.Process == nil {
		return false, fmt.Sprintf("read bundle config: %v", err)
	}
	proc := *s.Process
	proc.Args = args
	proc.Terminal = false
	// Through the init when it installs the container's filter: runc
	// installs none on the probe.
	ocispec.WrapExec(&s, &proc)

	pidPath := p.PidFile
	_ = os.Remove(pidPath)
	// The probe's output goes through a pipe of which we keep the first
	// probeOutputCap bytes: a probe printing /dev/zero costs neither disk
	// nor agent memory.
	pr, pw, err := os.Pipe()
	if err != nil {
		return false, fmt.Sprintf("health output pipe: %v", err)
	}
	outCh := make(chan []byte, 1)
	go func() {
		defer pr.Close()
		b, _ := io.ReadAll(io.LimitReader(pr, probeOutputCap))
		_, _ = io.Copy(io.Discard, pr) // until every writer is gone or the deadline
		outCh <- b
	}()

	// runc exec runs under a context of its own, not the probe's timeout:
	// a runc killed after its child exec'd the probe but before it wrote
	// the pid file leaves the probe running with no pid to kill it by (a
	// loaded node hit that window with short timeouts, and the container
	// kept every such probe). So at the timeout the probe is killed by
	// the pid runc writes once it has started it, and runc exits with it;
	// runc itself is killed only when it has not started the probe within
	// startGrace, or when ctx ends (the container is going away).
	exec := p.exec
	if exec == nil {
		exec = p.Runc.Exec
	}
	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	done := make(chan error, 1)
	ectx := runc.WithExtraEnv(rctx, supervisor.RuncProcs)
	go func() { done <- exec(ectx, id, proc, &runc.ExecOpts{IO: probeIO{pw}, PidFile: pidPath}) }()
	timer := time.NewTimer(timeout)
	timedOut := false
	select {
	case err = <-done:
	case <-timer.C:
		timedOut = true
		p.stopTimedOut(done, rcancel)
	case <-ctx.Done():
		timedOut = true
		rcancel()
		<-done
	}
	timer.Stop()
	pw.Close()
	// Descendants of the probe may hold the pipe open: stop reading soon.
	_ = pr.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	out := <-outCh
	if timedOut {
		return false, fmt.Sprintf("health check timed out after %s", timeout)
	}
	msg := strings.TrimSpace(string(out))
	if err != nil {
		return false, msg
	}
	return true, msg
}

const (
	// probeOutputCap is how much of a health probe's output is kept.
	probeOutputCap = 4096
	// maxPidFile caps the probe's pid file.
	maxPidFile = 4 << 10
)

// stopTimedOut ends a probe past its timeout and waits for its runc exec
// (done) to return: the probe is killed as soon as runc has written its
// pid; runc is killed (cancel) if it has not within startGrace, or has
// not exited killWait after its probe was.
func (p Prober) stopTimedOut(done <-chan error, cancel context.CancelFunc) {
	if p.Kill == nil {
		cancel()
		<-done
		return
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	grace := time.NewTimer(startGrace)
	defer grace.Stop()
	for !p.killProbe() {
		select {
		case <-done:
			// runc ended on its own: its probe ended with it, or it never
			// started one; a pid written meanwhile is still killed.
			p.killProbe()
			return
		case <-grace.C:
			cancel()
			<-done
			p.killProbe()
			return
		case <-tick.C:
		}
	}
	select {
	case <-done:
	case <-time.After(killWait):
		cancel()
		<-done
	}
}

// killProbe SIGKILLs the process whose pid runc wrote in the pid file,
// through Kill, which checks it is still the container's; it is a child of
// the (killed) runc exec, so its reaper is not us.
// It reports whether there was a pid to kill (a Kill refused because the
// process is gone counts: there is nothing left to wait for).
func (p Prober) killProbe() bool {
	if p.Kill == nil {
		return true
	}
	b, err := supervisor.ReadCapped(p.Bundle, filepath.Base(p.PidFile), maxPidFile)
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return false
	}
	_ = p.Kill(pid)
	return true
}

// probeIO gives runc exec (and so the probe) a pipe as stdout and stderr
// and /dev/null as stdin.
type probeIO struct{ w *os.File }

func (i probeIO) Close() error          { return nil }
func (i probeIO) Stdin() io.WriteCloser { return nil }
func (i probeIO) Stdout() io.ReadCloser { return nil }
func (i probeIO) Stderr() io.ReadCloser { return nil }

// Set implements runc.IO.
func (i probeIO) Set(cmd *exec.Cmd) {
	cmd.Stdin = nil
	cmd.Stdout = i.w
	cmd.Stderr = i.w
}
