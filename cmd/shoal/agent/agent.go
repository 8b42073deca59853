// Package agent is `shoal agent`: its flags, its YAML config file
// (config.go), systemd readiness (sdnotify.go) and the hidden pprof
// listener (pprof.go). It starts the agent through node.Run: what the CLI
// imports node for (DESIGN.md, Packages).
package agent

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shoal-org/shoal/api/timerslack"
	"github.com/shoal-org/shoal/cmd/shoal/shell"
	"github.com/shoal-org/shoal/cmd/shoal/specflags"
	"github.com/shoal-org/shoal/node"
)

// agentFlags are the values of `shoal agent`'s flags, to be copied into a
// node.Config (starting from node.DefaultConfig()).
type agentFlags struct {
	DataDir         string
	AdvertiseAddr   string
	ListenAddr      string
	Socket          string
	GossipPort      int
	ClusterPort     int
	GossipProfile   string // fast or tolerant (validated)
	ForceNewCluster bool
	LogLevel        string // debug, info, warn or error (validated)
	Hostname        string
	CertLifetime    time.Duration
	MetricsAddr     string // IP:PORT of /metrics; empty = off
	UIAddr          string // web dashboard IP:PORT, empty = off
	PprofAddr       string // hidden: loopback IP:PORT of net/http/pprof, empty = off
}

// Command defines `shoal agent`.
func Command() *cli.Command { return command(hooks{}) }

// hooks replace the agent's start and its default config file in tests;
// the zero value is the real thing.
type hooks struct {
	// start replaces runAgent.
	start func(context.Context, agentFlags) error
	// config replaces defaultConfigFile.
	config string
}

// command defines `shoal agent` with h.
func command(h hooks) *cli.Command {
	hostname, _ := os.Hostname()
	return &cli.Command{
		Name:  "agent",
		Usage: "run the shoal agent on this node",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "data-dir", Value: "/var/lib/shoal", Usage: "state directory (raft log, images, containers)"},
			&cli.StringFlag{Name: "advertise-addr", Usage: "IP other nodes reach this node at, or \"auto\" for the source address of the default route"},
			&cli.StringFlag{Name: "listen-addr", Usage: "IP to listen on for gossip and cluster traffic (default: advertise address)"},
			&cli.StringFlag{Name: "socket", Value: "/run/shoal/shoal.sock", Usage: "path of the API unix socket"},
			&cli.IntFlag{Name: "gossip-port", Value: 7946, Usage: "memberlist port (tcp+udp)"},
			&cli.IntFlag{Name: "cluster-port", Value: 2377, Usage: "mutual-TLS raft and RPC port"},
			&cli.StringFlag{Name: "gossip-profile", Value: node.DefaultConfig().GossipProfile, Usage: "failure detection: fast (raft heartbeats every 300 ms; a dead host found in under a second) or tolerant (heartbeats once a second; a dead host found in under 2 s up to 10 nodes, 3.6 s at 100; for agents that share starved CPUs or should idle near-free)"},
			&cli.BoolFlag{Name: "force-new-cluster", Usage: "restart as a single-voter cluster from the local state"},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
			&cli.StringFlag{Name: "hostname", Value: hostname, DefaultText: "this host's name", Usage: "node name shown in the cluster"},
			&cli.DurationFlag{Name: "cert-lifetime", Value: node.DefaultConfig().CertLifetime,
				Usage: "lifetime of the node certificates this node signs as leader (they renew at 1/2 to 2/3 of it)"},
			&cli.StringFlag{Name: "metrics-addr", Usage: "serve Prometheus metrics at http://IP:PORT/metrics (e.g. 127.0.0.1:9323; default off)"},
			&cli.StringFlag{Name: "ui-addr", Usage: "serve the web dashboard on IP:PORT (off by default; needs 'shoal ui token' first)"},
			&cli.StringFlag{Name: "debug-pprof-addr", Hidden: true, Usage: "serve net/http/pprof on a loopback IP:PORT (debugging; default off)"},
			&cli.StringFlag{Name: "config", Value: defaultConfigFile, Usage: "YAML file of agent flags (keys are the flag names; flags given here win); read only if present unless set"},
		},
		Action: func(c *cli.Context) error {
			if err := shell.NeedArgs(c, 0, 0); err != nil {
				return err
			}
			def := defaultConfigFile
			if h.config != "" {
				def = h.config
			}
			if err := applyAgentConfig(c, def); err != nil {
				return err
			}
			f, err := agentFlagsOf(c)
			if err != nil {
				return err
			}
			start := runAgent
			if h.start != nil {
				start = h.start
			}
			return start(c.Context, f)
		},
	}
}

