// Package test holds Shoal's end-to-end tests and benchmarks: real agents,
// one per network namespace, driven only through the CLI (DESIGN.md, Tests).
// They need root, ip, nft, nsenter and runc, and skip otherwise. Run them
// with `go test ./test/` (tests) or `go test -run '^$' -bench . ./test/`
// (benchmarks); set SHOAL_BIN to test a prebuilt binary.
package test

import (
	"os"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api/timerslack"
	"github.com/shoal-org/shoal/test/harness"
)

func TestMain(m *testing.M) {
	if p := os.Getenv(envSleeper); p != "" {
		sleeper(p) // the idle benchmark's baseline process; never returns
	}
	code := m.Run()
	harness.RemoveBuiltBinary()
	os.Exit(code)
}

// envSleeper, set to a duration, makes the test binary the idle
// benchmark's baseline (startSleeper): a process that does nothing but
// sleep that long and wake, until it is killed, with the agent's runtime
// settings (one P, timerslack.Agent of timer slack on every thread).
const envSleeper = "SHOAL_BENCH_SLEEPER"

func sleeper(period string) {
	d, err := time.ParseDuration(period)
	if err != nil || d <= 0 {
		os.Exit(2)
	}
	_ = timerslack.Coarsen(timerslack.Agent) // as the agent (cmd/shoal/agent)
	for {
		time.Sleep(d)
	}
}
