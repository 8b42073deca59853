package test

// End-to-end tests of encrypted networks (VXLAN inside userspace
// WireGuard) and of the publish paths that keep the client's address.
//
// The capture runs on the cluster's bridge in the root namespace: every
// packet between two hosts crosses it, so a payload that crosses hosts in
// the clear shows up there. A plain network carrying the same payload is
// the positive control (the capture does see plaintext when there is some).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

// canary is the payload the web servers answer with; it must never cross
// the underlay in the clear for an encrypted network.
const canary = "shoal-canary-5d1e9"

const canaryWebCmd = `echo "` + canary + ` $(hostname)" >/www/index.html; exec httpd -f -p 80 -h /www`

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// capture runs tcpdump on the cluster bridge (immediate mode: every packet
// is printed at once, -A: payloads as text). seen returns what it printed
// so far; stop ends it and returns everything.
func capture(t *testing.T, c *harness.Cluster) (seen, stop func() string) {
	t.Helper()
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Fatalf("tcpdump is required (scripts/deps.sh installs it): %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var out, stderr syncBuffer
	cmd := exec.CommandContext(ctx, "tcpdump", "-i", c.Name, "-n", "-l", "-A", "-s", "0", "--immediate-mode")
	cmd.Stdout = &out
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("tcpdump: %v", err)
	}
	// tcpdump says "listening on" once the socket is open.
	harness.Eventually(t, 10*time.Second, func() (bool, string) {
		return strings.Contains(stderr.String(), "listening on"), stderr.String()
	}, "tcpdump listens")
	stopped := false
	stopFn := func() string {
		if !stopped {
			stopped = true
			_ = cmd.Process.Signal(os.Interrupt)
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				cancel()
				<-done
			}
			cancel()
		}
		return out.String()
	}
	t.Cleanup(func() { stopFn() })
	return out.String, stopFn
}

var wgPacket = regexp.MustCompile(`\.51820 > [0-9.]+\.51820: `)

// crossPair returns two running tasks of svc on different nodes, both
// with their address on network known.
func crossPair(t *testing.T, h *harness.Host, svc, network string) (a, b api.Task) {
	t.Helper()
	harness.Eventually(t, 120*time.Second, func() (bool, string) {
		run := runningTasks(t, h, svc)
		for _, x := range run {
			for _, y := range run {
				if x.NodeID != y.NodeID && x.IPs[network] != "" && y.IPs[network] != "" {
					a, b = x, y
					return true, ""
				}
			}
		}
		return false, fmt.Sprintf("running tasks of %s: %d", svc, len(run))
	}, svc+" runs on two nodes")
	return a, b
}

