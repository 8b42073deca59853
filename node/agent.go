// Package node is the Shoal agent: it wires membership, consensus, the
// runtime and the HTTP API together, and runs the leader's loops (node
// status, autopilot, scheduler) and every node's reconciler.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/httpapi"
	"github.com/shoal-org/shoal/node/identity"
	"github.com/shoal-org/shoal/node/instance"
	"github.com/shoal-org/shoal/node/memtrim"
	"github.com/shoal-org/shoal/node/writes"
	"github.com/shoal-org/shoal/runtime"
	"github.com/shoal-org/shoal/runtime/image"
)

// Sentinel errors of the agent, answered to the CLI with a clear message.
var (
	// ErrNotLeader: the write reached a node that is not the leader.
	ErrNotLeader = consensus.ErrNotLeader
	// ErrNoCluster: the command needs a cluster and this node is in none.
	ErrNoCluster = errors.New("this node is not part of a cluster: run `shoal init` or `shoal join`")
	// ErrAlreadyInCluster: init or join on a node that already is in one.
	ErrAlreadyInCluster = errors.New("this node is already part of a cluster")
	// ErrLastMember: `shoal leave` without --force on the only member of
	// its cluster, whose leave would erase the cluster (docker swarm leave
	// refuses the last manager the same way).
	ErrLastMember = errors.New("this node is the only member of its cluster: leaving erases the cluster and everything in it " +
		"(services, networks, secrets, configs); run `shoal leave --force` to do so anyway")
	// ErrNoQuorum: no leader could commit the write within the write timeout.
	ErrNoQuorum = writes.ErrNoQuorum
	// ErrOutcomeUnknown: an attempt of the write may have been committed
	// and the retry was refused by the state it may have changed itself
	// (writes.ErrOutcomeUnknown).
	ErrOutcomeUnknown = writes.ErrOutcomeUnknown
)

// Agent is one running `shoal agent`.
type Agent struct {
	cfg Config
	log *slog.Logger
	ctx context.Context
	id  identity.Node

	images *image.Store
	rt     *runtime.Runtime
	net    netAttacher // the runtime's network: the overlay once it is up

	// joinMu serialises init, join, leave and re-joins after fencing.
	joinMu sync.Mutex
	// fenced hands a fenced cluster instance to fencedRejoinLoop (fence.go).
	fenced chan *instance.Instance

	mu sync.RWMutex
	cl *instance.Instance // nil while the node is in no cluster

	removedCh chan removalNotice // a cluster removed this node (revocation.go)

	obs observer // event history and metrics (node/events, node/metrics; observer.go)
}

// trimFirst and trimEvery time the agent's trims of its binary's resident
// pages (node/memtrim): the first once a start or a join is over (30 s: a
// join and the first sync take a few seconds even at 100 agents), then
// now and then for the pages a rare command touched. Each round costs the
// idle loops a few hundred minor faults to bring back what they use.
const (
	trimFirst = 30 * time.Second
	trimEvery = 5 * time.Minute
)

// Run starts an agent and blocks until ctx ends. On return every goroutine
// the agent started has stopped; containers keep running.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid configuration: %w", err)
	}
	logger := newLogger(cfg.LogLevel)
	a := &Agent{cfg: cfg, log: logger, ctx: ctx, fenced: make(chan *instance.Instance, 1), removedCh: make(chan removalNotice, 1)}
	return a.run(ctx)
}

func newLogger(level string) *slog.Logger {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		lv = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
}

