package runtime

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
	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/api"
)

// Health check defaults, as Docker's.
const (
	DefaultHealthInterval = 30 * time.Second
	DefaultHealthTimeout  = 30 * time.Second
	DefaultHealthRetries  = 3
)

// healthStep applies one probe result with Docker's rules: a success makes
// the container healthy and resets the failure streak; a failure during the
// start period (before the first success) is not counted; otherwise retries
// consecutive failures make it unhealthy.
func healthStep(status string, streak int, ok, inStartPeriod bool, retries int) (string, int) {
	if ok {
		return api.HealthHealthy, 0
	}
	if inStartPeriod && status == api.HealthStarting {
		return status, streak
	}
	streak++
	if streak >= retries {
		return api.HealthUnhealthy, streak
	}
	return status, streak
}

// healthArgs turns a HEALTHCHECK test into the argv to exec.
func healthArgs(test []string) ([]string, error) {
	if len(test) == 0 {
		return nil, fmt.Errorf("%w: empty health check", ErrInvalidSpec)
	}
	switch test[0] {
	case "CMD":
		if len(test) < 2 {
			return nil, fmt.Errorf("%w: health check CMD without a command", ErrInvalidSpec)
		}
		return test[1:], nil
	case "CMD-SHELL":
		return []string{"/bin/sh", "-c", strings.Join(test[1:], " ")}, nil
	default:
		// A bare command, as `--health-cmd` gives it: run it through a shell.
		return []string{"/bin/sh", "-c", strings.Join(test, " ")}, nil
	}
}

// startHealth starts the health loop of c's current run, if it has a health
// check. The loop is owned by Run and ends when the container exits, is
// removed, or Run's context ends.
func (r *Runtime) startHealth(c *container) {
	r.mu.Lock()
	hc := c.rec.Health
	if hc == nil || c.stopHealth != nil {
		r.mu.Unlock()
		return
	}
	ctx, cancel := context.WithCancel(r.runCtx)
	c.stopHealth = cancel
	started := c.rec.StartedAt
	r.mu.Unlock()

	if !r.spawn(func() {
		defer cancel()
		r.healthLoop(ctx, c, *hc, started)
	}) {
		cancel()
	}
}

func (r *Runtime) healthLoop(ctx context.Context, c *container, hc api.HealthConfig, started time.Time) {
	interval, timeout, retries := hc.Interval, hc.Timeout, hc.Retries
	if interval <= 0 {
		interval = DefaultHealthInterval
	}
	if timeout <= 0 {
		timeout = DefaultHealthTimeout
	}
	if retries <= 0 {
		retries = DefaultHealthRetries
	}
	args, err := healthArgs(hc.Test)
	if err != nil {
		r.log.Warn("health check disabled", "id", ShortID(c.rec.ID), "err", err)
		return
	}
	streak := 0
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ok, out := r.probe(ctx, c, args, timeout)
		if ctx.Err() != nil {
			return
		}
		r.mu.Lock()
		if c.removed || c.rec.State != api.ContainerRunning {
			r.mu.Unlock()
			return
		}
		inStart := hc.StartPeriod > 0 && time.Since(started) < hc.StartPeriod
		prev := c.health
		c.health, streak = healthStep(c.health, streak, ok, inStart, retries)
		now := c.health
		r.mu.Unlock()
		if now != prev {
			r.log.Info("health changed", "id", ShortID(c.rec.ID), "health", now, "output", out)
			r.emit(c)
		}
		t.Reset(interval)
	}
}

// probe runs one health check command in the container through `runc exec`
// with the container's own process settings, and reports whether it exited 0
// within timeout, with the tail of its output.
func (r *Runtime) probe(ctx context.Context, c *container, args []string, timeout time.Duration) (bool, string) {
	r.mu.Lock()
	id := c.rec.ID
	r.mu.Unlock()
	p := r.pathsOf(c)
	var s specs.Spec
	b, err := readCapped(p.bundle, filepath.Base(p.config), 16<<20)
	if err == nil {
		err = json.Unmarshal(b, &s)
	}
	if err != nil || s.Process == nil {
		return false, fmt.Sprintf("read bundle config: %v", err)
	}
	proc := *s.Process
	proc.Args = args
	proc.Terminal = false

	pidPath := p.healthPid
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

	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err = r.runc.Exec(pctx, id, proc, &runc.ExecOpts{IO: probeIO{pw}, PidFile: pidPath})
	pw.Close()
	timedOut := pctx.Err() != nil
	if timedOut {
		// runc was killed; the probe process may live on: kill it.
		killProbe(p.bundle, filepath.Base(p.healthPid))
	}
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

// probeOutputCap is how much of a health probe's output is kept.
const probeOutputCap = 4096

// killProbe SIGKILLs the process whose pid runc wrote in dir/name; it is a
// child of the (killed) runc exec, so its reaper is not us.
func killProbe(dir, name string) {
	b, err := readCapped(dir, name, maxSmallFile)
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	_ = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
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
