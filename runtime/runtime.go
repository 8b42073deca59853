// Package runtime runs the containers of one node: overlayfs rootfs from the
// image store's layers, an OCI bundle built from runtime-spec types, runc
// (containerd/go-runc) without a shim per container, per-container logs and
// health checks.
//
// Supervision. Each container's PID 1 is a tiny static init (tini-static)
// that forwards signals and reaps zombies. One supervisor process per node
// (supervisor.go) runs `runc run --detach`, so it becomes the parent of
// every container's init: it holds the containers' stdout and stderr, writes
// their logs with rotation, and records each exit status in the bundle dir,
// out of the container's reach. The agent is not in the data path: it asks
// the supervisor to start containers and follows one stream of exit events.
// It never waits for "any child" (a wait4(-1) loop would steal the exit
// statuses of commands other packages run through os/exec); the supervisor,
// which runs nothing else, does.
//
// Restarts. The supervisor outlives the agent (kill -9 included). A new
// agent re-reads container.json records, asks the supervisor which
// containers it holds, follows those, and reads the exit records of the
// ones that ended while it was away. Containers keep running while no agent
// is there; Run returning never stops them. Should the supervisor itself
// die, its containers keep running but their output is lost; the agent then
// watches them by pidfd and reports their exit as unrecorded.
package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	runc "github.com/containerd/go-runc"
	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/containerinit"
)

// Runtime manages the containers of this node. Create it with New and drive
// its background work with Run; the container methods are safe for
// concurrent use and wait for Run to have re-adopted existing containers.
type Runtime struct {
	cfg  Config
	log  *slog.Logger
	runc *runc.Runc
	sup  *supClient
	vols *volumeStore // named volumes (mounts.go)

	ready   chan struct{} // closed once Run adopted existing containers
	runCtx  context.Context
	runDone chan struct{} // closed when Run returns
	wg      sync.WaitGroup

	mu         sync.Mutex
	containers map[string]*container // by ID
	names      map[string]string     // name -> ID
	subs       map[chan Event]struct{}
	stopping   bool // Run's context ended: spawn refuses
	closed     bool // Run returned: subscriber channels are closed
}

// spawn runs fn on a goroutine that Run waits for before returning. It
// reports false, without running fn, once Run is shutting down.
func (r *Runtime) spawn(fn func()) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopping {
		return false
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		fn()
	}()
	return true
}

// New validates cfg, prepares Root and loads the records of containers left
// by a previous agent. It starts nothing: call Run.
func New(cfg Config) (*Runtime, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := checkStatic(cfg.InitBinary); err != nil {
		return nil, err
	}
	for _, d := range []string{filepath.Join(cfg.Root, "containers"), filepath.Join(cfg.Root, "netns"), cfg.RuncRoot} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	r := &Runtime{
		cfg:        cfg,
		log:        cfg.Logger.With("component", "runtime"),
		runc:       &runc.Runc{Command: cfg.RuncBinary, Root: cfg.RuncRoot},
		sup:        newSupClient(cfg.Root, cfg.SupervisorBinary, cfg.Logger.With("component", "runtime")),
		ready:      make(chan struct{}),
		runDone:    make(chan struct{}),
		containers: map[string]*container{},
		names:      map[string]string{},
		subs:       map[chan Event]struct{}{},
	}
	vols, err := newVolumeStore(filepath.Join(cfg.Root, "volumes"))
	if err != nil {
		return nil, err
	}
	r.vols = vols
	ents, err := os.ReadDir(filepath.Join(cfg.Root, "containers"))
	if err != nil {
		return nil, fmt.Errorf("read containers dir: %w", err)
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		p := r.pathsOf(e.Name())
		rec, err := loadRecord(p.record)
		if err != nil || rec.ID != e.Name() {
			// A crash between mkdir and the first save leaves a dir without
			// a record; Run cleans it up.
			r.log.Warn("container dir without a valid record", "id", e.Name(), "err", err)
			continue
		}
		c := &container{rec: rec, done: make(chan struct{})}
		if rec.State != api.ContainerRunning && rec.State != api.ContainerCreated {
			close(c.done)
		}
		if rec.Health != nil && rec.State == api.ContainerRunning {
			c.health = api.HealthStarting
		}
		r.containers[rec.ID] = c
		r.names[rec.Name] = rec.ID
	}
	return r, nil
}

