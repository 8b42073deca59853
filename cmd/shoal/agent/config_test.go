package agent

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shoal-org/shoal/cmd/shoal/shell"
)

// runAgentCLI runs `shoal agent ARGS` in-process with a fake agent start and
// returns the flags the agent would have started with, stderr and the exit
// code. def stands in for /etc/shoal/agent.yaml.
func runAgentCLI(t *testing.T, def string, args ...string) (agentFlags, string, int) {
	t.Helper()
	var got agentFlags
	var errOut bytes.Buffer
	s := &shell.Shell{Stdout: &bytes.Buffer{}, Stderr: &errOut, Stdin: strings.NewReader(""), Poll: time.Millisecond, Now: time.Now}
	app := &cli.App{Name: "shoal", Writer: s.Stdout, ErrWriter: s.Stderr, ExitErrHandler: func(*cli.Context, error) {},
		Commands: []*cli.Command{command(hooks{config: def, start: func(_ context.Context, f agentFlags) error { got = f; return nil }})}}
	code := s.ExitCode(app.RunContext(context.Background(), append([]string{"shoal", "agent"}, args...)))
	return got, errOut.String(), code
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAgentConfigFile(t *testing.T) {
	full := `# every flag may be a key
data-dir: /srv/shoal
advertise-addr: 192.0.2.7
listen-addr: 0.0.0.0
socket: unix:///run/s/shoal.sock
gossip-port: 8946
cluster-port: 3377
gossip-profile: tolerant
force-new-cluster: true
log-level: WARN
hostname: edge-1
cert-lifetime: 48h
metrics-addr: 127.0.0.1:9323
`
	got, errOut, code := runAgentCLI(t, "", "--config", writeConfig(t, full))
	want := agentFlags{DataDir: "/srv/shoal", AdvertiseAddr: "192.0.2.7", ListenAddr: "0.0.0.0", Socket: "/run/s/shoal.sock",
		GossipPort: 8946, ClusterPort: 3377, GossipProfile: "tolerant", ForceNewCluster: true, LogLevel: "warn", Hostname: "edge-1", CertLifetime: 48 * time.Hour,
		MetricsAddr: "127.0.0.1:9323"}
	if code != 0 || got != want {
		t.Fatalf("exit %d (%s), flags %+v, want %+v", code, errOut, got, want)
	}

	// Flags win over the file, key by key.
	got, errOut, code = runAgentCLI(t, "", "--config", writeConfig(t, full), "--data-dir", "/d", "--gossip-port", "9000")
	want.DataDir, want.GossipPort = "/d", 9000
	if code != 0 || got != want {
		t.Fatalf("flags over file: exit %d (%s), flags %+v, want %+v", code, errOut, got, want)
	}

	// The default path is read when it exists and --config is not given...
	got, _, code = runAgentCLI(t, writeConfig(t, "advertise-addr: 192.0.2.9\n"))
	if code != 0 || got.AdvertiseAddr != "192.0.2.9" || got.DataDir != "/var/lib/shoal" {
		t.Fatalf("default file: exit %d, %+v", code, got)
	}
	// ...and skipped when it does not exist; a missing --config is an error.
	missing := filepath.Join(t.TempDir(), "none.yaml")
	if got, errOut, code = runAgentCLI(t, missing, "--advertise-addr", "192.0.2.1"); code != 0 || got.AdvertiseAddr != "192.0.2.1" {
		t.Fatalf("no default file: exit %d (%s)", code, errOut)
	}
	if _, errOut, code = runAgentCLI(t, "", "--config", missing); code == 0 || !strings.Contains(errOut, "none.yaml") {
		t.Fatalf("missing --config: exit %d (%s)", code, errOut)
	}
	// An empty file (or only comments) changes nothing.
	if got, errOut, code = runAgentCLI(t, "", "--config", writeConfig(t, "# nothing yet\n")); code != 0 || got.DataDir != "/var/lib/shoal" {
		t.Fatalf("empty file: exit %d (%s)", code, errOut)
	}
}

// A bad file stops the agent before it starts, with the key in the message.
func TestAgentConfigFileErrors(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       []string
	}{
		{"unknown key", "data-dir: /d\nadvertize-addr: 192.0.2.1\n", []string{"line 2", "advertize-addr", "unknown key", "advertise-addr"}},
		{"config names config", "config: /etc/other.yaml\n", []string{"config", "unknown key"}},
		{"bad advertise address", "advertise-addr: node1.example\n", []string{"advertise-addr", `"node1.example"`}},
		{"advertise unspecified", "advertise-addr: 0.0.0.0\n", []string{"advertise-addr", "not a usable IP"}},
		{"bad listen address", "listen-addr: 10.0.0.300\n", []string{"listen-addr", "10.0.0.300"}},
		{"missing data dir", "data-dir:\n", []string{"data-dir", "no value"}},
		{"empty data dir", "data-dir: \"\"\n", []string{"data-dir", "must not be empty"}},
		{"relative data dir", "data-dir: var/lib/shoal\n", []string{"data-dir", "absolute"}},
		{"port not a number", "gossip-port: seven\n", []string{"gossip-port", "not a number"}},
		{"port out of range", "cluster-port: 70000\n", []string{"cluster-port", "out of range"}},
		{"bool not a bool", "force-new-cluster: maybe\n", []string{"force-new-cluster", "true or false"}},
		{"bad log level", "log-level: loud\n", []string{"log-level", "loud"}},
		{"metrics address without a port", "metrics-addr: 127.0.0.1\n", []string{"metrics-addr", "IP:PORT"}},
		{"metrics address not an IP", "metrics-addr: metrics.local:9323\n", []string{"metrics-addr", "not an IP address"}},
		{"bad duration", "cert-lifetime: 3 days\n", []string{"cert-lifetime", "not a duration"}},
		{"list value", "hostname: [a, b]\n", []string{"hostname", "single value"}},
		{"duplicate key", "hostname: a\nhostname: b\n", []string{"hostname", "twice"}},
		{"not a mapping", "- data-dir\n", []string{"mapping"}},
		{"not yaml", "data-dir: [\n", []string{"agent.yaml"}},
		{"every problem at once", "advertise-addr: x\nlisten-addr: y\n", []string{"advertise-addr", "listen-addr"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeConfig(t, tc.body)
			got, errOut, code := runAgentCLI(t, "", "--config", p, "--advertise-addr", "192.0.2.1")
			if code == 0 {
				t.Fatalf("accepted; agent flags %+v", got)
			}
			if got != (agentFlags{}) {
				t.Fatalf("the agent started with %+v", got)
			}
			for _, w := range append(tc.want, p) {
				if !strings.Contains(errOut, w) {
					t.Errorf("error does not say %q:\n%s", w, errOut)
				}
			}
		})
	}
}