func TestWireGuardEncryptedNetwork(t *testing.T) {
	c, _ := svcCluster(t, 2)
	h1 := c.Host(1)

	h1.MustCLI(t, "network", "create", "--encrypted", "sec")
	h1.MustCLI(t, "network", "create", "pln")
	var sec api.Network
	if err := netJSON(c.Host(2), &sec, "inspect", "sec"); err != nil || !sec.Encrypted {
		t.Fatalf("inspect sec: %v %+v", err, sec)
	}
	h1.MustCLI(t, "service", "create", "--name", "sweb", "--mode", "global", "--network", "sec", "bb:1", "sh", "-c", canaryWebCmd)
	h1.MustCLI(t, "service", "create", "--name", "pweb", "--mode", "global", "--network", "pln", "bb:1", "sh", "-c", canaryWebCmd)

	// Every node publishes its own WireGuard public key.
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		nodes, err := h1.Nodes()
		if err != nil {
			return false, err.Error()
		}
		keys := map[string]bool{}
		for _, n := range nodes {
			if n.WireGuardKey == "" {
				return false, "no key yet for " + n.Hostname
			}
			keys[n.WireGuardKey] = true
		}
		return len(keys) == len(nodes), fmt.Sprintf("%d keys for %d nodes", len(keys), len(nodes))
	}, "nodes publish their WireGuard keys")
	// The private key stays on the node, owner-only.
	for _, h := range c.Hosts() {
		out, err := exec.Command("find", h.DataDir, "-name", "private.key", "-path", "*wireguard*", "-perm", "0600").CombinedOutput()
		if err != nil || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 || len(bytes.TrimSpace(out)) == 0 {
			t.Fatalf("%s: WireGuard private key with mode 0600: %v %q", h.Name, err, out)
		}
	}

	sa, sb := crossPair(t, h1, "sweb", "sec")
	pa, pb := crossPair(t, h1, "pweb", "pln")
	nsS, nsP := netnsOf(t, c, sa), netnsOf(t, c, pa)

	// Containers of the encrypted network reach each other across hosts.
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		out, err := wgetFrom(nsS, "http://"+sb.IPs["sec"]+"/")
		return err == nil && strings.Contains(out, canary), fmt.Sprintf("sweb %s -> %s: %v %q", sa.Node, sb.IPs["sec"], err, out)
	}, "encrypted network across hosts")
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		out, err := wgetFrom(nsP, "http://"+pb.IPs["pln"]+"/")
		return err == nil && strings.Contains(out, canary), fmt.Sprintf("pweb %s -> %s: %v %q", pa.Node, pb.IPs["pln"], err, out)
	}, "plain network across hosts")

	// Encrypted: the canary crosses the underlay only inside WireGuard.
	// Five requests are at least 5×(3 handshake + request + response + 4
	// teardown) packets, all of which the capture must see as WireGuard.
	seen, stop := capture(t, c)
	for i := 0; i < 5; i++ {
		if out, err := wgetFrom(nsS, "http://"+sb.IPs["sec"]+"/"); err != nil || !strings.Contains(out, canary) {
			t.Fatalf("encrypted request %d: %v %q", i, err, out)
		}
	}
	harness.Eventually(t, 10*time.Second, func() (bool, string) {
		n := len(wgPacket.FindAllString(seen(), -1))
		return n >= 5*9, fmt.Sprintf("%d WireGuard packets captured", n)
	}, "the capture sees the encrypted requests as WireGuard")
	dump := stop()
	if strings.Contains(dump, canary) {
		t.Fatalf("the encrypted network's payload crossed the underlay in the clear:\n%s", tail(dump, 3000))
	}
	if regexp.MustCompile(`\.4800: `).MatchString(dump) {
		t.Fatalf("the encrypted network's VXLAN port appeared on the underlay:\n%s", tail(dump, 3000))
	}

	// Positive control: the plain network's payload is visible.
	seen, stop = capture(t, c)
	for i := 0; i < 3; i++ {
		if out, err := wgetFrom(nsP, "http://"+pb.IPs["pln"]+"/"); err != nil || !strings.Contains(out, canary) {
			t.Fatalf("plain request %d: %v %q", i, err, out)
		}
	}
	harness.Eventually(t, 10*time.Second, func() (bool, string) {
		return strings.Contains(seen(), canary), tail(seen(), 2000)
	}, "the capture sees the plain network's payload (else the capture is broken)")
	stop()

	// Injection: VXLAN for the encrypted network sent to a node from the
	// underlay is dropped (counted by the node's input filter).
	h2 := hostOf(t, c, sb)
	before := dropCount(t, h2)
	inject(t, h2.IP, sec.VNI, 20)
	harness.Eventually(t, 10*time.Second, func() (bool, string) {
		n := dropCount(t, h2)
		return n >= before+20, fmt.Sprintf("drops %d, before %d", n, before)
	}, "injected encrypted-network VXLAN is dropped")

	// An agent restart takes its TUN device (and with it the encrypted
	// network's VXLAN device) along; the network comes back with the
	// agent, with the same key.
	keyBefore := nodeKey(t, h1, sb.NodeID)
	if err := h2.Restart(); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 120*time.Second, func() (bool, string) {
		var run []api.Task
		if err := h1.JSON(&run, "service", "ps", "sweb"); err != nil {
			return false, err.Error()
		}
		for _, tk := range run {
			if tk.NodeID == sb.NodeID && tk.State == api.TaskRunning && tk.IPs["sec"] != "" {
				out, err := wgetFrom(nsS, "http://"+tk.IPs["sec"]+"/")
				return err == nil && strings.Contains(out, canary), fmt.Sprintf("%v %q", err, out)
			}
		}
		return false, fmt.Sprintf("no running sweb task on %s: %d running", sb.Node, len(run))
	}, "the encrypted network works again after an agent restart")
	if k := nodeKey(t, h1, sb.NodeID); k != keyBefore {
		t.Fatalf("the node's WireGuard key changed across a restart: %s -> %s", keyBefore, k)
	}
}

func nodeKey(t *testing.T, h *harness.Host, id string) string {
	t.Helper()
	n, err := h.Node(id)
	if err != nil {
		t.Fatal(err)
	}
	return n.WireGuardKey
}

// hostOf returns the harness host running task tk.
func hostOf(t *testing.T, c *harness.Cluster, tk api.Task) *harness.Host {
	t.Helper()
	for _, h := range c.Hosts() {
		if hostname(h) == tk.Node {
			return h
		}
	}
	t.Fatalf("task %s on unknown node %q", tk.Name, tk.Node)
	return nil
}

var dropRule = regexp.MustCompile(`udp dport 4800 iifname != "shoal\.wg" counter packets (\d+)`)

