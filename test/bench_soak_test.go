package test

// A soak run for false alarms: an idle 3-node cluster while stress-ng keeps
// both cores busy. No node may ever be reported down. It lasts
// SHOAL_SOAK (a Go duration, default 10m) and is skipped by -short.
//
//	go test -run '^$' -bench NoFalseDown -benchtime 1x ./test/

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

func BenchmarkNoFalseDownUnderLoad(b *testing.B) {
	if testing.Short() {
		b.Skip("soak run skipped in -short mode")
	}
	d := 10 * time.Minute
	if v := os.Getenv("SHOAL_SOAK"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			b.Fatalf("SHOAL_SOAK=%q: %v", v, err)
		}
	}
	if _, err := exec.LookPath("stress-ng"); err != nil {
		b.Skip("stress-ng is missing: run `make deps`")
	}
	c, _ := formVoters(b, 3, 3)

	// Load every core, bounded in time by stress-ng itself and by ctx.
	ctx, cancel := context.WithTimeout(context.Background(), d+time.Minute)
	defer cancel()
	stress := exec.CommandContext(ctx, "stress-ng", "--cpu", "0", "--cpu-load", "100", "--timeout", fmt.Sprintf("%ds", int(d.Seconds())+5), "--quiet")
	if err := stress.Start(); err != nil {
		b.Fatalf("start stress-ng: %v", err)
	}
	defer func() { cancel(); _ = stress.Wait() }()

	b.ResetTimer()
	end := time.Now().Add(d)
	polls, falseDown, errs := 0, 0, 0
	for time.Now().Before(end) {
		for _, h := range c.Hosts() {
			var nodes []api.Node
			if err := h.JSON(&nodes, "node", "ls"); err != nil {
				errs++
				continue
			}
			polls++
			for _, n := range nodes {
				if n.Status != api.NodeReady {
					falseDown++
					b.Logf("%s: %s reported %s at %s", h.Name, n.Hostname, n.Status, time.Now().Format(time.RFC3339))
				}
			}
		}
		time.Sleep(time.Second)
	}
	b.StopTimer()
	b.ReportMetric(float64(falseDown), "false-down")
	b.ReportMetric(float64(polls), "polls")
	printRow(b, "false-down-under-load", polls, fmt.Sprintf("%d", falseDown), "-", "-",
		fmt.Sprintf("%s of stress-ng on all cores, %d node ls polls, %d CLI errors", d, polls, errs))
}
