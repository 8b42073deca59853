package agent

import (
	"strings"
	"testing"
	"time"
)

func TestCLIAgentFlags(t *testing.T) {
	got, _, code := runAgentCLI(t, "", strings.Fields("--data-dir /tmp/d --advertise-addr 10.0.0.5 --listen-addr 0.0.0.0 "+
		"--socket unix:///tmp/d/s.sock --gossip-port 8946 --cluster-port 3377 --force-new-cluster --log-level DEBUG --hostname n5 --cert-lifetime 5m --gossip-profile tolerant")...)
	want := agentFlags{DataDir: "/tmp/d", AdvertiseAddr: "10.0.0.5", ListenAddr: "0.0.0.0", Socket: "/tmp/d/s.sock",
		GossipPort: 8946, ClusterPort: 3377, GossipProfile: "tolerant", ForceNewCluster: true, LogLevel: "debug", Hostname: "n5", CertLifetime: 5 * time.Minute}
	if code != 0 || got != want {
		t.Fatalf("exit %d, flags %+v, want %+v", code, got, want)
	}
	got, _, code = runAgentCLI(t, "")
	if code != 0 || got.DataDir != "/var/lib/shoal" || got.Socket != "/run/shoal/shoal.sock" || got.GossipPort != 7946 || got.ClusterPort != 2377 || got.GossipProfile != "fast" || got.LogLevel != "info" || got.Hostname == "" {
		t.Fatalf("defaults: exit %d, %+v", code, got)
	}
	if _, _, code := runAgentCLI(t, "", "--cert-lifetime", "10s"); code != 2 {
		t.Fatalf("--cert-lifetime 10s: exit %d, want 2", code)
	}
	if _, _, code := runAgentCLI(t, "", "--log-level", "loud"); code != 2 {
		t.Fatalf("bad log level: exit %d", code)
	}
	if _, _, code := runAgentCLI(t, "", "--gossip-port", "70000"); code != 2 {
		t.Fatalf("bad port: exit %d", code)
	}
	if _, errOut, code := runAgentCLI(t, "", "--gossip-profile", "slow"); code != 2 || !strings.Contains(errOut, "gossip-profile") {
		t.Fatalf("bad gossip profile: exit %d, stderr %q", code, errOut)
	}
}

func TestCLIAgentMetricsAddr(t *testing.T) {
	if got, _, code := runAgentCLI(t, "", "--metrics-addr", "127.0.0.1:9323"); code != 0 || got.MetricsAddr != "127.0.0.1:9323" {
		t.Fatalf("exit %d, metrics addr %q", code, got.MetricsAddr)
	}
	if got, _, code := runAgentCLI(t, ""); code != 0 || got.MetricsAddr != "" {
		t.Fatalf("default: exit %d, metrics addr %q (want off)", code, got.MetricsAddr)
	}
}