// Run re-adopts the containers left by a previous agent, then supervises
// containers (exit watching, health checks, --rm) until ctx ends. It returns
// when ctx ends, leaving containers running. Call it once.
func (r *Runtime) Run(ctx context.Context) error {
	defer close(r.runDone)
	r.runCtx = ctx
	running, conn, br, err := r.sup.watch(ctx)
	if err != nil {
		// Containers already running are watched by pidfd; starts will
		// try to reach (or start) the supervisor again.
		r.log.Error("node supervisor unavailable", "err", err)
	}
	r.adopt(ctx, running)
	if conn != nil {
		r.spawn(func() { r.sup.follow(ctx, conn, br) })
	}
	close(r.ready)

	<-ctx.Done()
	r.mu.Lock()
	r.stopping = true // no goroutine starts after this
	r.mu.Unlock()
	r.wg.Wait()
	r.mu.Lock()
	r.closed = true
	for ch := range r.subs {
		close(ch)
		delete(r.subs, ch)
	}
	r.mu.Unlock()
	return nil
}

// Ready is closed once Run has re-adopted the containers of a previous
// agent; until then List and Get show the records as they were saved.
func (r *Runtime) Ready() <-chan struct{} { return r.ready }

// waitReady blocks until Run has adopted existing containers.
func (r *Runtime) waitReady(ctx context.Context) error {
	select {
	case <-r.ready:
	case <-ctx.Done():
		return ctx.Err()
	case <-r.runDone:
		return ErrClosed
	}
	if r.runCtx.Err() != nil {
		return ErrClosed
	}
	return nil
}

// adopt reconciles records with the supervisor (supervised holds the
// containers it holds, nil when it is unreachable) and runc: running
// containers are watched again, those that ended while no agent was there
// get their exit status, and runc containers without a record are deleted.
func (r *Runtime) adopt(ctx context.Context, supervised map[string]int) {
	states := map[string]*runc.Container{}
	if list, err := r.runc.List(ctx); err != nil {
		r.log.Warn("runc list", "err", err)
	} else {
		for _, s := range list {
			states[s.ID] = s
		}
	}
	r.mu.Lock()
	cs := make([]*container, 0, len(r.containers))
	for _, c := range r.containers {
		cs = append(cs, c)
	}
	r.mu.Unlock()

	for id := range states {
		if _, ok := r.containers[id]; !ok {
			r.log.Warn("deleting runc container without a record", "id", id)
			_ = r.runc.Delete(ctx, id, &runc.DeleteOpts{Force: true})
		}
	}
	for _, c := range cs {
		id := c.rec.ID
		if c.rec.State != api.ContainerRunning {
			continue
		}
		if _, ok := supervised[id]; ok {
			r.log.Info("re-adopted running container", "id", ShortID(id), "pid", c.rec.Pid)
			r.watch(c, c.rec.Pid)
			r.startHealth(c)
			continue
		}
		st := states[id]
		if st != nil && (st.Status == "running" || st.Status == "paused") && st.Pid == c.rec.Pid &&
			!fileExists(filepath.Join(r.pathsOf(id).dir, exitRecordFile)) {
			// Running, but no supervisor holds it: it was started by an
			// older Shoal, or its supervisor died.
			r.log.Warn("container runs without a supervisor: its exit code will not be known", "id", ShortID(id), "pid", st.Pid)
			r.watchPidfd(c, st.Pid)
			r.startHealth(c)
			continue
		}
		// It ended while we were away (or runc lost it).
		r.finishExit(c, c.rec.Pid)
	}
	// Directories without a record: half-made containers.
	ents, _ := os.ReadDir(filepath.Join(r.cfg.Root, "containers"))
	for _, e := range ents {
		r.mu.Lock()
		_, known := r.containers[e.Name()]
		r.mu.Unlock()
		if !known && e.IsDir() {
			r.log.Warn("removing leftover container dir", "id", e.Name())
			_ = r.cleanup(ctx, e.Name())
		}
	}
}

