package test

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

// BenchmarkWireGuardThroughput measures TCP (iperf3, 5 s) between
// containers on two hosts, over an encrypted network (routed through
// userspace WireGuard) and over a plain one (VXLAN), one stream and two
// streams (-P 2), and prints the medians of three runs each and the median
// of the per-pair ratios (goal ≥ 0.3 for one stream). The runs alternate
// encrypted and plain, so a burst of load from other work on the machine
// weighs on both of a pair alike. Around the encrypted one-stream runs it
// reads the interface counters of both hosts and prints the average size
// of what crosses the TUN device and the underlay, which shows whether the
// offloads are in play (TSO into the TUN read, GRO into the TUN write, UDP
// GSO on the underlay: tens of KB; without them about the MTU). Timings
// are reported, never asserted.
func BenchmarkWireGuardThroughput(b *testing.B) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		b.Fatalf("iperf3 is required (scripts/deps.sh installs it): %v", err)
	}
	harness.Context(b, 15*time.Minute)
	c := harness.New(b, 2)
	c.Form(b)
	h1 := c.Host(1)
	h1.MustCLI(b, "image", "import", busyboxTar(b), "bb:1")
	h1.MustCLI(b, "network", "create", "--encrypted", "sec")
	h1.MustCLI(b, "network", "create", "pln")
	h1.MustCLI(b, "service", "create", "--name", "s", "--mode", "global", "--network", "sec", "bb:1", "sleep", "100000")
	h1.MustCLI(b, "service", "create", "--name", "p", "--mode", "global", "--network", "pln", "bb:1", "sleep", "100000")
	type pair struct {
		client, server, ip string
		from, to           *harness.Host
	}
	pairOf := func(svc, network string) pair {
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
			return hostOfB(b, c, tk).ContainerNetns(tk.ContainerID)
		}
		return pair{client: nsOf(a), server: nsOf(z), ip: z.IPs[network], from: hostOfB(b, c, a), to: hostOfB(b, c, z)}
	}
	enc, plain := pairOf("s", "sec"), pairOf("p", "pln")
	// measure returns the receiver's Gbit/s and the sender's retransmits.
	measure := func(p pair, streams int) (float64, int) {
		srv := exec.Command("nsenter", "--net="+p.server, "iperf3", "-s")
		if err := srv.Start(); err != nil {
			b.Fatal(err)
		}
		defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
		var res struct {
			Error string `json:"error"`
			End   struct {
				SumSent struct {
					Retransmits int `json:"retransmits"`
				} `json:"sum_sent"`
				SumReceived struct {
					BitsPerSecond float64 `json:"bits_per_second"`
				} `json:"sum_received"`
			} `json:"end"`
		}
		harness.Eventually(b, 60*time.Second, func() (bool, string) {
			out, err := exec.Command("nsenter", "--net="+p.client, "timeout", "60", "iperf3", "-c", p.ip, "-t", "5",
				"-P", strconv.Itoa(streams), "-J").Output()
			res.Error, res.End.SumReceived.BitsPerSecond, res.End.SumSent.Retransmits = "", 0, 0
			if jerr := json.Unmarshal(out, &res); err != nil || jerr != nil || res.Error != "" {
				return false, fmt.Sprintf("%v %v %s", err, jerr, res.Error)
			}
			return res.End.SumReceived.BitsPerSecond > 0, "no bytes received"
		}, "iperf3 to "+p.ip)
		return res.End.SumReceived.BitsPerSecond / 1e9, res.End.SumSent.Retransmits
	}
	median := func(xs []float64) (m, lo, hi float64) {
		s := append([]float64(nil), xs...)
		sort.Float64s(s)
		return s[len(s)/2], s[0], s[len(s)-1]
	}
	gbit := func(v float64) string { return fmt.Sprintf("%.2f", v) }
	list := func(xs []float64) string {
		s := make([]string, len(xs))
		for i, x := range xs {
			s[i] = fmt.Sprintf("%.2f", x)
		}
		return strings.Join(s, " ")
	}
	for i := 0; i < b.N; i++ {
		type series struct{ enc, plain, ratio []float64 }
		var one, two series
		var retrans int
		var tunRead, tunWrite, udpOut linkDelta
		for r := 0; r < 3; r++ {
			before := map[*harness.Host]map[string]linkCounters{enc.from: linkStats(b, enc.from), enc.to: linkStats(b, enc.to)}
			e, rt := measure(enc, 1)
			from, to := linkStats(b, enc.from), linkStats(b, enc.to)
			tunRead.add(before[enc.from], from, "shoal.wg", true) // kernel → wireguard-go
			tunWrite.add(before[enc.to], to, "shoal.wg", false)   // wireguard-go → kernel
			udpOut.add(before[enc.from], from, "eth0", true)
			p, _ := measure(plain, 1)
			one.enc, one.plain, one.ratio = append(one.enc, e), append(one.plain, p), append(one.ratio, e/p)
			retrans += rt
			e2, _ := measure(enc, 2)
			p2, _ := measure(plain, 2)
			two.enc, two.plain, two.ratio = append(two.enc, e2), append(two.plain, p2), append(two.ratio, e2/p2)
		}
		for _, x := range []struct {
			name string
			s    series
		}{{"1 stream", one}, {"2 streams", two}} {
			em, elo, ehi := median(x.s.enc)
			pm, plo, phi := median(x.s.plain)
			rm, rlo, rhi := median(x.s.ratio)
			printRow(b, "wg encrypted Gbit/s, "+x.name, 3, gbit(em), gbit(elo), gbit(ehi), "across hosts, routed through userspace WireGuard")
			printRow(b, "wg plain Gbit/s, "+x.name, 3, gbit(pm), gbit(plo), gbit(phi), "the same over the plain VXLAN overlay")
			printRow(b, "wg encrypted/plain, "+x.name, 3, fmt.Sprintf("%.3f", rm), fmt.Sprintf("%.3f", rlo), fmt.Sprintf("%.3f", rhi),
				fmt.Sprintf("median of per-pair ratios (of medians %.3f), goal ≥ 0.3; enc %s vs plain %s", em/pm, list(x.s.enc), list(x.s.plain)))
		}
		printRow(b, "wg TUN read bytes/packet", 3, tunRead.avg(), "", "", "sending host: what wireguard-go reads (TSO super-packets ≫ MTU)")
		printRow(b, "wg TUN write bytes/packet", 3, tunWrite.avg(), "", "", "receiving host: what wireguard-go writes (GRO-coalesced ≫ MTU)")
		printRow(b, "wg underlay tx bytes/packet", 3, udpOut.avg(), "", "", fmt.Sprintf("sending host's eth0 (UDP GSO ≫ MTU); %d retransmits in the 3 runs", retrans))
		em, _, _ := median(one.enc)
		pm, _, _ := median(one.plain)
		rm, _, _ := median(one.ratio)
		r2, _, _ := median(two.ratio)
		b.ReportMetric(em, "enc-Gbit/s")
		b.ReportMetric(pm, "plain-Gbit/s")
		b.ReportMetric(rm, "enc/plain")
		b.ReportMetric(r2, "enc/plain-P2")
	}
}

