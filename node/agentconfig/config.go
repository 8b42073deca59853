// Package agentconfig is what `shoal agent` is told: its settings, their
// production defaults and their checks. It stands apart from node so that
// the agent's cluster half (node/instance) reads the same settings without
// importing the agent.
package agentconfig

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/profile"
	"github.com/shoal-org/shoal/node/ui"
)

// Config configures an agent. Derive it from Default; it is not mutated
// after the agent starts.
type Config struct {
	DataDir       string
	AdvertiseAddr string // IP other nodes reach this node on
	ListenAddr    string // IP to bind; empty = all addresses
	Socket        string // unix socket of the HTTP API
	GossipPort    int
	ClusterPort   int
	// GossipProfile names the failure-detection profile (node/profile): "fast"
	// (the default: raft heartbeats every 300 ms, a dead host found in under a second) or "tolerant"
	// (2 s, for agents sharing starved CPUs or meant to idle near-free).
	GossipProfile string
	Hostname      string
	LogLevel      string
	// ForceNewCluster rewrites the Raft configuration to this node alone,
	// keeping the state, to recover a cluster that lost quorum.
	ForceNewCluster bool

	// Cluster defaults applied at init.
	ClusterCIDR string
	VIPCIDR     string

	// WriteTimeout bounds a write from the API: leader lookup, forwarding and
	// commit, retried across leader changes.
	WriteTimeout time.Duration
	// DeadVoterGrace is how long a voter may stay down before autopilot
	// replaces it with a healthy non-voter.
	DeadVoterGrace time.Duration
	// CertLifetime is the lifetime of the node certificates this node
	// signs while it leads (--cert-lifetime); they renew at 1/2 to 2/3 of it.
	CertLifetime time.Duration
	// RestartGrace is how long the leader waits before it marks down (and
	// reschedules the tasks of) a node whose agent stopped cleanly, saying
	// goodbye to gossip: a restart or an upgrade, during which the node's
	// containers keep running. A node that fails without a goodbye is
	// marked down at once, as before.
	RestartGrace time.Duration

	// MetricsAddr is the IP:PORT that serves Prometheus metrics at
	// /metrics; empty = off.
	MetricsAddr string
	// UIAddr is the web dashboard's IP:PORT (--ui-addr); empty = off. A
	// non-loopback address needs a UI token (node/ui).
	UIAddr string
}

// Default returns the settings of a production agent.
func Default() Config {
	host, _ := os.Hostname()
	return Config{
		DataDir:        "/var/lib/shoal",
		Socket:         "/run/shoal/shoal.sock",
		GossipPort:     7946,
		ClusterPort:    2377,
		Hostname:       host,
		LogLevel:       "info",
		ClusterCIDR:    "10.42.0.0/16",
		VIPCIDR:        "10.43.0.0/16",
		WriteTimeout:   10 * time.Second,
		DeadVoterGrace: 10 * time.Second,
		CertLifetime:   pki.DefaultNodeCertValidity,
		RestartGrace:   15 * time.Second,
		GossipProfile:  profile.Default,
	}
}

// Validate reports every problem of the configuration, joined.
func (c Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("--data-dir is required"))
	}
	if c.AdvertiseAddr == "" {
		errs = append(errs, errors.New("--advertise-addr is required (the IP other nodes reach this one on)"))
	} else if ip := net.ParseIP(c.AdvertiseAddr); ip == nil || ip.IsUnspecified() {
		errs = append(errs, fmt.Errorf("--advertise-addr %q is not a usable IP address", c.AdvertiseAddr))
	}
	if c.ListenAddr != "" && net.ParseIP(c.ListenAddr) == nil {
		errs = append(errs, fmt.Errorf("--listen-addr %q is not an IP address", c.ListenAddr))
	}
	if c.Socket == "" {
		errs = append(errs, errors.New("--socket is required"))
	}
	for name, p := range map[string]int{"--gossip-port": c.GossipPort, "--cluster-port": c.ClusterPort} {
		if p <= 0 || p > 65535 {
			errs = append(errs, fmt.Errorf("%s %d is out of range 1-65535", name, p))
		}
	}
	if c.GossipPort == c.ClusterPort {
		errs = append(errs, errors.New("--gossip-port and --cluster-port must differ"))
	}
	if c.Hostname == "" {
		errs = append(errs, errors.New("--hostname is empty"))
	}
	if err := profile.Check(c.GossipProfile); err != nil {
		errs = append(errs, fmt.Errorf("--gossip-profile: %w", err))
	}
	if _, _, err := net.ParseCIDR(c.ClusterCIDR); err != nil {
		errs = append(errs, fmt.Errorf("cluster CIDR: %w", err))
	}
	if _, _, err := net.ParseCIDR(c.VIPCIDR); err != nil {
		errs = append(errs, fmt.Errorf("VIP CIDR: %w", err))
	}
	if c.CertLifetime < pki.MinNodeCertValidity {
		errs = append(errs, fmt.Errorf("--cert-lifetime %s is shorter than %s", c.CertLifetime, pki.MinNodeCertValidity))
	}
	if c.UIAddr != "" {
		if _, err := ui.AddrLoopback(c.UIAddr); err != nil {
			errs = append(errs, err)
		}
	}
	if c.WriteTimeout <= 0 {
		errs = append(errs, errors.New("write timeout must be positive"))
	}
	if c.MetricsAddr != "" {
		if host, port, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			errs = append(errs, fmt.Errorf("--metrics-addr %q: want IP:PORT (e.g. 127.0.0.1:9323)", c.MetricsAddr))
		} else if p, perr := strconv.Atoi(port); perr != nil || p < 0 || p > 65535 || (host != "" && net.ParseIP(host) == nil) {
			errs = append(errs, fmt.Errorf("--metrics-addr %q: want IP:PORT (e.g. 127.0.0.1:9323)", c.MetricsAddr))
		}
	}
	return errors.Join(errs...)
}

// BindIP is the address the agent's ports bind: --listen-addr, else the
// advertised one.
func (c Config) BindIP() string {
	if c.ListenAddr != "" {
		return c.ListenAddr
	}
	return c.AdvertiseAddr
}

// ClusterAddr is the cluster port as other nodes dial it.
func (c Config) ClusterAddr() string {
	return net.JoinHostPort(c.AdvertiseAddr, fmt.Sprint(c.ClusterPort))
}
