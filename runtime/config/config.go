// Package config is what a Runtime is given (Config), its defaults
// (Default) and its checks (Config.Validate, which also finds runc, the
// container init and the supervisor binary). Package runtime re-exports
// Config, DefaultConfig, ImageResolver, Network and ErrInvalidConfig; it
// imports this package, never the other way round.
package config

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/companion"
	"github.com/shoal-org/shoal/runtime/containerinit"
)

// ErrInvalid: Validate refused the configuration (runtime.ErrInvalidConfig).
var ErrInvalid = errors.New("invalid runtime config")

// ImageResolver gives the runtime what it needs from the image store:
// the image record, its config and the unpacked layer directories, base
// layer first. *image.Store implements it.
type ImageResolver interface {
	Resolve(ref string) (api.Image, api.ImageConfig, []string, error)
}

// Network plugs containers into the node's network. Attach is called once
// the container's network namespace exists (before the container starts) and
// returns the container's IP; Detach releases it when the container exits or
// is removed. Both must be idempotent; Detach must succeed for an unknown
// container. A nil Network leaves containers with loopback only.
type Network interface {
	Attach(ctx context.Context, containerID, netnsPath string) (ip string, err error)
	Detach(ctx context.Context, containerID, netnsPath string) error
}

// Config configures a Runtime. Build it from Default (runtime.DefaultConfig);
// it must not be changed after runtime.New.
type Config struct {
	// Root holds container dirs (Root/containers/<id>), e.g. DATA/runtime,
	// and the network namespaces of containers made without a run dir
	// (Root/netns/<id>).
	Root string
	// RunRoot holds the files of each container that need not outlive the
	// machine (RunRoot/<id>: the OCI bundle with its rootfs mount point,
	// the /etc files, the netns, runc's log and pid files), apart from
	// what must (Root/containers/<id>: record, exit record, logs, the
	// overlay's upper and work dirs). It belongs on tmpfs, beside RuncRoot
	// (the agent's: SOCKETDIR/containers-<node>): files made and deleted
	// there cost no metadata writes on the data dir's filesystem. Off
	// tmpfs it works the same, only without that gain. Empty keeps
	// everything under Root, as Shoal did before; each container records
	// where its files are, so changing this affects new containers only.
	RunRoot string
	// RuncRoot is runc's state dir, one per agent (e.g. /run/shoal-<id>/runc),
	// so that several agents can share a machine.
	RuncRoot string
	// CgroupParent is the cgroup under which containers get their own cgroup
	// (CgroupParent/<id>), one per agent, e.g. /shoal-<nodeid>.
	CgroupParent string
	// RuncBinary is the runc executable (name looked up in PATH, or a path).
	RuncBinary string
	// InitBinary is the host path of the tiny static init bind-mounted into
	// every container at ocispec.InitPath and run as its PID 1 (`init -- CMD...`):
	// it must forward signals to CMD, reap zombies and exit with CMD's
	// status. Empty means Shoal's own (companion.InitName: next to the
	// running executable, else in companion.Dir), else companion.DefaultInit
	// looked up in PATH (Debian's tini package), with a warning: it costs
	// ~60 KiB more per container.
	InitBinary string
	// SupervisorBinary is the binary started (as shoal-supervisor) to be the
	// node's supervisor when none runs; it must dispatch to
	// runtime.SupervisorMain (see runtime.IsSupervisorInvocation). Empty
	// means the supervisor's own binary
	// (companion.SupervisorName, runtime/cmd/shoal-supervisor: next to the
	// running executable, else in companion.Dir), else the running
	// executable, which costs the supervisor about 2 MiB more (the agent's
	// package data; see runtime/README.md).
	SupervisorBinary string
	// LogMaxSize caps one container log file; LogMaxFiles is how many files
	// (current + rotated) are kept.
	LogMaxSize  int64
	LogMaxFiles int
	// StopGrace is the default time between SIGTERM and SIGKILL.
	StopGrace time.Duration
	// ResolvConf is the host file containers' /etc/resolv.conf derives from;
	// loopback nameservers are dropped (they mean nothing inside a netns).
	ResolvConf string
	// DNS, when set, replaces the nameservers of ResolvConf (the embedded DNS
	// server on the bridge address).
	DNS []string
	// DNSFunc, when set, is asked at each container creation for the
	// nameservers and overrides DNS: the embedded DNS server's address is
	// only known once the node has joined a cluster and got its subnet.
	// An empty answer falls back to DNS and ResolvConf.
	DNSFunc func() []string
	// NoSeccomp disables the default seccomp profile (debugging only).
	NoSeccomp bool
	// Logger receives the runtime's logs.
	Logger *slog.Logger
	// Images resolves image references (required).
	Images ImageResolver
	// Network attaches containers to the overlay; nil means loopback only.
	Network Network
}

