package runtime

import (
	"context"
	"fmt"
	"os"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/bundle"
	"github.com/shoal-org/shoal/runtime/layout"
	"github.com/shoal-org/shoal/runtime/netns"
	"github.com/shoal-org/shoal/runtime/ocispec"
	"github.com/shoal-org/shoal/runtime/record"
	"github.com/shoal-org/shoal/runtime/rootfs"
	"github.com/shoal-org/shoal/runtime/volume"
)

// Create prepares a container (rootfs, netns, network, bundle) without
// starting it and returns it in state created.
func (r *Runtime) Create(ctx context.Context, spec Spec) (api.Container, error) {
	_, out, err := r.create(ctx, spec, false)
	return out, err
}

// create is Create. With hold, the container's lifecycle lock (op) is taken
// before the container becomes visible and is still held on success, so
// that no Remove or Stop can act on it until the caller releases it.
func (r *Runtime) create(ctx context.Context, spec Spec, hold bool) (*container, api.Container, error) {
	if err := r.waitReady(ctx); err != nil {
		return nil, api.Container{}, err
	}
	id := record.NewID()
	name := spec.Name
	if name == "" {
		name = ShortID(id)
	}
	if !layout.ValidName(name) {
		return nil, api.Container{}, fmt.Errorf("%w: bad name %q", ErrInvalidSpec, name)
	}
	if spec.LogMaxSize < 0 || spec.LogMaxFiles < 0 {
		return nil, api.Container{}, fmt.Errorf("%w: negative log max size or max files", ErrInvalidSpec)
	}
	r.mu.Lock()
	if _, taken := r.names[name]; taken {
		r.mu.Unlock()
		return nil, api.Container{}, fmt.Errorf("%w: %s", ErrNameInUse, name)
	}
	r.names[name] = id // reserve
	r.mu.Unlock()

	// Volumes stay in use from here until the container is registered.
	release, err := r.vols.Prepare(spec.Mounts)
	defer release()
	p := layout.For(r.cfg.Root, id, layout.RunDirFor(r.cfg.RunRoot, id, r.sup.TakesBundle())).WithEtcTmpfs()
	var rec record.Record
	if err == nil {
		rec, err = r.prepare(ctx, id, name, spec, p)
	}
	if err != nil {
		r.mu.Lock()
		delete(r.names, name)
		r.mu.Unlock()
		if cerr := r.cleanup(context.WithoutCancel(ctx), id, p); cerr != nil {
			r.log.Warn("cleanup after failed create", "id", ShortID(id), "err", cerr)
		}
		return nil, api.Container{}, err
	}
	rec.RunDir = p.Run
	rec.EtcTmpfs = p.Etc != ""
	c := &container{rec: rec, done: make(chan struct{})}
	if hold {
		c.op.Lock() // nobody else knows c yet: this cannot block
	}
	r.mu.Lock()
	r.containers[id] = c
	r.mu.Unlock()
	if err := r.save(c); err != nil {
		if hold {
			c.op.Unlock()
		}
		_ = r.Remove(context.WithoutCancel(ctx), id, true)
		return nil, api.Container{}, err
	}
	r.emit(c)
	r.mu.Lock()
	defer r.mu.Unlock()
	return c, c.apiLocked(), nil
}

// prepare builds everything a container needs on disk, at p; on error the
// caller cleans up with r.cleanup(id, p). (A start after a reboot makes the
// run dir's part again: rebuildBundle.)
func (r *Runtime) prepare(ctx context.Context, id, name string, spec Spec, p layout.Paths) (record.Record, error) {
	img, icfg, layers, err := r.cfg.Images.Resolve(spec.Image)
	if err != nil {
		return record.Record{}, fmt.Errorf("resolve image %s: %w", spec.Image, err)
	}
	args, err := ocispec.ResolveCommand(icfg, spec.Entrypoint, spec.Command)
	if err != nil {
		return record.Record{}, err
	}
	hostname := spec.Hostname
	if hostname == "" {
		hostname = ShortID(id)
	}
	// The container's dirs are root-only (New says why); the upper dir's
	// own mode is what the container sees as its /, 0711 as it always was,
	// so that processes of other users can reach what is below.
	for _, d := range []string{p.Rootfs, p.Work, p.Log, p.Upper} {
		mode := os.FileMode(0o700)
		if d == p.Upper {
			mode = 0o711
		}
		if err := os.MkdirAll(d, mode); err != nil {
			return record.Record{}, fmt.Errorf("create %s: %w", d, err)
		}
	}
	// The mounts come first: they decide the mountpoints layer stacked
	// above the image (mountpoints.go). The rest of the spec's input needs
	// the mounted rootfs (the user's passwd entry).
	b := bundleInput(id, hostname, "", args, spec, icfg)
	mounts, err := ocispec.Mounts(bundle.MountInput(r.bundleHost(), p, b))
	if err != nil {
		return record.Record{}, err
	}
	rootLayers, mountLayer := r.withMountLayer(id, layers, mounts, p)
	if err := rootfs.Overlay(rootLayers, p.Upper, p.Work, p.Rootfs); err != nil {
		return record.Record{}, err
	}
	// Before the container ever runs: its rootfs is still the image's, so
	// no volume's copy of it needs more than the image's unpacked size.
	if err := volume.Seed(p.Rootfs, r.vols.Dir, spec.Mounts, seedBudget(img)); err != nil {
		return record.Record{}, err
	}
	if err := b.ResolveUser(p); err != nil {
		return record.Record{}, err
	}
	if err := netns.Create(p.Netns); err != nil {
		return record.Record{}, err
	}
	if r.cfg.Network != nil {
		if b.IP, err = r.cfg.Network.Attach(ctx, id, p.Netns); err != nil {
			return record.Record{}, fmt.Errorf("attach network: %w", err)
		}
	}
	// The config is written in place: the bundle dir is new and has no
	// record yet, so a crash mid-write leaves a half-made dir that adopt
	// removes. (A temp file and rename would cost an inode allocation and a
	// free per container.)
	if err := bundle.Write(r.bundleHost(), p, b, false); err != nil {
		return record.Record{}, err
	}
	hc := spec.Healthcheck
	if hc == nil {
		hc = icfg.Healthcheck
	}
	if hc != nil && (len(hc.Test) == 0 || hc.Test[0] == "NONE") {
		hc = nil
	}
	return record.Record{
		ID:         id,
		Name:       name,
		Spec:       spec,
		ImageID:    img.ID,
		Layers:     layers,
		MountLayer: mountLayer,
		Args:       args,
		Hostname:   hostname,
		Health:     hc,
		State:      api.ContainerCreated,
		IP:         b.IP,
		CreatedAt:  time.Now().UTC(),
	}, nil
}

