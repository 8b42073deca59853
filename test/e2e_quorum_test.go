package test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/test/harness"
)

// TestQuorumLostReadsSayWhy: an operator's bad day. Two of three voters
// die for good: a write fails with a clear "no quorum" (it does not hang;
// once gossip has them dead, at once: no election can succeed), reads
// still answer. The survivor's agent restarts: its replica holds
// only its last snapshot until a leader confirms the rest of its log, and
// `service ls` answered an empty list, as if every service were gone; it
// now refuses, saying why and what to do. --force-new-cluster then brings
// the services back.
func TestQuorumLostReadsSayWhy(t *testing.T) {
	ctx := harness.Context(t, 4*time.Minute)
	c, _ := svcCluster(t, 3)
	waitVoters(t, c, 3, 3)
	h1, h2, h3 := c.Host(1), c.Host(2), c.Host(3)
	h1.MustCLI(t, "service", "create", "-d", "--name", "web", "--replicas", "3", "bb:1", "sleep", "100000")
	waitSlots(t, h1, "web", 3, "", 2*time.Minute)

	for _, h := range []*harness.Host{h2, h3} {
		if err := h.Kill(); err != nil {
			t.Fatal(err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	start := time.Now()
	_, _, err := h1.CLIContext(wctx, "service", "scale", "-d", "web=4")
	cancel()
	t.Logf("write right after the kill answered in %v", time.Since(start).Round(time.Millisecond))
	if err == nil || !strings.Contains(cliStderr(err), "no quorum") {
		t.Fatalf("a write without a quorum: want a 'no quorum' error, got %v", err)
	}
	// Once gossip has the two voters dead, the write does not wait for a
	// leader that cannot be elected: it says so at once, with the way out.
	harness.Eventually(t, time.Minute, func() (bool, string) {
		start := time.Now()
		_, _, err := h1.CLI("service", "scale", "-d", "web=4")
		msg := cliStderr(err)
		ok := err != nil && strings.Contains(msg, "cannot elect one") && strings.Contains(msg, "1 of 3 voters reachable") &&
			strings.Contains(msg, "--force-new-cluster")
		t.Logf("write without a quorum answered in %v (the fast answer: %v)", time.Since(start).Round(time.Millisecond), ok)
		return ok, msg
	}, "a write without a quorum fails at once, saying why")
	if out := h1.MustCLI(t, "service", "ls"); !strings.Contains(out, "web") {
		t.Fatalf("reads after the quorum loss:\n%s", out)
	}

	if err := h1.KillProcess(); err != nil {
		t.Fatal(err)
	}
	h1.MustStart(t)
	harness.Eventually(t, time.Minute, func() (bool, string) {
		out, _, err := h1.CLI("service", "ls")
		if err == nil && !strings.Contains(out, "web") {
			t.Fatalf("service ls after a restart without a quorum answered as if the services were gone:\n%s", out)
		}
		return err != nil && strings.Contains(cliStderr(err), "no leader is reachable") &&
			strings.Contains(cliStderr(err), "--force-new-cluster"), cliStderr(err)
	}, "service ls refuses, saying why")
	if _, _, err := h1.CLI("node", "ls"); err == nil || !strings.Contains(cliStderr(err), "not loaded") {
		t.Fatalf("node ls after a restart without a quorum: %v", err)
	}

	if err := h1.KillProcess(); err != nil {
		t.Fatal(err)
	}
	h1.MustStart(t, "--force-new-cluster")
	harness.Eventually(t, electionTimeout, func() (bool, string) {
		out, _, err := h1.CLI("service", "ls")
		return err == nil && strings.Contains(out, "web"), out + cliStderr(err)
	}, "the services are back after --force-new-cluster")
}