// Default returns a config with the defaults filled in; the caller
// sets Root, RunRoot, RuncRoot, CgroupParent and Images.
func Default() Config {
	return Config{
		RuncBinary:  "runc",
		LogMaxSize:  containerinit.DefaultLogMaxSize,
		LogMaxFiles: containerinit.DefaultLogMaxFiles,
		StopGrace:   10 * time.Second,
		ResolvConf:  "/etc/resolv.conf",
		Logger:      slog.Default(),
	}
}

// Validate checks the config and resolves InitBinary and RuncBinary to
// absolute paths (logging a warning when the init falls back to tini). It
// does not touch the filesystem otherwise.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...))
	}
	if c.Root == "" || !filepath.IsAbs(c.Root) {
		bad("Root must be an absolute path, got %q", c.Root)
	}
	if c.RuncRoot == "" || !filepath.IsAbs(c.RuncRoot) {
		bad("RuncRoot must be an absolute path, got %q", c.RuncRoot)
	}
	if c.RunRoot != "" && (!filepath.IsAbs(c.RunRoot) || filepath.Clean(c.RunRoot) == filepath.Clean(c.Root)) {
		bad("RunRoot must be empty or an absolute path other than Root, got %q", c.RunRoot)
	}
	if c.CgroupParent == "" || !filepath.IsAbs(c.CgroupParent) {
		bad("CgroupParent must start with /, got %q", c.CgroupParent)
	}
	if c.LogMaxSize <= 0 || c.LogMaxFiles <= 0 {
		bad("LogMaxSize and LogMaxFiles must be positive")
	}
	if c.StopGrace < 0 {
		bad("StopGrace must not be negative")
	}
	if c.Images == nil {
		bad("Images is required")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.RuncBinary == "" {
		c.RuncBinary = "runc"
	}
	if p, err := exec.LookPath(c.RuncBinary); err != nil {
		bad("runc binary %q: %v", c.RuncBinary, err)
	} else {
		c.RuncBinary = p
	}
	if c.InitBinary == "" {
		exe, _ := os.Executable()
		cands := companion.Candidates(exe, companion.InitName)
		if p, fallback, err := companion.FindInit(cands, exec.LookPath); err != nil {
			bad("container init: %v (make build puts %s next to shoal)", err, companion.InitName)
		} else {
			c.InitBinary = p
			if fallback {
				c.Logger.Warn("container init "+companion.InitName+" not found; containers run under "+p+", ~60 KiB more per container",
					"looked_in", strings.Join(cands, " "))
			}
		}
	}
	if c.InitBinary != "" && !filepath.IsAbs(c.InitBinary) {
		bad("InitBinary must be absolute, got %q", c.InitBinary)
	}
	if c.SupervisorBinary == "" {
		p, err := os.Executable()
		if err != nil {
			bad("find own executable for SupervisorBinary: %v", err)
		} else if own := companion.FirstExecutable(companion.Candidates(p, companion.SupervisorName)); own != "" {
			c.SupervisorBinary = own
		} else {
			c.SupervisorBinary = p
			c.Logger.Info("supervisor binary "+companion.SupervisorName+" not found; the node supervisor runs as "+p+", ~2 MiB more",
				"looked_in", strings.Join(companion.Candidates(p, companion.SupervisorName), " "))
		}
	}
	if c.SupervisorBinary != "" && !filepath.IsAbs(c.SupervisorBinary) {
		bad("SupervisorBinary must be absolute, got %q", c.SupervisorBinary)
	}
	return errors.Join(errs...)
}