// pidExited reports whether the process behind pidfd has ended.
func pidExited(pidfd int) bool {
	n, _ := unix.Poll([]unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}, 0)
	return n > 0
}

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
	id := newID()
	name := spec.Name
	if name == "" {
		name = ShortID(id)
	}
	if !nameRE.MatchString(name) {
		return nil, api.Container{}, fmt.Errorf("%w: bad name %q", ErrInvalidSpec, name)
	}
	r.mu.Lock()
	if _, taken := r.names[name]; taken {
		r.mu.Unlock()
		return nil, api.Container{}, fmt.Errorf("%w: %s", ErrNameInUse, name)
	}
	r.names[name] = id // reserve
	r.mu.Unlock()

	// Volumes stay in use from here until the container is registered.
	release, err := r.prepareMounts(spec.Mounts)
	defer release()
	var rec record
	if err == nil {
		rec, err = r.prepare(ctx, id, name, spec)
	}
	if err != nil {
		r.mu.Lock()
		delete(r.names, name)
		r.mu.Unlock()
		if cerr := r.cleanup(context.WithoutCancel(ctx), id); cerr != nil {
			r.log.Warn("cleanup after failed create", "id", ShortID(id), "err", cerr)
		}
		return nil, api.Container{}, err
	}
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

// prepare builds everything a container needs on disk; on error the caller
// cleans up with r.cleanup(id).
func (r *Runtime) prepare(ctx context.Context, id, name string, spec Spec) (record, error) {
	img, icfg, layers, err := r.cfg.Images.Resolve(spec.Image)
	if err != nil {
		return record{}, fmt.Errorf("resolve image %s: %w", spec.Image, err)
	}
	args, err := ResolveCommand(icfg, spec.Entrypoint, spec.Command)
	if err != nil {
		return record{}, err
	}
	hostname := spec.Hostname
	if hostname == "" {
		hostname = ShortID(id)
	}
	p := r.pathsOf(id)
	for _, d := range []string{p.rootfs, p.upper, p.work, p.log} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return record{}, fmt.Errorf("create %s: %w", d, err)
		}
	}
	if err := mountOverlay(layers, p.upper, p.work, p.rootfs); err != nil {
		return record{}, err
	}
	user := spec.User
	if user == "" {
		user = icfg.User
	}
	uid, gid, extra, err := ResolveUser(p.rootfs, user)
	if err != nil {
		return record{}, err
	}
	if err := createNetns(p.netns); err != nil {
		return record{}, err
	}
	ip := ""
	if r.cfg.Network != nil {
		if ip, err = r.cfg.Network.Attach(ctx, id, p.netns); err != nil {
			return record{}, fmt.Errorf("attach network: %w", err)
		}
	}
	hostResolv, _ := os.ReadFile(r.cfg.ResolvConf)
	files := map[string]string{
		p.hosts:    HostsFile(hostname, ip, spec.ExtraHosts),
		p.hostname: hostname + "\n",
		p.resolv:   ResolvConf(string(hostResolv), r.nameservers()),
	}
	for f, content := range files {
		if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
			return record{}, fmt.Errorf("write %s: %w", f, err)
		}
	}
	cwd := spec.Workdir
	if cwd == "" {
		cwd = icfg.WorkingDir
	}
	s, err := BuildSpec(SpecInput{
		Hostname:       hostname,
		RootfsPath:     "rootfs",
		Args:           args,
		Env:            MergeEnv(icfg.Env, spec.Env, hostname),
		Cwd:            cwd,
		UID:            uid,
		GID:            gid,
		ExtraGIDs:      extra,
		Limits:         spec.Limits,
		CgroupsPath:    filepath.Join(r.cfg.CgroupParent, id),
		NetnsPath:      p.netns,
		InitBinary:     r.cfg.InitBinary,
		HostsPath:      p.hosts,
		HostnamePath:   p.hostname,
		ResolvConfPath: p.resolv,
		NoSeccomp:      r.cfg.NoSeccomp,
		Files:          spec.Files,
		Mounts:         spec.Mounts,
		VolumesDir:     r.vols.dir,
	})
	if err != nil {
		return record{}, err
	}
	// Written in place: the bundle dir is new and has no record yet, so a
	// crash mid-write leaves a half-made dir that adopt removes. (A temp file
	// and rename would cost an inode allocation and a free per container.)
	b, err := json.Marshal(s)
	if err != nil {
		return record{}, fmt.Errorf("encode bundle config: %w", err)
	}
	if err := os.WriteFile(p.config, b, 0o600); err != nil {
		return record{}, fmt.Errorf("write bundle config: %w", err)
	}
	hc := spec.Healthcheck
	if hc == nil {
		hc = icfg.Healthcheck
	}
	if hc != nil && (len(hc.Test) == 0 || hc.Test[0] == "NONE") {
		hc = nil
	}
	return record{
		ID:        id,
		Name:      name,
		Spec:      spec,
		ImageID:   img.ID,
		Layers:    layers,
		Args:      args,
		Hostname:  hostname,
		Health:    hc,
		State:     api.ContainerCreated,
		IP:        ip,
		CreatedAt: time.Now().UTC(),
	}, nil
}

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
	p := r.pathsOf(id)
	if rec.State == api.ContainerExited {
		// A restart: clear what the last run left behind.
		_ = r.runc.Delete(ctx, id, &runc.DeleteOpts{Force: true})
		_ = os.Remove(filepath.Join(p.dir, exitRecordFile))
		// The state dir of an init of an older Shoal, which the container
		// could write: gone, so nothing reads it again.
		_ = os.RemoveAll(p.state)
	}
	if !isMountpoint(p.rootfs) { // after a reboot
		if err := mountOverlay(rec.Layers, p.upper, p.work, p.rootfs); err != nil {
			return err
		}
	}
	if !isNetnsMount(p.netns) {
		_ = removeNetns(p.netns)
		if err := createNetns(p.netns); err != nil {
			return err
		}
	}
	ip := rec.IP
	if ip == "" && r.cfg.Network != nil {
		var err error
		if ip, err = r.cfg.Network.Attach(ctx, id, p.netns); err != nil {
			return fmt.Errorf("attach network: %w", err)
		}
		if err := os.WriteFile(p.hosts, []byte(HostsFile(rec.Hostname, ip, rec.Spec.ExtraHosts)), 0o644); err != nil {
			return fmt.Errorf("write hosts: %w", err)
		}
	}
	_ = os.Remove(p.pidFile)
	// The slot exists before the start, so an exit reported before we
	// mark the container running is not missed.
	r.sup.forget(id)
	r.sup.slot(id)
	pid, err := r.sup.start(ctx, supRequest{
		ID: id, Dir: p.dir, Runc: r.cfg.RuncBinary, RuncRoot: r.cfg.RuncRoot,
		RuncLog: p.initLog, PidFile: p.pidFile,
		LogMaxSize: r.cfg.LogMaxSize, LogMaxFiles: r.cfg.LogMaxFiles,
	})
	if err != nil {
		r.sup.forget(id)
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

// watch waits, on a goroutine owned by Run, for the supervisor to report
// that c's init (pid) ended, then records the exit. Should the supervisor
// lose the container, it falls back to watchPidfd. If Run's context ends
// first, the container is left running for the next agent.
func (r *Runtime) watch(c *container, pid int) {
	sl := r.sup.slot(c.rec.ID)
	r.spawn(func() {
		select {
		case <-sl.done:
			r.finishExit(c, pid)
		case <-sl.lost:
			if fileExists(filepath.Join(r.pathsOf(c.rec.ID).dir, exitRecordFile)) {
				r.finishExit(c, pid)
				return
			}
			r.log.Warn("the supervisor lost a container: its exit code will not be known", "id", ShortID(c.rec.ID), "pid", pid)
			r.watchPidfd(c, pid)
		case <-r.runCtx.Done():
		}
	})
}

// watchPidfd waits, on a goroutine owned by Run, for the process pid to
// end, for containers no supervisor holds, then records the exit.
func (r *Runtime) watchPidfd(c *container, pid int) {
	pidfd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		r.log.Warn("pidfd_open of container", "id", ShortID(c.rec.ID), "pid", pid, "err", err)
		r.spawn(func() { r.finishExit(c, pid) })
		return
	}
	f := os.NewFile(uintptr(pidfd), "pidfd")
	ok := r.spawn(func() {
		defer f.Close()
		stop := context.AfterFunc(r.runCtx, func() { _ = f.SetReadDeadline(time.Now()) })
		defer stop()
		rc, err := f.SyscallConn()
		if err != nil {
			r.log.Error("pidfd conn", "pid", pid, "err", err)
			return
		}
		exited := false
		err = rc.Read(func(fd uintptr) bool {
			exited = pidExited(int(fd))
			return exited
		})
		if !exited {
			if r.runCtx.Err() == nil {
				r.log.Error("watch container", "pid", pid, "err", err)
			}
			return
		}
		r.finishExit(c, pid)
	})
	if !ok {
		f.Close()
	}
}

