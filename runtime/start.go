package runtime

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	runc "github.com/containerd/go-runc"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/bundle"
	"github.com/shoal-org/shoal/runtime/layout"
	"github.com/shoal-org/shoal/runtime/netns"
	"github.com/shoal-org/shoal/runtime/ocispec"
	"github.com/shoal-org/shoal/runtime/record"
	"github.com/shoal-org/shoal/runtime/rmtree"
	"github.com/shoal-org/shoal/runtime/rootfs"
	"github.com/shoal-org/shoal/runtime/supervisor"
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

func (r *Runtime) startLocked(ctx context.Context, c *container, rec record.Record) error {
	id := rec.ID
	p := r.pathsOf(c)
	// After a reboot the run dir is empty: the rootfs mount point is made
	// again here, the bundle below.
	rebuild := p.Run != "" && !fileExists(p.Config)
	if rebuild {
		if err := os.MkdirAll(p.Rootfs, 0o700); err != nil { // root-only, as at create
			return fmt.Errorf("create %s: %w", p.Rootfs, err)
		}
	}
	if rec.State == api.ContainerExited {
		if err := r.awaitRelease(ctx, c); err != nil {
			return err
		}
		// A restart: clear what the last run left behind.
		_ = r.runcDelete(ctx, id)
		_ = os.Remove(filepath.Join(p.Dir, exitRecordFile))
		// The state dir of an init of an older Shoal, which the container
		// could write: gone, so nothing reads it again (rmtree: however
		// deep, never following its links).
		if err := rmtree.RemoveAll(p.State); err != nil {
			r.log.Warn("remove the state dir of an older init", "id", ShortID(id), "err", err)
		}
	}
	if !rootfs.IsMountpoint(p.Rootfs) { // after a reboot
		if err := rootfs.Overlay(r.rootfsLayers(rec), p.Upper, p.Work, p.Rootfs); err != nil {
			return err
		}
	}
	freshNetns := false
	if !netns.IsMount(p.Netns) {
		_ = netns.Remove(p.Netns)
		if err := netns.Create(p.Netns); err != nil {
			return err
		}
		freshNetns = true
	}
	// A new namespace has loopback only, whatever the record says: a
	// container created but not started before a reboot kept the IP of
	// its create and started unplugged. Attach is idempotent: it gives
	// back the address the network still holds for the container, or a
	// new one.
	ip := rec.IP
	if (ip == "" || freshNetns) && r.cfg.Network != nil {
		var err error
		if ip, err = r.cfg.Network.Attach(ctx, id, p.Netns); err != nil {
			return fmt.Errorf("attach network: %w", err)
		}
		// A rebuild writes it below, with the rest of the bundle (and
		// mounts the tmpfs it goes on first).
		if !rebuild {
			if err := os.WriteFile(p.Hosts, []byte(ocispec.HostsFile(rec.Hostname, ip, rec.Spec.ExtraHosts)), 0o644); err != nil {
				return fmt.Errorf("write hosts: %w", err)
			}
		}
	}
	if rebuild {
		rec.IP = ip
		if err := r.rebuildBundle(p, rec); err != nil {
			return err
		}
	}
	_ = os.Remove(p.PidFile)
	// The slot exists before the start, so an exit reported before we
	// mark the container running is not missed.
	r.sup.Forget(id)
	r.sup.Slot(id)
	bundleDir := "" // the old layout: Dir
	if p.Bundle != p.Dir {
		bundleDir = p.Bundle
	}
	// Waiting for a slot heeds ctx: nothing has started yet.
	leave, err := r.starts.enter(ctx)
	if err != nil {
		r.sup.Forget(id)
		return fmt.Errorf("wait for a start slot: %w", err)
	}
	// The round trip ignores ctx: the supervisor finishes `runc run`
	// whether or not we wait, and a start abandoned halfway (a user's ^C)
	// left a container running that the cleanup below, racing runc, could
	// not delete, with no record and no network. The reply comes within
	// the supervisor's own bound on runc.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), supervisor.RuncTimeout+30*time.Second)
	pid, err := r.sup.Start(sctx, supRequest{
		ID: id, Dir: p.Dir, Bundle: bundleDir, Runc: r.cfg.RuncBinary, RuncRoot: r.cfg.RuncRoot,
		RuncLog: p.InitLog, PidFile: p.PidFile,
		LogMaxSize: r.logMaxSize(rec.Spec), LogMaxFiles: r.logMaxFiles(rec.Spec), LogNone: rec.Spec.LogNone,
	})
	cancel()
	leave()
	if err != nil {
		r.sup.Forget(id)
		// A start that failed halfway may have left runc's container behind.
		_ = r.runc.Delete(context.WithoutCancel(ctx), id, &runc.DeleteOpts{Force: true})
		return err
	}
	r.mu.Lock()
	c.rec.Started(pid, ip)
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
func (r *Runtime) rebuildBundle(p layout.Paths, rec record.Record) error {
	_, icfg, _, err := r.cfg.Images.Resolve(rec.ImageID)
	if err != nil {
		return fmt.Errorf("rebuild the bundle: resolve image %s: %w", rec.ImageID, err)
	}
	b := bundleInput(rec.ID, rec.Hostname, rec.IP, rec.Args, rec.Spec, icfg)
	if err := b.ResolveUser(p); err != nil {
		return err
	}
	return bundle.Write(r.bundleHost(), p, b, true)
}