// linkCounters are an interface's packet and byte counters from
// /proc/net/dev.
type linkCounters struct{ rxBytes, rxPackets, txBytes, txPackets uint64 }

// linkStats reads /proc/net/dev in h's namespace.
func linkStats(b *testing.B, h *harness.Host) map[string]linkCounters {
	b.Helper()
	out, err := exec.Command("nsenter", "--net=/run/netns/"+h.NS, "cat", "/proc/net/dev").Output()
	if err != nil {
		b.Fatalf("read /proc/net/dev of %s: %v", h.NS, err)
	}
	m := map[string]linkCounters{}
	for _, line := range strings.Split(string(out), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		f := strings.Fields(rest)
		if !ok || len(f) < 10 {
			continue
		}
		n := func(i int) uint64 { v, _ := strconv.ParseUint(f[i], 10, 64); return v }
		m[strings.TrimSpace(name)] = linkCounters{rxBytes: n(0), rxPackets: n(1), txBytes: n(8), txPackets: n(9)}
	}
	return m
}

// linkDelta sums one direction of one interface over several runs.
type linkDelta struct{ bytes, packets uint64 }

func (d *linkDelta) add(before, after map[string]linkCounters, link string, tx bool) {
	a, z := before[link], after[link]
	if tx {
		d.bytes, d.packets = d.bytes+z.txBytes-a.txBytes, d.packets+z.txPackets-a.txPackets
	} else {
		d.bytes, d.packets = d.bytes+z.rxBytes-a.rxBytes, d.packets+z.rxPackets-a.rxPackets
	}
}