// The file is checked whole even where a flag overrides a key, so a broken
// file is found on the day it is written, not on the day the flag goes.
func TestAgentConfigCheckedEvenWhenOverridden(t *testing.T) {
	p := writeConfig(t, "advertise-addr: nope\n")
	if _, errOut, code := runAgentCLI(t, "", "--config", p, "--advertise-addr", "192.0.2.1"); code == 0 || !strings.Contains(errOut, "advertise-addr") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

func TestAdvertiseAuto(t *testing.T) {
	got, errOut, code := runAgentCLI(t, "", "--config", writeConfig(t, "advertise-addr: auto\n"))
	if code != 0 || got.AdvertiseAddr != autoAdvertise {
		t.Fatalf("exit %d (%s): %+v", code, errOut, got)
	}
	ip, err := detectAdvertiseAddr()
	if err != nil {
		t.Skipf("no default route here: %v", err)
	}
	if p := net.ParseIP(ip); p == nil || p.IsLoopback() || p.IsUnspecified() {
		t.Fatalf("detected %q", ip)
	}
}

// The hidden pprof listener must be loopback-only: a profile endpoint shows
// goroutine stacks and burns CPU on demand.
func TestCheckPprofAddr(t *testing.T) {
	for _, ok := range []string{"", "127.0.0.1:6060", "[::1]:6060"} {
		if err := checkPprofAddr(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"0.0.0.0:6060", "10.0.0.1:6060", ":6060", "localhost:6060", "127.0.0.1"} {
		if err := checkPprofAddr(bad); !errors.Is(err, errPprofNotLoopback) {
			t.Errorf("%q: got %v, want errPprofNotLoopback", bad, err)
		}
	}
}

func TestAgentProcs(t *testing.T) {
	for _, c := range []struct {
		profile, env string
		want         int
	}{
		{"", "", 1},
		{"fast", "", 1},
		{"tolerant", "", 1},
		{"tolerant", "2", 0}, // the operator's GOMAXPROCS wins
		{"nope", "", 0},
	} {
		if got := agentProcs(c.profile, c.env); got != c.want {
			t.Errorf("agentProcs(%q, %q) = %d, want %d", c.profile, c.env, got, c.want)
		}
	}
}