// finishExit records that the container's init (pid) ended, with the exit
// status from the supervisor's exit record (or, for a container started by
// an older Shoal, its init's state file), else 137 and an error saying why.
// Then it releases the network, deletes the runc state and, for --rm
// containers, removes the container. It does nothing unless c is running
// as pid, so a second report of one exit is harmless.
func (r *Runtime) finishExit(c *container, pid int) {
	r.mu.Lock()
	if c.rec.State != api.ContainerRunning || c.rec.Pid != pid || c.removed {
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	id := c.rec.ID
	p := r.pathsOf(id)
	defer r.sup.forget(id)
	code, errMsg := 137, ""
	st, ferr := readExitRecord(p.dir)
	if errors.Is(ferr, fs.ErrNotExist) {
		st, ferr = readExitRecord(p.state)
	}
	switch {
	case ferr == nil:
		code, errMsg = st.ExitCode, st.Error
	case errors.Is(ferr, fs.ErrNotExist):
		errMsg = "exit status not recorded (the container's supervisor was gone)"
	default:
		errMsg = fmt.Sprintf("exit status unreadable: %v", ferr)
	}
	ctx := context.WithoutCancel(r.runCtx)
	oom := oomKilled(filepath.Join(r.cfg.CgroupParent, id)) // before runc delete removes the cgroup
	if err := r.runc.Delete(ctx, id, &runc.DeleteOpts{Force: true}); err != nil && !isNotExist(err) {
		r.log.Warn("runc delete", "id", ShortID(id), "err", err)
	}
	if r.cfg.Network != nil {
		if err := r.cfg.Network.Detach(ctx, id, p.netns); err != nil {
			r.log.Warn("detach network", "id", ShortID(id), "err", err)
		}
	}
	r.mu.Lock()
	c.rec.State = api.ContainerExited
	c.rec.ExitCode = code
	c.rec.OOMKilled = oom
	c.rec.Pid = 0
	c.rec.IP = ""
	c.rec.FinishedAt = time.Now().UTC()
	c.rec.Error = ""
	if ferr == nil && !st.FinishedAt.IsZero() {
		c.rec.FinishedAt = st.FinishedAt
	}
	if errMsg != "" {
		c.rec.Error = errMsg
	}
	stopHealth := c.stopHealth
	c.stopHealth = nil
	select {
	case <-c.done:
	default:
		close(c.done)
	}
	remove := c.rec.Spec.Remove
	r.mu.Unlock()
	if stopHealth != nil {
		stopHealth()
	}
	if err := r.save(c); err != nil {
		r.log.Warn("save record", "id", ShortID(id), "err", err)
	}
	r.log.Info("container exited", "id", ShortID(id), "exit_code", code)
	r.emit(c)
	if remove {
		if err := r.remove(ctx, c, id, false); err != nil && !errors.Is(err, ErrNotFound) {
			r.log.Warn("auto-remove", "id", ShortID(id), "err", err)
		}
	}
}

// Stop sends SIGTERM to the container, waits up to grace, then SIGKILLs
// it; grace 0 means the container's StopGrace or else Config.StopGrace, a
// negative grace kills at once. It returns once the container has exited
// (its exit code recorded). Stopping a container that is not running is a
// no-op.
func (r *Runtime) Stop(ctx context.Context, idOrName string, grace time.Duration) (api.Container, error) {
	if err := r.waitReady(ctx); err != nil {
		return api.Container{}, err
	}
	c, err := r.lookup(idOrName)
	if err != nil {
		return api.Container{}, err
	}
	c.op.Lock()
	defer c.op.Unlock()
	if err := r.stopLocked(ctx, c, grace); err != nil {
		return api.Container{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return c.apiLocked(), nil
}

func (r *Runtime) stopLocked(ctx context.Context, c *container, grace time.Duration) error {
	r.mu.Lock()
	id, state, done, pid := c.rec.ID, c.rec.State, c.done, c.rec.Pid
	if grace == 0 {
		grace = c.rec.Spec.StopGrace
	}
	r.mu.Unlock()
	if state != api.ContainerRunning {
		return nil
	}
	if grace == 0 {
		grace = r.cfg.StopGrace
	}
	if grace > 0 {
		deadline := time.Now().Add(grace)
		r.waitInitReady(ctx, pid, done, deadline)
		if err := r.runc.Kill(ctx, id, int(unix.SIGTERM), nil); err != nil && !isNotRunning(err) {
			r.log.Warn("runc kill TERM", "id", ShortID(id), "err", err)
		}
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		select {
		case <-done:
			return nil
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		case <-r.runDone:
			return ErrClosed
		}
	}
	if err := r.runc.Kill(ctx, id, int(unix.SIGKILL), &runc.KillOpts{All: true}); err != nil && !isNotRunning(err) {
		r.log.Warn("runc kill KILL", "id", ShortID(id), "err", err)
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-r.runDone:
		return ErrClosed
	}
}

// waitInitReady waits until the container's init (pid) handles SIGTERM,
// the container exits, or deadline passes. A PID 1 drops the signals it has
// no handler for, so a SIGTERM sent before the init has blocked it would be
// lost and the stop would cost the whole grace period.
func (r *Runtime) waitInitReady(ctx context.Context, pid int, done <-chan struct{}, deadline time.Time) {
	for time.Now().Before(deadline) && !initReady(pid) {
		select {
		case <-done:
			return
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// initReady reports whether the init pid takes SIGTERM: it blocks, catches
// or ignores it (/proc/PID/status), or it has started its child, which tini
// does only after blocking every signal (while it waits in sigtimedwait the
// kernel shows those signals unblocked, so the child is the lasting sign).
// A process that is gone counts as ready.
func initReady(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return true
	}
	bit := uint64(1) << (uint(unix.SIGTERM) - 1)
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok || (k != "SigBlk" && k != "SigCgt" && k != "SigIgn") {
			continue
		}
		if m, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64); err == nil && m&bit != 0 {
			return true
		}
	}
	kids, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	return err == nil && len(strings.TrimSpace(string(kids))) > 0
}

// Remove deletes a container and everything it owns: runc state, cgroup,
// rootfs mount, upper dir, bundle, netns, logs. A running container is
// killed first when force is set, otherwise ErrRunning is returned.
//
// The state is checked under the container's lifecycle lock, after any
// start in flight has finished. A caller that decided to remove a container
// from an earlier List (a created or exited container it thinks is stale)
// must pass force=false: with force, a container that started meanwhile is
// SIGKILLed (exit code 137).
func (r *Runtime) Remove(ctx context.Context, idOrName string, force bool) error {
	if err := r.waitReady(ctx); err != nil {
		return err
	}
	c, err := r.lookup(idOrName)
	if err != nil {
		return err
	}
	return r.remove(ctx, c, idOrName, force)
}

// remove is Remove once c is found; it does not wait for Run to be ready,
// so adoption can auto-remove --rm containers.
func (r *Runtime) remove(ctx context.Context, c *container, idOrName string, force bool) error {
	c.op.Lock()
	defer c.op.Unlock()
	r.mu.Lock()
	state, removed := c.rec.State, c.removed
	r.mu.Unlock()
	if removed {
		return fmt.Errorf("remove %s: %w", idOrName, ErrNotFound)
	}
	if state == api.ContainerRunning {
		if !force {
			return fmt.Errorf("remove %s: %w", idOrName, ErrRunning)
		}
		// Kill right away, as `docker rm -f` does.
		if err := r.stopLocked(ctx, c, -1); err != nil {
			return fmt.Errorf("kill %s: %w", idOrName, err)
		}
	}
	r.mu.Lock()
	id, name := c.rec.ID, c.rec.Name
	c.removed = true
	stopHealth := c.stopHealth
	c.stopHealth = nil
	select {
	case <-c.done:
	default:
		close(c.done) // a created container that never ran: release waiters
	}
	r.mu.Unlock()
	if stopHealth != nil {
		stopHealth()
	}
	c.saveMu.Lock() // wait for an in-flight save
	c.saveMu.Unlock()
	r.sup.forget(id)
	err := r.cleanup(ctx, id)
	r.mu.Lock()
	ev := Event{ContainerID: id, Name: name, TaskID: c.rec.Spec.TaskID, State: EventRemoved, ExitCode: c.rec.ExitCode, Time: time.Now().UTC()}
	delete(r.containers, id)
	if r.names[name] == id {
		delete(r.names, name)
	}
	r.mu.Unlock()
	r.publish(ev)
	if err != nil {
		return fmt.Errorf("remove %s: %w", ShortID(id), err)
	}
	return nil
}

// cleanup deletes every resource of container id, best effort, and reports
// what failed.
func (r *Runtime) cleanup(ctx context.Context, id string) error {
	p := r.pathsOf(id)
	var errs []error
	if err := r.runc.Delete(ctx, id, &runc.DeleteOpts{Force: true}); err != nil && !isNotExist(err) {
		errs = append(errs, fmt.Errorf("runc delete: %w", err))
	}
	if r.cfg.Network != nil {
		if err := r.cfg.Network.Detach(ctx, id, p.netns); err != nil {
			errs = append(errs, fmt.Errorf("detach network: %w", err))
		}
	}
	if err := removeNetns(p.netns); err != nil {
		errs = append(errs, err)
	}
	if err := unmount(p.rootfs); err != nil {
		errs = append(errs, err)
	}
	removeCgroups(filepath.Join(r.cfg.CgroupParent, id))
	if err := os.RemoveAll(p.dir); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", p.dir, err))
	}
	return errors.Join(errs...)
}

// removeCgroups removes the container's cgroup in every hierarchy; runc
// delete normally did it already.
func removeCgroups(rel string) {
	ents, err := os.ReadDir("/sys/fs/cgroup")
	if err != nil {
		return
	}
	_ = os.Remove(filepath.Join("/sys/fs/cgroup", rel)) // pure v2
	for _, e := range ents {
		_ = os.Remove(filepath.Join("/sys/fs/cgroup", e.Name(), rel))
	}
}

// List returns all containers of this node, oldest first.
func (r *Runtime) List() []api.Container {
	r.mu.Lock()
	out := make([]api.Container, 0, len(r.containers))
	for _, c := range r.containers {
		out = append(out, c.apiLocked())
	}
	r.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].ID < out[j].ID
		}
		return out[i].CreatedAt.Before(out[j].CreatedAt)
	})
	return out
}