func (d linkDelta) avg() string {
	if d.packets == 0 {
		return "-"
	}
	return strconv.FormatUint(d.bytes/d.packets, 10)
}

// BenchmarkWireGuardKeyRotation measures the WireGuard key rotation that
// `node rm` sets off (node/netloop/wgkeys.go) on a 4-node cluster with an
// encrypted network, three times (a fresh host joins between rounds):
// the time from `node rm` until every remaining node's record holds its
// new key, the time until traffic flows across hosts over the new keys,
// and the traffic gap: two probes (a container on one survivor fetching
// from one on another, both ways) run back to back through the whole
// round, and the gap is the longest time between two completed fetches.
// The probe period without a rotation is printed beside it. Timings are
// reported, never asserted.
func BenchmarkWireGuardKeyRotation(b *testing.B) {
	harness.Context(b, 30*time.Minute)
	c := harness.New(b, 4)
	token := c.Form(b)
	h1 := c.Host(1)
	h1.MustCLI(b, "image", "import", busyboxTar(b), "bb:1")
	h1.MustCLI(b, "network", "create", "--encrypted", "sec")
	h1.MustCLI(b, "service", "create", "--name", "sweb", "--mode", "global", "--network", "sec", "bb:1", "sh", "-c", canaryWebCmd)
	type probe struct{ end time.Time }
	secs := func(d time.Duration) string { return fmt.Sprintf("%.2f", d.Seconds()) }
	ms := func(d time.Duration) string { return fmt.Sprintf("%.0f", float64(d.Milliseconds())) }
	var rotated, flowing, gaps, periods []time.Duration
	for i := 0; i < b.N; i++ {
		for round := 0; round < 3; round++ {
			live := c.Running()
			leader := c.Leader(b, 60*time.Second, live...)
			// Every node with a key and a sweb task on sec.
			nodes := map[string]api.Node{} // by hostname
			tasks := map[string]api.Task{} // by hostname
			harness.Eventually(b, 240*time.Second, func() (bool, string) {
				ns, err := leader.Nodes()
				if err != nil {
					return false, err.Error()
				}
				for _, n := range ns {
					if n.WireGuardKey == "" || n.WireGuardNextKey != "" || n.Status != api.NodeReady {
						return false, "no settled WireGuard key yet for " + n.Hostname
					}
					nodes[n.Hostname] = n
				}
				var ts []api.Task
				if err := leader.JSON(&ts, "service", "ps", "sweb"); err != nil {
					return false, err.Error()
				}
				for _, tk := range ts {
					if tk.State == api.TaskRunning && tk.DesiredState == api.TaskRunning && tk.IPs["sec"] != "" {
						tasks[tk.Node] = tk
					}
				}
				for _, h := range live {
					if tasks[hostname(h)].ContainerID == "" {
						return false, "no sweb on " + h.Name
					}
				}
				return len(nodes) == len(live), fmt.Sprintf("%d of %d nodes", len(nodes), len(live))
			}, "keys and sweb everywhere")
			var victim *harness.Host
			var pair []*harness.Host
			for _, h := range live {
				if h != leader && victim == nil {
					victim = h
				} else if len(pair) < 2 {
					pair = append(pair, h)
				}
			}
			nsOf := func(h *harness.Host) string {
				return h.ContainerNetns(tasks[hostname(h)].ContainerID)
			}
			// The probes, back to back until stop.
			var mu sync.Mutex
			oks := make([][]probe, 2)
			count := func(k int, after time.Time) int {
				mu.Lock()
				defer mu.Unlock()
				n := 0
				for _, p := range oks[k] {
					if p.end.After(after) {
						n++
					}
				}
				return n
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for k, d := range [][2]*harness.Host{{pair[0], pair[1]}, {pair[1], pair[0]}} {
				from, url := nsOf(d[0]), "http://"+tasks[hostname(d[1])].IPs["sec"]+"/"
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						if out, err := wgetFrom(from, url); err == nil && strings.Contains(out, canary) {
							mu.Lock()
							oks[k] = append(oks[k], probe{end: time.Now()})
							mu.Unlock()
						}
					}
				}()
			}
			baseline := time.Now()
			harness.Eventually(b, 120*time.Second, func() (bool, string) {
				return count(0, baseline) >= 20 && count(1, baseline) >= 20, "probing before the rotation"
			}, "20 fetches each way before node rm")
			t0 := time.Now()
			leader.MustCLI(b, "node", "rm", "--force", nodes[hostname(victim)].ID)
			var tRot time.Time
			harness.Eventually(b, 300*time.Second, func() (bool, string) {
				ns, err := leader.Nodes()
				if err != nil {
					return false, err.Error()
				}
				for _, n := range ns {
					if n.Hostname == hostname(victim) {
						return false, "victim still a node"
					}
					if n.WireGuardKey == nodes[n.Hostname].WireGuardKey || n.WireGuardNextKey != "" {
						return false, n.Hostname + " not rotated yet"
					}
				}
				tRot = time.Now()
				return true, ""
			}, "every remaining node rotated")
			harness.Eventually(b, 120*time.Second, func() (bool, string) {
				return count(0, tRot) >= 20 && count(1, tRot) >= 20, "probing after the rotation"
			}, "20 fetches each way on the new keys")
			close(stop)
			wg.Wait()
			var gap, period time.Duration
			var flow time.Time
			for _, ok := range oks {
				var first time.Time // first fetch completed after the rotation
				var n int
				var base time.Duration
				for k := 1; k < len(ok); k++ {
					d := ok[k].end.Sub(ok[k-1].end)
					if ok[k].end.Before(t0) && ok[k-1].end.After(baseline) {
						base += d
						n++
					}
					if ok[k].end.After(t0) && d > gap {
						gap = d
					}
				}
				for _, p := range ok {
					if p.end.After(tRot) {
						first = p.end
						break
					}
				}
				if first.IsZero() {
					b.Fatalf("no fetch completed after the rotation")
				}
				if first.After(flow) {
					flow = first
				}
				if n > 0 && base/time.Duration(n) > period {
					period = base / time.Duration(n)
				}
			}
			rotated, flowing = append(rotated, tRot.Sub(t0)), append(flowing, flow.Sub(t0))
			gaps, periods = append(gaps, gap), append(periods, period)
			b.Logf("round %d: rotated after %s s, flowing after %s s, gap %s ms (probe period %s ms)",
				round, secs(tRot.Sub(t0)), secs(flow.Sub(t0)), ms(gap), ms(period))
			if err := victim.KillProcess(); err != nil {
				b.Fatal(err)
			}
			if round < 2 {
				h := c.AddHost()
				h.MustStart(b)
				if err := h.Join(token, leader); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	row := func(name string, xs []time.Duration, f func(time.Duration) string, note string) {
		s := append([]time.Duration(nil), xs...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		printRow(b, name, len(s), f(s[len(s)/2]), f(s[0]), f(s[len(s)-1]), note)
	}
	row("wg rotate: rm→rotated s", rotated, secs, "node rm until every remaining node's record holds a new key")
	row("wg rotate: rm→flowing s", flowing, secs, "node rm until both probes completed a fetch after that")
	row("wg rotate: gap ms", gaps, ms, "longest time between two completed fetches across hosts")
	row("wg rotate: period ms", periods, ms, "the probe's period before the rotation (resolution of the gap)")
	sort.Slice(gaps, func(i, j int) bool { return gaps[i] < gaps[j] })
	b.ReportMetric(float64(gaps[len(gaps)/2].Milliseconds()), "gap-ms")
}
