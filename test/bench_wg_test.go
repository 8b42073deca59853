package test

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

// BenchmarkWireGuardThroughput measures one TCP stream (iperf3, 5 s)
// between containers on two hosts, over an encrypted network (routed
// through userspace WireGuard) and over a plain one (VXLAN), and prints
// the medians of three runs each and their ratio (goal ≥ 0.3). The runs
// alternate encrypted and plain, so a burst of load from other work on
// the machine weighs on both alike. Timings are reported, never asserted.
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
	type pair struct{ client, server, ip string }
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
		return pair{client: nsOf(a), server: nsOf(z), ip: z.IPs[network]}
	}
	enc, plain := pairOf("s", "sec"), pairOf("p", "pln")
	measure := func(p pair) float64 {
		srv := exec.Command("nsenter", "--net="+p.server, "iperf3", "-s")
		if err := srv.Start(); err != nil {
			b.Fatal(err)
		}
		defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
		var res struct {
			Error string `json:"error"`
			End   struct {
				SumReceived struct {
					BitsPerSecond float64 `json:"bits_per_second"`
				} `json:"sum_received"`
			} `json:"end"`
		}
		harness.Eventually(b, 60*time.Second, func() (bool, string) {
			out, err := exec.Command("nsenter", "--net="+p.client, "timeout", "60", "iperf3", "-c", p.ip, "-t", "5", "-J").Output()
			res.Error, res.End.SumReceived.BitsPerSecond = "", 0
			if jerr := json.Unmarshal(out, &res); err != nil || jerr != nil || res.Error != "" {
				return false, fmt.Sprintf("%v %v %s", err, jerr, res.Error)
			}
			return res.End.SumReceived.BitsPerSecond > 0, "no bytes received"
		}, "iperf3 to "+p.ip)
		return res.End.SumReceived.BitsPerSecond / 1e9
	}
	median := func(xs []float64) (m, lo, hi float64) {
		s := append([]float64(nil), xs...)
		sort.Float64s(s)
		return s[len(s)/2], s[0], s[len(s)-1]
	}
	gbit := func(v float64) string { return fmt.Sprintf("%.2f", v) }
	for i := 0; i < b.N; i++ {
		var encRuns, plainRuns []float64
		for r := 0; r < 3; r++ {
			encRuns = append(encRuns, measure(enc))
			plainRuns = append(plainRuns, measure(plain))
		}
		em, elo, ehi := median(encRuns)
		pm, plo, phi := median(plainRuns)
		printRow(b, "wg encrypted Gbit/s", 3, gbit(em), gbit(elo), gbit(ehi), "one TCP stream across hosts, routed through userspace WireGuard")
		printRow(b, "wg plain Gbit/s", 3, gbit(pm), gbit(plo), gbit(phi), "the same over the plain VXLAN overlay")
		printRow(b, "wg encrypted/plain", 3, fmt.Sprintf("%.3f", em/pm), "", "", "ratio of the medians, goal ≥ 0.3")
		b.ReportMetric(em, "enc-Gbit/s")
		b.ReportMetric(pm, "plain-Gbit/s")
		b.ReportMetric(em/pm, "enc/plain")
	}
}
