package test

// Benchmarks of the data plane (issue 9): throughput ratios measured with
// iperf3 (one TCP stream, 5 s; 3 interleaved pairs of runs after a warm-up,
// the median of the per-pair ratios is reported) between
// containers on real agents, and how fast a dead host's backend stops
// receiving connections. Goals (reported, never asserted; the machine is
// shared and noisy): overlay/bridge ≥ 0.75, VIP/direct ≥ 0.95, routing mesh
// through a node without a replica / with one ≥ 0.75, backend removal
// ≤ 1 s.
//
//	SHOAL_BIN=$PWD/bin/shoal go test -run '^$' -bench Network -benchtime 1x ./test/

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

// iperfRuns is how many iperf3 runs each path gets (the median is kept).
const iperfRuns = 3

// taskNS is the network namespace file of a task's container.
func taskNS(b *testing.B, c *harness.Cluster, tk api.Task) string {
	return hostOfB(b, c, tk).ContainerNetns(tk.ContainerID)
}

// nsCmd runs argv in the network namespace file ns ("" = the test's own).
func nsCmd(ns string, argv ...string) *exec.Cmd {
	if ns == "" {
		return exec.Command(argv[0], argv[1:]...)
	}
	return exec.Command("nsenter", append([]string{"--net=" + ns}, argv...)...)
}

// path is one iperf3 client: its namespace ("" = the test's own) and the
// server's address and port.
type path struct {
	ns, addr string
	port     int
}

// iperfOnce measures one TCP stream (5 s) along p in Gbit/s.
func iperfOnce(b *testing.B, p path) float64 {
	b.Helper()
	var gbps float64
	harness.Eventually(b, 60*time.Second, func() (bool, string) {
		out, err := nsCmd(p.ns, "iperf3", "-c", p.addr, "-p", fmt.Sprint(p.port), "-t", "5", "-J").Output()
		var res struct {
			Error string `json:"error"`
			End   struct {
				SumReceived struct {
					BitsPerSecond float64 `json:"bits_per_second"`
				} `json:"sum_received"`
			} `json:"end"`
		}
		if jerr := json.Unmarshal(out, &res); err != nil || jerr != nil || res.Error != "" {
			return false, fmt.Sprintf("iperf3 to %s:%d: %v %v %s", p.addr, p.port, err, jerr, res.Error)
		}
		gbps = res.End.SumReceived.BitsPerSecond / 1e9
		return gbps > 0, "no bytes received"
	}, "iperf3 client")
	return gbps
}

// compare measures paths num and den in iperfRuns interleaved pairs (after
// one discarded warm-up run each), so that both see the same load of the
// shared machine, and reports median throughputs and the median of the
// per-pair ratios num/den as NAME.
func compare(b *testing.B, name string, num, den path, goal float64) {
	b.Helper()
	iperfOnce(b, num)
	iperfOnce(b, den)
	var nums, dens, ratios []float64
	for i := 0; i < iperfRuns; i++ {
		n, d := iperfOnce(b, num), iperfOnce(b, den)
		nums, dens, ratios = append(nums, n), append(dens, d), append(ratios, n/d)
	}
	med := func(r []float64) float64 {
		s := append([]float64(nil), r...)
		sort.Float64s(s)
		return s[len(s)/2]
	}
	f := func(r []float64) string {
		s := make([]string, len(r))
		for i, x := range r {
			s[i] = fmt.Sprintf("%.2f", x)
		}
		return strings.Join(s, " ")
	}
	b.ReportMetric(med(ratios), name)
	b.ReportMetric(med(nums), name+"-num-Gbit/s")
	b.ReportMetric(med(dens), name+"-den-Gbit/s")
	printRow(b, name, iperfRuns, fmt.Sprintf("%.2f", med(ratios)), fmt.Sprintf("%.2f Gb/s", med(nums)), fmt.Sprintf("%.2f Gb/s", med(dens)),
		fmt.Sprintf("goal ≥ %.2f; Gbit/s %s vs %s", goal, f(nums), f(dens)))
}

// iperfServer starts an iperf3 server in ns on port until the benchmark
// ends.
func iperfServer(b *testing.B, ns string, port int) {
	b.Helper()
	srv := nsCmd(ns, "iperf3", "-s", "-p", fmt.Sprint(port))
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
}

// netBench forms an n-node cluster with the busybox image imported.
func netBench(b *testing.B, n int) (*harness.Cluster, *harness.Host) {
	b.Helper()
	if _, err := exec.LookPath("iperf3"); err != nil {
		b.Fatalf("iperf3 is required (scripts/deps.sh installs it): %v", err)
	}
	c := harness.New(b, n)
	c.Form(b)
	h1 := c.Host(1)
	h1.MustCLI(b, "image", "import", busyboxTar(b), "bb:1")
	return c, h1
}

// runningOf waits until svc has n running tasks with addresses and returns
// them.
func runningOf(b *testing.B, h *harness.Host, svc string, n int) []api.Task {
	b.Helper()
	var out []api.Task
	harness.Eventually(b, 120*time.Second, func() (bool, string) {
		var tasks []api.Task
		if err := h.JSON(&tasks, "service", "ps", svc); err != nil {
			return false, err.Error()
		}
		out = out[:0]
		for _, tk := range tasks {
			if tk.State == api.TaskRunning && tk.IP != "" && tk.ContainerID != "" {
				out = append(out, tk)
			}
		}
		return len(out) == n, fmt.Sprintf("%d of %d running", len(out), n)
	}, svc+" running")
	return out
}

