package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
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
	p := r.pathsOf(id)
	var s specs.Spec
	b, err := os.ReadFile(p.config)
	if err == nil {
		err = json.Unmarshal(b, &s)
	}
	if err != nil || s.Process == nil {
		return false, fmt.Sprintf("read bundle config: %v", err)
	}
	proc := *s.Process
	proc.Args = args
	proc.Terminal = false

	outPath := filepath.Join(p.dir, "health.out")
	pidPath := filepath.Join(p.dir, "health.pid")
	out, err := os.OpenFile(outPath, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return false, fmt.Sprintf("open health output: %v", err)
	}
	defer out.Close()
	_ = os.Remove(pidPath)

	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err = r.runc.Exec(pctx, id, proc, &runc.ExecOpts{IO: fileIO{out}, PidFile: pidPath})
	if pctx.Err() != nil {
		// runc was killed; the probe process may live on: kill and reap it.
		killAndReap(pidPath)
		return false, fmt.Sprintf("health check timed out after %s", timeout)
	}
	tail := make([]byte, 4096)
	n, _ := out.ReadAt(tail, 0)
	msg := strings.TrimSpace(string(tail[:n]))
	if err != nil {
		return false, msg
	}
	return true, msg
}

// killAndReap SIGKILLs the process in pidFile and, when it became our child
// (its runc parent died and we are the subreaper), reaps it.
func killAndReap(pidFile string) {
	b, err := os.ReadFile(pidFile)
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
	_, _ = unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 2000)
	var ws unix.WaitStatus
	_, _ = unix.Wait4(pid, &ws, unix.WNOHANG, nil)
}
