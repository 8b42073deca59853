package runtime

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	runc "github.com/containerd/go-runc"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/netns"
	"github.com/shoal-org/shoal/runtime/ocispec"
)

// Start starts a created (or exited) container and returns once its process
// runs. Starting a running container is a no-op.
func (r *Runtime) Start(ctx context.Context, idOrName string) (api.Container, error) {
	if err := r.waitReady(ctx); err != nil {
		return api.Container{}, err
	}
	c, err := r.lookup(idOrName)
	if err != nil {
		return api.Container{}, err
	}
	c.op.Lock()
	defer c.op.Unlock()
	return r.startHeld(ctx, c, idOrName)
}

// startHeld is Start once c is found and its lifecycle lock (op) is held.
func (r *Runtime) startHeld(ctx context.Context, c *container, idOrName string) (api.Container, error) {
	r.mu.Lock()
	if c.removed {
		r.mu.Unlock()
		return api.Container{}, fmt.Errorf("start %s: %w", idOrName, ErrNotFound)
	}
	if c.rec.State == api.ContainerRunning {
		out := c.apiLocked()
		r.mu.Unlock()
		return out, nil
	}
	rec := c.rec
	r.mu.Unlock()

	if err := r.startLocked(ctx, c, rec); err != nil {
		r.mu.Lock()
		c.rec.Error = err.Error()
		r.mu.Unlock()
		_ = r.save(c)
		return api.Container{}, fmt.Errorf("start %s: %w", ShortID(rec.ID), err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return c.apiLocked(), nil
}

func (r *Runtime) startLocked(ctx context.Context, c *container, rec record) error {
	id := rec.ID
	p := r.pathsOf(c)
	// After a reboot the run dir is empty: the rootfs mount point is made
	// again here, the bundle below.
	rebuild := p.run != "" && !fileExists(p.config)
	if rebuild {
		if err := os.MkdirAll(p.rootfs, 0o711); err != nil {
			return fmt.Errorf("create %s: %w", p.rootfs, err)
		}
	}
	if rec.State == api.ContainerExited {
		if err := r.awaitRelease(ctx, c); err != nil {
			return err
		}
		// A restart: clear what the last run left behind.
		_ = r.runcDelete(ctx, id)
		_ = os.Remove(filepath.Join(p.dir, exitRecordFile))
		// The state dir of an init of an older Shoal, which the container
		// could write: gone, so nothing reads it again.
		_ = os.RemoveAll(p.state)
	}
	if !isMountpoint(p.rootfs) { // after a reboot
		if err := mountOverlay(r.rootfsLayers(rec), p.upper, p.work, p.rootfs); err != nil {
			return err
		}
	}
	if !netns.IsMount(p.netns) {
		_ = netns.Remove(p.netns)
		if err := netns.Create(p.netns); err != nil {
			return err
		}
	}
	ip := rec.IP
	if ip == "" && r.cfg.Network != nil {
		var err error
		if ip, err = r.cfg.Network.Attach(ctx, id, p.netns); err != nil {
			return fmt.Errorf("attach network: %w", err)
		}
		if err := os.WriteFile(p.hosts, []byte(ocispec.HostsFile(rec.Hostname, ip, rec.Spec.ExtraHosts)), 0o644); err != nil {
			return fmt.Errorf("write hosts: %w", err)
		}
	}
	if rebuild {
		rec.IP = ip
		if err := r.rebuildBundle(p, rec); err != nil {
			return err
		}
	}
	_ = os.Remove(p.pidFile)
	// The slot exists before the start, so an exit reported before we
	// mark the container running is not missed.
	r.sup.Forget(id)
	r.sup.Slot(id)
	bundle := "" // the old layout: Dir
	if p.bundle != p.dir {
		bundle = p.bundle
	}
	pid, err := r.sup.Start(ctx, supRequest{
		ID: id, Dir: p.dir, Bundle: bundle, Runc: r.cfg.RuncBinary, RuncRoot: r.cfg.RuncRoot,
		RuncLog: p.initLog, PidFile: p.pidFile,
		LogMaxSize: r.cfg.LogMaxSize, LogMaxFiles: r.cfg.LogMaxFiles,
	})
	if err != nil {
		r.sup.Forget(id)
		// A start cut short (ctx) may have left runc's container behind.
		_ = r.runc.Delete(context.WithoutCancel(ctx), id, &runc.DeleteOpts{Force: true})
		return err
	}
	r.mu.Lock()
	c.rec.State = api.ContainerRunning
	c.rec.Pid = pid
	c.rec.IP = ip
	c.rec.ExitCode = 0
	c.rec.Error = ""
	c.rec.OOMKilled = false
	c.rec.StartedAt = time.Now().UTC()
	c.rec.FinishedAt = time.Time{}
	select {
	case <-c.done:
		c.done = make(chan struct{})
	default:
	}
	if c.rec.Health != nil {
		c.health = api.HealthStarting
	}
	r.mu.Unlock()
	if err := r.save(c); err != nil {
		r.log.Warn("save record", "id", ShortID(id), "err", err)
	}
	r.watch(c, pid)
	r.startHealth(c)
	r.emit(c)
	return nil
}

// rebuildBundle writes the files of a container's run dir again, after a
// reboot emptied it, as prepare wrote them: from rec (with the IP the
// container has now), its image's config and the user resolved in its
// mounted rootfs. TestRebootEmptiesRunDir checks that the config comes out
// the same.
func (r *Runtime) rebuildBundle(p paths, rec record) error {
	_, icfg, _, err := r.cfg.Images.Resolve(rec.ImageID)
	if err != nil {
		return fmt.Errorf("rebuild the bundle: resolve image %s: %w", rec.ImageID, err)
	}
	b := bundle{id: rec.ID, hostname: rec.Hostname, ip: rec.IP, args: rec.Args, spec: rec.Spec, image: icfg}
	if err := b.resolveUser(p); err != nil {
		return err
	}
	return r.writeBundle(p, b, true)
}