// BenchmarkNetworkOverlay: containers on two hosts over VXLAN vs two
// containers on the same bridge.
func BenchmarkNetworkOverlay(b *testing.B) {
	c, h1 := netBench(b, 2)
	h1.MustCLI(b, "service", "create", "--name", "p", "--replicas", "3", "bb:1", "sleep", "100000")
	tasks := runningOf(b, h1, "p", 3)
	byNode := map[string][]api.Task{}
	for _, tk := range tasks {
		byNode[tk.NodeID] = append(byNode[tk.NodeID], tk)
	}
	var pair, single []api.Task
	for _, ts := range byNode {
		if len(ts) == 2 {
			pair = ts
		} else {
			single = ts
		}
	}
	if len(pair) != 2 || len(single) != 1 {
		b.Fatalf("want 2 tasks on one node and 1 on the other, got %v", byNode)
	}
	server := pair[1]
	iperfServer(b, taskNS(b, c, server), 5201)
	for i := 0; i < b.N; i++ {
		compare(b, "overlay/bridge", path{taskNS(b, c, single[0]), server.IP, 5201}, path{taskNS(b, c, pair[0]), server.IP, 5201}, 0.75)
	}
}

// BenchmarkNetworkVIP: a container to a service's VIP vs to its task's
// address directly (the task on another host in both cases).
func BenchmarkNetworkVIP(b *testing.B) {
	c, h1 := netBench(b, 2)
	h1.MustCLI(b, "service", "create", "--name", "srv", "bb:1", "sleep", "100000")
	srv := runningOf(b, h1, "srv", 1)[0]
	h1.MustCLI(b, "service", "create", "--name", "cli", "--mode", "global", "bb:1", "sleep", "100000")
	var cli api.Task
	for _, tk := range runningOf(b, h1, "cli", 2) {
		if tk.NodeID != srv.NodeID {
			cli = tk
		}
	}
	var svc api.Service
	if err := h1.JSON(&svc, "service", "inspect", "srv"); err != nil || svc.VIP == "" {
		b.Fatalf("inspect srv: %v %+v", err, svc)
	}
	iperfServer(b, taskNS(b, c, srv), 5201)
	for i := 0; i < b.N; i++ {
		compare(b, "vip/direct", path{taskNS(b, c, cli), svc.VIP, 5201}, path{taskNS(b, c, cli), srv.IP, 5201}, 0.95)
	}
}

// BenchmarkNetworkMesh: a client outside the cluster (the test's own
// namespace, on the hosts' underlay) to a published port through the node
// without the replica vs through the node running it.
func BenchmarkNetworkMesh(b *testing.B) {
	c, h1 := netBench(b, 2)
	h1.MustCLI(b, "service", "create", "--name", "srv", "--publish", "15201:5201", "bb:1", "sleep", "100000")
	srv := runningOf(b, h1, "srv", 1)[0]
	with := hostOfB(b, c, srv)
	without := c.Host(1)
	if without == with {
		without = c.Host(2)
	}
	iperfServer(b, taskNS(b, c, srv), 5201)
	for i := 0; i < b.N; i++ {
		compare(b, "mesh-remote/local", path{"", without.IP, 15201}, path{"", with.IP, 15201}, 0.75)
	}
}

// BenchmarkNetworkBackendRemoval: a host running a backend dies (link cut,
// agent killed); measured is the time from the kill until another node's
// load balancer no longer sends connections to that backend (its address
// is gone from the service's backend map in nftables, checked every
// 10 ms), median of 3 kills of the same host (restarted, and seen ready
// by every node, in between).
func BenchmarkNetworkBackendRemoval(b *testing.B) {
	c, h1 := netBench(b, 3)
	h1.MustCLI(b, "service", "create", "--name", "web", "--mode", "global", "--publish", "18097:80", "bb:1", "sleep", "100000")
	observer, victim := c.Host(1), c.Host(3)
	backends := func() string {
		out, _ := exec.Command("ip", "netns", "exec", observer.NS, "nft", "list", "map", "ip", "shoal", "be-web").CombinedOutput()
		return string(out)
	}
	has := func(m, ip string) bool { return strings.Contains(m, ip+",") || strings.Contains(m, ip+" ") }
	var samples []time.Duration
	for i := 0; i < max(b.N, 3); i++ {
		var ip string
		for _, tk := range runningOf(b, observer, "web", 3) {
			if hostOfB(b, c, tk) == victim {
				ip = tk.IP
			}
		}
		harness.Eventually(b, 60*time.Second, func() (bool, string) {
			return has(backends(), ip), "backend " + ip + " in the map"
		}, "the victim's backend is balanced")
		start := time.Now()
		if err := victim.Kill(); err != nil {
			b.Fatal(err)
		}
		tick := time.NewTicker(10 * time.Millisecond)
		for m := backends(); !strings.Contains(m, "be-web") || has(m, ip); m = backends() {
			if time.Since(start) > 60*time.Second {
				b.Fatalf("backend %s of the dead host still in the map after 60 s:\n%s", ip, m)
			}
			<-tick.C
		}
		tick.Stop()
		samples = append(samples, time.Since(start))
		if err := victim.Restart(); err != nil {
			b.Fatal(err)
		}
		// Back for good before the next kill: every node, the victim
		// included, holds it ready, so the leader's raft has reached it
		// since it returned. (A host that dies again within a second of
		// its return is found by gossip alone, in 2-3 s: raft's verdict
		// counts a node only once raft has heard it since it came back.)
		waitVoters(b, c, 3, 3)
	}
	reportDurations(b, "backend-removal", samples)
}
