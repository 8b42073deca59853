// Package runtime runs the containers of one node: overlayfs rootfs from the
// image store's layers, an OCI bundle built from runtime-spec types, runc
// (containerd/go-runc) without a shim per container, per-container logs and
// health checks.
//
// Supervision. Each container's PID 1 is a tiny static init (shoal-init,
// runtime/init, C without libc; tini-static when it is not installed) that
// forwards signals and reaps zombies. One supervisor process per node
// (supervisor.go) runs `runc run --detach`, so it becomes the parent of
// every container's init: it holds the containers' stdout and stderr, writes
// their logs with rotation, and records each exit status in the container's
// dir (not its bundle), out of the container's reach. The agent is not in
// the data path: it asks the supervisor to start containers and follows one
// stream of exit events. It never waits for "any child" (a wait4(-1) loop
// would steal the exit statuses of commands other packages run through
// os/exec); the supervisor, which runs nothing else, does.
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
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"

	runc "github.com/containerd/go-runc"
	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/companion"
	"github.com/shoal-org/shoal/runtime/eventhub"
	"github.com/shoal-org/shoal/runtime/layout"
	"github.com/shoal-org/shoal/runtime/mountlayer"
	"github.com/shoal-org/shoal/runtime/record"
	"github.com/shoal-org/shoal/runtime/seccompprog"
	"github.com/shoal-org/shoal/runtime/supclient"
	"github.com/shoal-org/shoal/runtime/supervisor"
	"github.com/shoal-org/shoal/runtime/volume"
)