// seedBudget is how many bytes of file content a copy of img's content
// into an empty volume may write: the image's unpacked size (the sum of
// its layers', an upper bound of what its rootfs shows), or, for an image
// whose size is unknown, the most an image store unpacks by default.
func seedBudget(img api.Image) int64 {
	if img.Size > 0 {
		return img.Size
	}
	return maxImageSize
}

// maxImageSize is unpack.DefaultLimits().MaxTotalSize (TestSeedBudgetOfImage
// checks), not imported: the unpacker would bring its decompressors into
// the runtime for one number.
const maxImageSize = 32 << 30

// RunContainer creates and starts a container (`shoal run`). On a failed
// start the container is removed again. (Run is the background loop.)
//
// Create and start are one step for other callers: the container shows in
// List as created while it starts, but a Stop or Remove on it waits until
// the start is over, so a non-forced Remove decided on the state "created"
// gets ErrRunning rather than removing the container mid-start.
func (r *Runtime) RunContainer(ctx context.Context, spec Spec) (api.Container, error) {
	c, created, err := r.create(ctx, spec, true)
	if err != nil {
		return api.Container{}, err
	}
	started, err := r.startHeld(ctx, c, created.ID)
	c.op.Unlock()
	if err != nil {
		if rerr := r.Remove(context.WithoutCancel(ctx), created.ID, true); rerr != nil {
			r.log.Warn("remove after failed start", "id", ShortID(created.ID), "err", rerr)
		}
		return api.Container{}, err
	}
	return started, nil
}

// withMountLayer returns the lowerdir stack (base first) of a new
// container's rootfs and the mountpoints layer on top of it ("" for none).
// The layer only saves work: when it cannot be made, or would push the
// overlay's options past a page, the rootfs goes without it and runc
// creates the mountpoints in the upper dir, as it always did.
func (r *Runtime) withMountLayer(id string, layers []string, mounts []specs.Mount, p layout.Paths) ([]string, string) {
	if r.noMountLayer {
		return layers, ""
	}
	ml, err := r.mountLayers.For(layers, mounts)
	if err != nil {
		r.log.Warn("no mountpoints layer", "id", ShortID(id), "err", err)
		return layers, ""
	}
	if ml == "" {
		return layers, ""
	}
	all := append(append(make([]string, 0, len(layers)+1), layers...), ml)
	if _, err := rootfs.Options(all, p.Upper, p.Work); err != nil {
		r.log.Warn("no mountpoints layer", "id", ShortID(id), "err", err)
		return layers, ""
	}
	return all, ml
}

// bundleHost is what the bundles of r share.
func (r *Runtime) bundleHost() bundle.Host {
	h := bundle.Host{
		InitBinary: r.cfg.InitBinary, VolumesDir: r.vols.Dir, CgroupParent: r.cfg.CgroupParent,
		ResolvConf: r.cfg.ResolvConf, DNS: r.cfg.DNS, DNSFunc: r.cfg.DNSFunc, NoSeccomp: r.cfg.NoSeccomp,
	}
	if r.seccomp != nil {
		h.SeccompProgram = r.seccomp.Program
	}
	return h
}

// bundleInput is what container id's bundle files are made of (the user
// is resolved later, in its mounted rootfs).
func bundleInput(id, hostname, ip string, args []string, spec Spec, image api.ImageConfig) bundle.Input {
	return bundle.Input{
		ID: id, Hostname: hostname, IP: ip, Args: args, Image: image,
		User: spec.User, Workdir: spec.Workdir, Env: spec.Env, ExtraHosts: spec.ExtraHosts,
		Limits: spec.Limits, MemoryReservation: spec.MemoryReservation, Files: spec.Files, Mounts: spec.Mounts, ReadOnly: spec.ReadOnly,
		CapAdd: spec.CapAdd, CapDrop: spec.CapDrop, Sysctls: spec.Sysctls,
		Ulimits: spec.Ulimits,
	}
}