// ImageInUse reports whether any container of this node (running or not)
// was made from imageID; the image store's GC asks before deleting layers.
func (r *Runtime) ImageInUse(imageID string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.containers {
		if c.rec.ImageID == imageID {
			return true
		}
	}
	return false
}

// Get finds a container by full ID, name, or unique ID prefix.
func (r *Runtime) Get(idOrName string) (api.Container, error) {
	c, err := r.lookup(idOrName)
	if err != nil {
		return api.Container{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return c.apiLocked(), nil
}

func (r *Runtime) lookup(ref string) (*container, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ref == "" {
		return nil, ErrNotFound
	}
	if c, ok := r.containers[ref]; ok {
		return c, nil
	}
	if id, ok := r.names[ref]; ok {
		if c, ok := r.containers[id]; ok {
			return c, nil
		}
	}
	var found *container
	for id, c := range r.containers {
		if strings.HasPrefix(id, ref) {
			if found != nil {
				return nil, fmt.Errorf("%w: %s", ErrAmbiguous, ref)
			}
			found = c
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, ref)
	}
	return found, nil
}

// Wait blocks until the container is no longer running (or was never
// started and is removed) and returns its final state, exit code included.
// It also works for --rm containers, whose record disappears right after.
func (r *Runtime) Wait(ctx context.Context, idOrName string) (api.Container, error) {
	if err := r.waitReady(ctx); err != nil {
		return api.Container{}, err
	}
	c, err := r.lookup(idOrName)
	if err != nil {
		return api.Container{}, err
	}
	for {
		r.mu.Lock()
		done := c.done
		r.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return api.Container{}, ctx.Err()
		case <-r.runDone:
			return api.Container{}, ErrClosed
		}
		r.mu.Lock()
		if c.done == done || c.removed {
			out := c.apiLocked()
			r.mu.Unlock()
			return out, nil
		}
		r.mu.Unlock() // restarted meanwhile: wait for the new run
	}
}

// Subscribe returns a channel of container events (state and health
// changes). Events are dropped, with a warning, for a subscriber whose
// buffer is full, so consumers should also resync with List. The channel is
// closed by Unsubscribe or when Run returns.
func (r *Runtime) Subscribe() <-chan Event {
	ch := make(chan Event, 256)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		close(ch)
		return ch
	}
	r.subs[ch] = struct{}{}
	return ch
}

