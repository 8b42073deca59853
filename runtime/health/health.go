// Package health runs a container's health check as Docker does: a probe
// command exec'd in the container every interval, with a timeout, whose
// successes and failures move the container between starting, healthy and
// unhealthy (Step).
//
// It exists apart from the runtime because the rules are pure (Step, Args,
// table-tested without a container) and the loop needs of its container
// only what the Container interface gives: a probe and an atomic update of
// the status the runtime keeps. The runtime owns the loop's goroutine and
// its lifetime (one loop per run of a container, ended at its exit); the
// probe through `runc exec` is Prober.
package health

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/ocispec"
)

// Health check defaults, as Docker's.
const (
	DefaultInterval = 30 * time.Second
	DefaultTimeout  = 30 * time.Second
	DefaultRetries  = 3
)

// Bounds of a health check an image supplies (its HEALTHCHECK), applied by
// FromImage. Whoever pulls an image does not choose its config as they
// choose a service's spec: an interval of 1ns, as given, ran `runc exec`
// back to back on the host's CPU, outside the container's limits. A
// service's own health check is taken as its spec says.
const (
	MinImageInterval    = time.Second      // Docker's default is 30 s
	MinImageTimeout     = time.Second      // a probe needs a runc exec
	MaxImageTimeout     = 10 * time.Minute // a probe holds a runc exec that long
	MaxImageStartPeriod = time.Hour        // failures count after it at the latest
)

// FromImage returns hc, an image's health check, with its interval and
// timeout at least a second, its timeout at most MaxImageTimeout and its
// start period at most MaxImageStartPeriod. Zero (or negative) fields stay
// as they are: Loop gives them Docker's defaults.
func FromImage(hc api.HealthConfig) api.HealthConfig {
	if hc.Interval > 0 {
		hc.Interval = max(hc.Interval, MinImageInterval)
	}
	if hc.Timeout > 0 {
		hc.Timeout = min(max(hc.Timeout, MinImageTimeout), MaxImageTimeout)
	}
	hc.StartPeriod = min(hc.StartPeriod, MaxImageStartPeriod)
	return hc
}

// Step applies one probe result with Docker's rules: a success makes
// the container healthy and resets the failure streak; a failure during the
// start period (before the first success) is not counted; otherwise retries
// consecutive failures make it unhealthy.
func Step(status string, streak int, ok, inStartPeriod bool, retries int) (string, int) {
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

// Args turns a HEALTHCHECK test into the argv to exec. Its errors wrap
// ocispec.ErrInvalidSpec.
func Args(test []string) ([]string, error) {
	if len(test) == 0 {
		return nil, fmt.Errorf("%w: empty health check", ocispec.ErrInvalidSpec)
	}
	switch test[0] {
	case "CMD":
		if len(test) < 2 {
			return nil, fmt.Errorf("%w: health check CMD without a command", ocispec.ErrInvalidSpec)
		}
		return test[1:], nil
	case "CMD-SHELL":
		return []string{"/bin/sh", "-c", strings.Join(test[1:], " ")}, nil
	default:
		// A bare command, as `--health-cmd` gives it: run it through a shell.
		return []string{"/bin/sh", "-c", strings.Join(test, " ")}, nil
	}
}

// Container is what a health loop needs of the container it checks. The
// loop calls it from its own goroutine only.
type Container interface {
	// Probe runs args in the container and reports whether they exited 0
	// within timeout, with the tail of their output (Prober.Probe).
	Probe(ctx context.Context, args []string, timeout time.Duration) (ok bool, output string)
	// Update replaces the container's health status by step(status),
	// under the lock that guards the status, and returns it before and
	// after. It reports running false, without calling step, once the
	// container was removed or is no longer running: the loop ends.
	Update(step func(status string) string) (prev, now string, running bool)
	// Changed is called, with no lock held, after an Update that changed
	// the status.
	Changed()
}

// Loop checks c with hc every interval (defaults for the zero fields)
// until ctx ends or c stops running; started is when c's run began (its
// start period counts from there). It blocks; log carries the container's
// ID.
func Loop(ctx context.Context, hc api.HealthConfig, started time.Time, c Container, log *slog.Logger) {
	interval, timeout, retries := hc.Interval, hc.Timeout, hc.Retries
	if interval <= 0 {
		interval = DefaultInterval
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if retries <= 0 {
		retries = DefaultRetries
	}
	args, err := Args(hc.Test)
	if err != nil {
		log.Warn("health check disabled", "err", err)
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
		ok, out := c.Probe(ctx, args, timeout)
		if ctx.Err() != nil {
			return
		}
		prev, now, running := c.Update(func(status string) string {
			inStart := hc.StartPeriod > 0 && time.Since(started) < hc.StartPeriod
			status, streak = Step(status, streak, ok, inStart, retries)
			return status
		})
		if !running {
			return
		}
		if now != prev {
			log.Info("health changed", "health", now, "output", out)
			c.Changed()
		}
		t.Reset(interval)
	}
}