func (a *Agent) run(ctx context.Context) error {
	if err := os.MkdirAll(a.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	id, err := identity.LoadOrCreate(a.cfg.DataDir, a.cfg.Hostname)
	if err != nil {
		return err
	}
	a.id = id
	a.log = a.log.With("node", api.ShortID(id.NodeID))

	// The dashboard first: a refused --ui-addr stops the agent before it
	// starts anything.
	if a.cfg.UIAddr != "" {
		uiLn, loopback, err := a.listenUI()
		if err != nil {
			return err
		}
		uiSrv := a.newUIServer(loopback)
		uiDone := make(chan struct{})
		go func() { defer close(uiDone); _ = uiSrv.Serve(uiLn) }()
		defer func() { _ = uiSrv.Close(); <-uiDone }()
		a.log.Info("dashboard listening", "addr", uiLn.Addr().String(), "loopback_only", loopback)
	}
	if err := a.startRuntime(ctx); err != nil {
		return err
	}
	if a.cfg.MetricsAddr != "" {
		_, stopMetrics, err := a.serveMetrics()
		if err != nil {
			return err
		}
		defer stopMetrics()
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	rtCtx, rtCancel := context.WithCancel(context.Background())
	defer rtCancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := a.rt.Run(rtCtx); err != nil {
			a.log.Error("runtime stopped", "err", err)
		}
	}()

	if err := sweepDropped(a.cfg.DataDir); err != nil {
		a.log.Warn("leftover of a leave", "err", err)
	}
	if instance.HasState(a.cfg.DataDir) {
		if err := a.startCluster(ctx, instance.Options{ForceNew: a.cfg.ForceNewCluster}); err != nil {
			return err
		}
	} else if a.cfg.ForceNewCluster {
		return errors.New("--force-new-cluster: this node has no cluster state to recover")
	}
	defer a.stopCluster()
	wg.Add(1)
	go func() { defer wg.Done(); a.fencedRejoinLoop(ctx) }()
	// A reset after removal needs the runtime: it ends before the runtime.
	var rmWG sync.WaitGroup
	defer rmWG.Wait()
	rmWG.Add(1)
	go func() { defer rmWG.Done(); a.resetOnRemoval(ctx) }()

	wg.Add(1)
	go func() { defer wg.Done(); a.newEventsLoop().Run(rtCtx) }()
	wg.Add(1)
	go func() { defer wg.Done(); memtrim.Loop(ctx, trimFirst, trimEvery, a.log) }()

	ln, err := httpapi.ListenUnix(a.cfg.Socket)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: a.routes(), ReadHeaderTimeout: 10 * time.Second}
	srvErr := make(chan error, 1)
	go func() { srvErr <- srv.Serve(ln) }()
	a.log.Info("agent started", "node_id", a.id.NodeID, "hostname", a.id.Hostname,
		"advertise", a.cfg.AdvertiseAddr, "socket", a.cfg.Socket)

	select {
	case <-ctx.Done():
	case err := <-srvErr:
		if !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("api server failed", "err", err)
		}
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutCtx)
	_ = srv.Close()
	_ = os.Remove(a.cfg.Socket)
	a.log.Info("agent stopping")
	return nil
}

func (a *Agent) startRuntime(ctx context.Context) error {
	icfg := image.DefaultConfig(filepath.Join(a.cfg.DataDir, "runtime", "images"))
	icfg.Logger = a.log.With("sub", "images")
	// The runtime is created after the store; containers only exist once
	// it is, so an image is in use only through a.rt.
	icfg.InUse = func(id string) bool { return a.rt != nil && a.rt.ImageInUse(id) }
	imgs, err := image.Open(icfg)
	if err != nil {
		return fmt.Errorf("open image store: %w", err)
	}
	a.images = imgs
	rc := runtime.DefaultConfig()
	rc.Root = filepath.Join(a.cfg.DataDir, "runtime")
	// runc state lives beside the socket, on tmpfs in production (/run):
	// containers do not survive a reboot, and neither should their state.
	rc.RuncRoot = filepath.Join(filepath.Dir(a.cfg.Socket), "runc-"+api.ShortID(a.id.NodeID))
	// The containers' bundles, /etc files and netns mounts go there too
	// (runtime.Config.RunRoot): made and deleted at every start and
	// removal, they cost no metadata writes on the data dir there.
	// Records, exit records and logs stay in Root.
	rc.RunRoot = filepath.Join(filepath.Dir(a.cfg.Socket), "containers-"+api.ShortID(a.id.NodeID))
	rc.CgroupParent = "/shoal-" + api.ShortID(a.id.NodeID)
	rc.Images = imgs
	rc.Network = &a.net.Attacher
	// Containers on the overlay resolve through the embedded DNS server on
	// the bridge address (service names, tasks.NAME, then upstream).
	rc.DNSFunc = func() []string {
		if ov := a.net.get(); ov != nil {
			return []string{ov.BridgeIP().String()}
		}
		return nil
	}
	rc.Logger = a.log.With("sub", "runtime")
	rt, err := runtime.New(rc)
	if err != nil {
		return fmt.Errorf("start runtime: %w", err)
	}
	a.rt = rt
	return nil
}