// Runtime manages the containers of this node. Create it with New and drive
// its background work with Run; the container methods are safe for
// concurrent use and wait for Run to have re-adopted existing containers.
type Runtime struct {
	cfg    Config
	log    *slog.Logger
	runc   oneProcRunc
	sup    *supclient.Client
	vols   *volume.Store // named volumes (mounts.go)
	events *eventhub.Hub // subscribers (events.go)

	mountLayers  *mountlayer.Store // Root/mountpoints (mountpoints.go)
	starts       *startGate        // bounds concurrent `runc run` (startgate.go)
	noMountLayer bool              // tests: create rootfs mounts as before the layer
	// seccomp has runc's seccomp programs, which containers' inits
	// install (runtime/seccompprog); nil leaves every profile to runc.
	seccomp *seccompprog.Cache

	ready   chan struct{} // closed once Run adopted existing containers
	runCtx  context.Context
	runDone chan struct{} // closed when Run returns
	wg      sync.WaitGroup

	mu         sync.Mutex
	containers map[string]*container // by ID
	names      map[string]string     // name -> ID
	stopping   bool                  // Run's context ended: spawn refuses
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

// seccompDir is where runc's seccomp programs are kept (runtime/seccompprog),
// under Root: not under RunRoot, whose entries are containers' run dirs.
const seccompDir = "seccomp"

// New validates cfg, prepares Root and loads the records of containers left
// by a previous agent. It starts nothing: call Run.
func New(cfg Config) (*Runtime, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := companion.CheckStatic(cfg.InitBinary); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	dirs := []string{filepath.Join(cfg.Root, "containers"), filepath.Join(cfg.Root, "netns"), cfg.RuncRoot}
	if cfg.RunRoot != "" {
		dirs = append(dirs, cfg.RunRoot)
	}
	// Root-only, also when an older agent made them 0711 (MkdirAll leaves
	// an existing dir as it is): below them are every container's rootfs
	// mount and upper dir, whose paths /proc/self/mountinfo shows to
	// anyone, and through which any user of the host would run an image's
	// setuid binaries as root (CVE-2021-41091) and read the containers'
	// files.
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return nil, fmt.Errorf("chmod %s: %w", d, err)
		}
	}
	if cfg.RunRoot != "" && !onTmpfs(cfg.RunRoot) {
		cfg.Logger.Info("the containers' run dir is not on tmpfs: container starts write more file-system metadata", "run_root", cfg.RunRoot)
	}
	useSlackMonitor()
	r := &Runtime{
		cfg:         cfg,
		log:         cfg.Logger.With("component", "runtime"),
		runc:        oneProcRunc{&runc.Runc{Command: cfg.RuncBinary, Root: cfg.RuncRoot}},
		sup:         supclient.New(cfg.Root, cfg.SupervisorBinary, cfg.Logger.With("component", "runtime")),
		mountLayers: &mountlayer.Store{Dir: filepath.Join(cfg.Root, mountLayersDir)},
		seccomp: &seccompprog.Cache{
			Runc: cfg.RuncBinary, Dir: filepath.Join(cfg.Root, seccompDir), Env: []string{supervisor.RuncProcs},
			CgroupParent: cfg.CgroupParent, Init: cfg.InitBinary, Log: cfg.Logger.With("component", "runtime"),
		},
		starts:     newStartGate(goruntime.NumCPU(), startStuckAfter),
		ready:      make(chan struct{}),
		runDone:    make(chan struct{}),
		containers: map[string]*container{},
		names:      map[string]string{},
	}
	r.events = eventhub.New(r.log)
	vols, err := volume.New(filepath.Join(cfg.Root, "volumes"))
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
		rec, err := record.LoadDir(cfg.Root, e.Name())
		if err != nil {
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

// firstWatchTries is how many times Run tries to watch the supervisor
// before the runtime is ready (a second apart).
const firstWatchTries = 5

// Run re-adopts the containers left by a previous agent, then supervises
// containers (exit watching, health checks, --rm) until ctx ends. It returns
// when ctx ends, leaving containers running. Call it once.
func (r *Runtime) Run(ctx context.Context) error {
	defer close(r.runDone)
	r.runCtx = ctx
	// A few tries before the runtime is ready: no start is in flight yet,
	// so a watch made now judges every container right. One made later by
	// Follow can take a container whose start is still on its way to the
	// supervisor for lost (its exit code then goes unknown).
	running, conn, br, err := r.sup.WatchTries(ctx, firstWatchTries)
	if err != nil {
		// Containers already running are watched by pidfd; starts will
		// try to reach (or start) the supervisor again, and Follow keeps
		// trying to watch it, without which no later exit would be seen.
		r.log.Error("node supervisor unavailable", "err", err)
	}
	r.adopt(ctx, running)
	r.spawn(func() { r.sup.Follow(ctx, conn, br) })
	close(r.ready)

	<-ctx.Done()
	r.mu.Lock()
	r.stopping = true // no goroutine starts after this
	r.mu.Unlock()
	r.wg.Wait()
	r.events.Close()
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
		if c.rec.State == api.ContainerExited && states[id] != nil {
			// The last agent published the exit and died before its
			// release (finishExit): finish it, so that a restart's
			// attachment is the only one.
			r.release(ctx, c)
			continue
		}
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
			!fileExists(filepath.Join(r.pathsOf(c).Dir, exitRecordFile)) {
			// Running, but no supervisor holds it: it was started by an
			// older Shoal, or its supervisor died.
			r.log.Warn("container runs without a supervisor: its exit code will not be known", "id", ShortID(id), "pid", st.Pid)
			r.watched(c)
			r.watchPidfd(c, st.Pid)
			r.startHealth(c)
			continue
		}
		// It ended while we were away (or runc lost it).
		r.finishExit(c, c.rec.Pid)
	}
	// Run dirs without a record or a container dir (a crash between
	// making one and the other); those with a dir go with it below.
	if r.cfg.RunRoot != "" {
		runEnts, _ := os.ReadDir(r.cfg.RunRoot)
		for _, e := range runEnts {
			r.mu.Lock()
			_, known := r.containers[e.Name()]
			r.mu.Unlock()
			if !known && e.IsDir() && layout.ValidName(e.Name()) && !fileExists(filepath.Join(r.cfg.Root, "containers", e.Name())) {
				r.log.Warn("removing leftover run dir", "id", e.Name())
				r.cleanupLeftover(ctx, e.Name())
			}
		}
	}
	// Directories without a record: half-made containers.
	ents, _ := os.ReadDir(filepath.Join(r.cfg.Root, "containers"))
	for _, e := range ents {
		r.mu.Lock()
		_, known := r.containers[e.Name()]
		r.mu.Unlock()
		if !known && e.IsDir() {
			r.log.Warn("removing leftover container dir", "id", e.Name())
			r.cleanupLeftover(ctx, e.Name())
		}
	}
	r.pruneMountLayers()
}

// cleanupLeftover cleans up container id, which has no (valid) record to
// say which layout it had: both.
func (r *Runtime) cleanupLeftover(ctx context.Context, id string) {
	_ = r.cleanup(ctx, id, layout.For(r.cfg.Root, id, ""))
	if run := layout.RunDirFor(r.cfg.RunRoot, id, true); run != "" && layout.ValidName(id) {
		_ = r.cleanup(ctx, id, layout.For(r.cfg.Root, id, run).WithEtcTmpfs())
	}
}

// onTmpfs reports whether dir is on a tmpfs (or ramfs): files made and
// deleted there never reach a disk.
func onTmpfs(dir string) bool {
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return false
	}
	return fs.Type == unix.TMPFS_MAGIC || fs.Type == unix.RAMFS_MAGIC
}

func isNotExist(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "does not exist") || strings.Contains(err.Error(), "not exist"))
}

func isNotRunning(err error) bool {
	return err != nil && (isNotExist(err) || strings.Contains(err.Error(), "not running") || strings.Contains(err.Error(), "process already finished"))
}

func fileExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