// Unsubscribe stops and closes a channel returned by Subscribe.
func (r *Runtime) Unsubscribe(ch <-chan Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.subs {
		if (<-chan Event)(c) == ch {
			delete(r.subs, c)
			close(c)
		}
	}
}

// emit publishes c's current state.
func (r *Runtime) emit(c *container) {
	r.mu.Lock()
	ev := Event{
		ContainerID: c.rec.ID, Name: c.rec.Name, TaskID: c.rec.Spec.TaskID,
		State: c.rec.State, ExitCode: c.rec.ExitCode, Health: c.health, IP: c.rec.IP,
		Error: c.rec.Error, Time: time.Now().UTC(), OOMKilled: c.rec.OOMKilled,
	}
	r.mu.Unlock()
	r.publish(ev)
}

func (r *Runtime) publish(ev Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for ch := range r.subs {
		select {
		case ch <- ev:
		default:
			r.log.Warn("event dropped: subscriber is slow", "id", ShortID(ev.ContainerID), "state", ev.State)
		}
	}
}

func isNotExist(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "does not exist") || strings.Contains(err.Error(), "not exist"))
}

func isNotRunning(err error) bool {
	return err != nil && (isNotExist(err) || strings.Contains(err.Error(), "not running") || strings.Contains(err.Error(), "process already finished"))
}

// readExitRecord reads the exit record in dir (the supervisor's in the
// bundle dir, or an older init's state dir) without following links and
// with a size cap. A missing record gives an error wrapping fs.ErrNotExist.
func readExitRecord(dir string) (containerinit.ExitStatus, error) {
	var st containerinit.ExitStatus
	b, err := readCapped(dir, exitRecordFile, maxExitRecord)
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("decode %s: %w", filepath.Join(dir, exitRecordFile), err)
	}
	return st, nil
}

func fileExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func writeJSON(p string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return writeFileAtomic(p, b, 0o600)
}
