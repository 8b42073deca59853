package runtime

import (
	"context"

	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/health"
	"github.com/shoal-org/shoal/runtime/initproc"
)

// startHealth starts the health loop of c's current run, if it has a health
// check: its spec's as given, else its image's within health.FromImage's
// bounds. The loop is owned by Run and ends when the container exits, is
// removed, or Run's context ends. The rules and the probe are
// runtime/health's.
func (r *Runtime) startHealth(c *container) {
	r.mu.Lock()
	hc := c.rec.Health
	if hc == nil || c.stopHealth != nil {
		r.mu.Unlock()
		return
	}
	check := *hc
	if c.rec.Spec.Healthcheck == nil {
		// The image's, bounded (health.FromImage says why), also for a
		// container recorded before the bounds.
		check = health.FromImage(check)
	}
	ctx, cancel := context.WithCancel(r.runCtx)
	c.stopHealth = cancel
	started := c.rec.StartedAt
	id := c.rec.ID
	r.mu.Unlock()

	p := r.pathsOf(c)
	cgroup := r.cgroupOf(id)
	t := healthTarget{r: r, c: c, Prober: health.Prober{
		Runc: r.runc.r, ID: id, Bundle: p.Bundle, Config: p.Config, PidFile: p.HealthPid,
		// A timed-out probe's pid is checked as a stop checks the init's.
		Kill: func(pid int) error { return initproc.Signal(pid, cgroup, unix.SIGKILL) },
	}}
	if !r.spawn(func() {
		defer cancel()
		health.Loop(ctx, check, started, t, r.log.With("id", ShortID(id)))
	}) {
		cancel()
	}
}

// healthTarget is c as its health loop sees it (health.Container): the
// status is c.health, guarded by r.mu.
type healthTarget struct {
	r *Runtime
	c *container
	health.Prober
}

func (t healthTarget) Update(step func(string) string) (prev, now string, running bool) {
	t.r.mu.Lock()
	defer t.r.mu.Unlock()
	if t.c.removed || t.c.rec.State != api.ContainerRunning {
		return "", "", false
	}
	prev = t.c.health
	t.c.health = step(prev)
	return prev, t.c.health, true
}

func (t healthTarget) Changed() { t.r.emit(t.c) }