// agentFlagsOf reads and checks the agent's flags.
func agentFlagsOf(c *cli.Context) (agentFlags, error) {
	f := agentFlags{
		DataDir:         c.String("data-dir"),
		AdvertiseAddr:   c.String("advertise-addr"),
		ListenAddr:      c.String("listen-addr"),
		Socket:          strings.TrimPrefix(c.String("socket"), "unix://"),
		GossipPort:      c.Int("gossip-port"),
		ClusterPort:     c.Int("cluster-port"),
		GossipProfile:   c.String("gossip-profile"),
		ForceNewCluster: c.Bool("force-new-cluster"),
		Hostname:        c.String("hostname"),
		CertLifetime:    c.Duration("cert-lifetime"),
		MetricsAddr:     c.String("metrics-addr"),
		UIAddr:          c.String("ui-addr"),
		PprofAddr:       c.String("debug-pprof-addr"),
	}
	f.LogLevel = strings.ToLower(c.String("log-level"))
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(f.LogLevel)); err != nil {
		return f, specflags.UsageErrorf("invalid --log-level %q: want debug, info, warn or error", c.String("log-level"))
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"gossip-port", f.GossipPort}, {"cluster-port", f.ClusterPort}} {
		if p.v < 0 || p.v > 65535 {
			return f, specflags.UsageErrorf("invalid --%s %d", p.name, p.v)
		}
	}
	if err := node.CheckGossipProfile(f.GossipProfile); err != nil {
		return f, specflags.UsageErrorf("invalid --gossip-profile: %v", err)
	}
	if f.CertLifetime < time.Minute {
		return f, specflags.UsageErrorf("invalid --cert-lifetime %s: at least 1m (certificates renew at half of it)", f.CertLifetime)
	}
	if err := checkPprofAddr(f.PprofAddr); err != nil {
		return f, specflags.UsageErrorf("%v", err)
	}
	if f.DataDir == "" || f.Socket == "" {
		return f, specflags.UsageErrorf("--data-dir and --socket must not be empty")
	}
	return f, nil
}

// runAgent starts the agent and blocks until ctx ends (SIGTERM or SIGINT).
func runAgent(ctx context.Context, f agentFlags) error {
	cfg := node.DefaultConfig()
	dataDir, err := filepath.Abs(f.DataDir)
	if err != nil {
		return specflags.UsageErrorf("invalid --data-dir %q: %v", f.DataDir, err)
	}
	cfg.DataDir = dataDir
	cfg.AdvertiseAddr = f.AdvertiseAddr
	if f.AdvertiseAddr == autoAdvertise {
		if cfg.AdvertiseAddr, err = detectAdvertiseAddr(); err != nil {
			return specflags.UsageErrorf("%v", err)
		}
	}
	cfg.ListenAddr = f.ListenAddr
	cfg.Socket = f.Socket
	cfg.GossipPort = f.GossipPort
	cfg.ClusterPort = f.ClusterPort
	cfg.GossipProfile = f.GossipProfile
	cfg.ForceNewCluster = f.ForceNewCluster
	cfg.LogLevel = f.LogLevel
	cfg.UIAddr = f.UIAddr
	if f.CertLifetime != 0 {
		cfg.CertLifetime = f.CertLifetime
	}
	cfg.MetricsAddr = f.MetricsAddr
	if f.Hostname != "" {
		cfg.Hostname = f.Hostname
	}
	if err := cfg.Validate(); err != nil {
		return specflags.UsageErrorf("%v", err)
	}
	if n := agentProcs(cfg.GossipProfile, os.Getenv("GOMAXPROCS")); n > 0 {
		goruntime.GOMAXPROCS(n)
	}
	if err := timerslack.Coarsen(agentSlack); err != nil {
		slog.Debug("agent: threads keep the default timer slack", "err", err)
	}
	nctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if f.PprofAddr != "" {
		if _, err := servePprof(nctx, f.PprofAddr); err != nil {
			return err
		}
	}
	go notifyWhenListening(nctx, cfg.Socket, 100*time.Millisecond)
	return node.Run(ctx, cfg)
}

// agentProcs is the GOMAXPROCS the agent sets for its profile (Profile.Procs),
// or 0 to leave Go's choice: when the profile sets none, or the operator set
// the GOMAXPROCS environment variable (env), which wins.
func agentProcs(profile, env string) int {
	if env != "" {
		return 0
	}
	prof, err := node.ProfileByName(profile)
	if err != nil {
		return 0
	}
	return prof.Procs
}