// dropCount reads the counter of the input rule that drops encrypted
// VXLAN arriving outside WireGuard on host h.
func dropCount(t *testing.T, h *harness.Host) int {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", h.NS, "nft", "list", "chain", "ip", "shoal", "filter-input").CombinedOutput()
	if err != nil {
		t.Fatalf("nft on %s: %v %s", h.Name, err, out)
	}
	m := dropRule.FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("%s has no drop rule for encrypted VXLAN outside WireGuard:\n%s", h.Name, out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// inject sends n VXLAN packets with vni (an inner Ethernet + IPv4 frame)
// to host:4800 from the root namespace, on the underlay.
func inject(t *testing.T, host string, vni, n int) {
	t.Helper()
	conn, err := net.Dial("udp4", net.JoinHostPort(host, "4800"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	pkt := make([]byte, 8+14+20+8+len(canary))
	pkt[0] = 0x08 // VXLAN flags: VNI present
	pkt[4], pkt[5], pkt[6] = byte(vni>>16), byte(vni>>8), byte(vni)
	eth := pkt[8:]
	copy(eth[0:6], []byte{0x02, 0, 0, 0, 0, 1})
	copy(eth[6:12], []byte{0x02, 0, 0, 0, 0, 2})
	eth[12], eth[13] = 0x08, 0x00
	ip := eth[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	ip[3] = byte(20 + 8 + len(canary))
	copy(pkt[len(pkt)-len(canary):], canary)
	for i := 0; i < n; i++ {
		if _, err := conn.Write(pkt); err != nil {
			t.Fatal(err)
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// ipCmd serves /cgi-bin/ip, which answers "client=<REMOTE_ADDR>": the
// address the backend sees as its peer.
const ipCmd = `mkdir -p /www/cgi-bin && printf '#!/bin/sh\nprintf "Content-Type: text/plain\\r\\n\\r\\n"\necho "client=$REMOTE_ADDR"\n' >/www/cgi-bin/ip && chmod +x /www/cgi-bin/ip && exec httpd -f -p 80 -h /www`

// clientSeen fetches /cgi-bin/ip from ns and returns the client address
// the backend saw (busybox httpd gives it IPv4-mapped: [::ffff:a.b.c.d]).
func clientSeen(ns, url string) (string, error) {
	out, err := wgetFrom(ns, url)
	if err != nil {
		return out, err
	}
	a, ok := strings.CutPrefix(out, "client=")
	if !ok {
		return out, fmt.Errorf("unexpected answer %q", out)
	}
	a = strings.TrimSuffix(strings.TrimPrefix(a, "["), "]")
	return strings.TrimPrefix(a, "::ffff:"), nil
}

// TestPublishKeepsClientAddress: host-mode ports answer only on the node
// running the task and the task sees the client's address; the routing
// mesh keeps it whether the backend is on the node that took the
// connection or on another one.
func TestPublishKeepsClientAddress(t *testing.T) {
	c, _ := svcCluster(t, 2)
	h1 := c.Host(1)
	h1.MustCLI(t, "service", "create", "--name", "edge", "--publish", "mode=host,published=18090,target=80", "bb:1", "sh", "-c", ipCmd)
	h1.MustCLI(t, "service", "create", "--name", "mesh", "--publish", "18091:80", "bb:1", "sh", "-c", ipCmd)
	waitSlots(t, h1, "edge", 1, "", 90*time.Second)
	waitSlots(t, h1, "mesh", 1, "", 90*time.Second)
	var edge api.Service
	if err := h1.JSON(&edge, "service", "inspect", "edge"); err != nil || len(edge.Ports) != 1 || edge.Ports[0].Mode != api.PublishHost {
		t.Fatalf("edge ports: %v %+v", err, edge.Ports)
	}
	lan, lanIP := lanHost(t, c, h1)
	want := lanIP

	et := runningTasks(t, h1, "edge")[0]
	withTask, without := hostOf(t, c, et), c.Host(1)
	if withTask == without {
		without = c.Host(2)
	}
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		out, err := clientSeen(lan, fmt.Sprintf("http://%s:18090/cgi-bin/ip", withTask.IP))
		return err == nil && out == want, fmt.Sprintf("host mode via %s: %v %q", withTask.Name, err, out)
	}, "host-mode port answers with the client's address")
	if out, err := wgetFrom(lan, fmt.Sprintf("http://%s:18090/cgi-bin/ip", without.IP)); err == nil {
		t.Fatalf("host-mode port answered on %s, which runs no task: %q", without.Name, out)
	}

	mt := runningTasks(t, h1, "mesh")[0]
	local, remote := hostOf(t, c, mt), c.Host(1)
	if local == remote {
		remote = c.Host(2)
	}
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		out, err := clientSeen(lan, fmt.Sprintf("http://%s:18091/cgi-bin/ip", local.IP))
		return err == nil && out == want, fmt.Sprintf("mesh via %s (local backend): %v %q", local.Name, err, out)
	}, "the mesh keeps the client's address for a local backend")
	// Through a node without the task too: the task's node routes the
	// replies back through the node that took the connection.
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		out, err := clientSeen(lan, fmt.Sprintf("http://%s:18091/cgi-bin/ip", remote.IP))
		return err == nil && out == want, fmt.Sprintf("mesh via %s (remote backend): %v %q", remote.Name, err, out)
	}, "the mesh through another node keeps the client's address")
}

// BenchmarkWireGuardThroughput measures one TCP stream (iperf3, 5 s)
// between containers on two hosts, over an encrypted network and over a
// plain one, median of three runs each, and reports both and their ratio.
// Timings are reported, never asserted.
func BenchmarkWireGuardThroughput(b *testing.B) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		b.Fatalf("iperf3 is required (scripts/deps.sh installs it): %v", err)
	}
	c := harness.New(b, 2)
	c.Form(b)
	h1 := c.Host(1)
	h1.MustCLI(b, "image", "import", busyboxTar(b), "bb:1")
	h1.MustCLI(b, "network", "create", "--encrypted", "sec")
	h1.MustCLI(b, "network", "create", "pln")
	h1.MustCLI(b, "service", "create", "--name", "s", "--mode", "global", "--network", "sec", "bb:1", "sleep", "100000")
	h1.MustCLI(b, "service", "create", "--name", "p", "--mode", "global", "--network", "pln", "bb:1", "sleep", "100000")
	measure := func(svc, network string) float64 {
		var a, z api.Task
		harness.Eventually(b, 120*time.Second, func() (bool, string) {
			var tasks []api.Task
			if err := h1.JSON(&tasks, "service", "ps", svc); err != nil {
				return false, err.Error()
			}
			for _, x := range tasks {
				for _, y := range tasks {
					if x.State == api.TaskRunning && y.State == api.TaskRunning && x.NodeID != y.NodeID && x.IPs[network] != "" && y.IPs[network] != "" {
						a, z = x, y
						return true, ""
					}
				}
			}
			return false, "waiting for two tasks"
		}, svc+" on two hosts")
		nsOf := func(tk api.Task) string {
			return filepath.Join(hostOfB(b, c, tk).DataDir, "runtime", "netns", tk.ContainerID)
		}
		var runs []float64
		for i := 0; i < 3; i++ {
			srv := exec.Command("nsenter", "--net="+nsOf(z), "iperf3", "-s")
			if err := srv.Start(); err != nil {
				b.Fatal(err)
			}
			stopSrv := func() { _ = srv.Process.Kill(); _ = srv.Wait() }
			var res struct {
				Error string `json:"error"`
				End   struct {
					SumReceived struct {
						BitsPerSecond float64 `json:"bits_per_second"`
					} `json:"sum_received"`
				} `json:"end"`
			}
			harness.Eventually(b, 30*time.Second, func() (bool, string) {
				out, err := exec.Command("nsenter", "--net="+nsOf(a), "iperf3", "-c", z.IPs[network], "-t", "5", "-J").Output()
				res.Error, res.End.SumReceived.BitsPerSecond = "", 0
				if jerr := json.Unmarshal(out, &res); err != nil || jerr != nil || res.Error != "" {
					return false, fmt.Sprintf("%v %v %s", err, jerr, res.Error)
				}
				return res.End.SumReceived.BitsPerSecond > 0, "no bytes received"
			}, "iperf3 client")
			stopSrv()
			runs = append(runs, res.End.SumReceived.BitsPerSecond/1e9)
		}
		sort.Float64s(runs)
		b.Logf("%s (%s): %.2f Gbit/s (runs %v)", network, svc, runs[1], runs)
		return runs[1]
	}
	for i := 0; i < b.N; i++ {
		enc := measure("s", "sec")
		plain := measure("p", "pln")
		b.ReportMetric(enc, "enc-Gbit/s")
		b.ReportMetric(plain, "plain-Gbit/s")
		b.ReportMetric(enc/plain, "enc/plain")
	}
}

func hostOfB(b *testing.B, c *harness.Cluster, tk api.Task) *harness.Host {
	for _, h := range c.Hosts() {
		if hostname(h) == tk.Node {
			return h
		}
	}
	b.Fatalf("task %s on unknown node %q", tk.Name, tk.Node)
	return nil
}
