package test

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
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
			return filepath.Join(hostOfB(b, c, tk).DataDir, "runtime", "netns", tk.ContainerID)
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
