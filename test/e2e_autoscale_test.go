package test

// End-to-end test of autoscaling (issue 12): a CPU burner capped at 0.2 CPU
// runs at 100% of its limit, so a service with a 50% CPU target grows to its
// maximum; once its command becomes `sleep`, it shrinks back to its minimum
// one step at a time. The delays are short (spec fields) so the test does
// not wait for the defaults of 15 s and 60 s.

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

func autoscaledService(t *testing.T, h *harness.Host, name string) api.Service {
	t.Helper()
	var s api.Service
	if err := h.JSON(&s, "service", "inspect", name); err != nil {
		t.Fatalf("service inspect %s on %s: %v", name, h.Name, err)
	}
	return s
}

func TestAutoscale(t *testing.T) {
	c, _ := svcCluster(t, 2)
	harness.Context(t, 8*time.Minute)
	h1, h2 := c.Host(1), c.Host(2)

	// Bad input is refused and creates nothing.
	_, _, err := h1.CLI("service", "create", "-d", "--name", "bad", "--autoscale", "min=3,max=2,cpu=50%", "bb:1", "sleep", "100")
	mustFail(t, err, "autoscale max below min", "max=2: must be at least min (3)")
	_, _, err = h1.CLI("service", "create", "-d", "--name", "bad", "--mode", "global", "--autoscale", "min=1,max=2,cpu=50%", "bb:1", "sleep", "100")
	mustFail(t, err, "autoscale on a global service", "replicated services only")
	_, _, err = h1.CLI("service", "create", "-d", "--name", "bad", "--autoscale", "min=1,max=2,memory=50%", "bb:1", "sleep", "100")
	mustFail(t, err, "memory target without a limit", "needs a memory limit")
	if _, _, err := h1.CLI("service", "inspect", "bad"); err == nil {
		t.Fatal("a refused create left a service behind")
	}

	start := time.Now()
	h1.MustCLI(t, "service", "create", "-d", "--name", "burn", "--limit-cpu", "0.2",
		"--autoscale", "min=1,max=3,cpu=50%,up-delay=5s,down-delay=10s",
		"bb:1", "sh", "-c", "while :; do :; done")
	s := autoscaledService(t, h2, "burn")
	if a := s.Spec.Autoscale; a == nil || a.Min != 1 || a.Max != 3 || a.CPUPercent != 50 ||
		a.ScaleUpDelay != 5*time.Second || a.ScaleDownDelay != 10*time.Second || s.Spec.Replicas != 1 {
		t.Fatalf("inspect on another node: replicas %d autoscale %+v", s.Spec.Replicas, s.Spec.Autoscale)
	}

	// Up to the maximum, never beyond it.
	up := harness.Eventually(t, 3*time.Minute, func() (bool, string) {
		s := autoscaledService(t, h2, "burn")
		if s.Spec.Replicas > 3 {
			t.Fatalf("scaled to %d, above the maximum 3", s.Spec.Replicas)
		}
		return s.Spec.Replicas == 3 && s.Running == 3, fmt.Sprintf("replicas %d running %d status %+v", s.Spec.Replicas, s.Running, s.AutoscaleStatus)
	}, "burn scales up to 3")
	s = autoscaledService(t, h2, "burn")
	t.Logf("1 → 3 in %s; last decision: %+v", up.Round(time.Second), s.AutoscaleStatus)
	if st := s.AutoscaleStatus; st == nil || st.To != 3 || !strings.Contains(st.Reason, "above target") || !strings.Contains(st.Reason, "scale up") || st.CPUPercent <= 50 {
		t.Fatalf("autoscale status after scaling up: %+v", s.AutoscaleStatus)
	}

	// The load stops: back down to the minimum, one step at a time.
	h1.MustCLI(t, "service", "update", "-d", "--args", "sleep 100000", "burn")
	seen := map[uint64]bool{}
	down := harness.Eventually(t, 4*time.Minute, func() (bool, string) {
		s := autoscaledService(t, h1, "burn")
		if st := s.AutoscaleStatus; st != nil && st.To < st.From {
			seen[st.To] = true
			if st.From-st.To != 1 {
				t.Fatalf("scaled down by more than one step: %+v", st)
			}
		}
		return s.Spec.Replicas == 1 && s.Running == 1, fmt.Sprintf("replicas %d running %d status %+v", s.Spec.Replicas, s.Running, s.AutoscaleStatus)
	}, "burn scales down to 1")
	s = autoscaledService(t, h2, "burn")
	if st := s.AutoscaleStatus; st == nil || st.From != 2 || st.To != 1 || !strings.Contains(st.Reason, "below target") {
		t.Fatalf("autoscale status after scaling down: %+v", s.AutoscaleStatus)
	}
	t.Logf("3 → 1 in %s after the load stopped (steps seen: %v); last decision: %+v", down.Round(time.Second), seen, s.AutoscaleStatus)

	// Every change is a scaled event that says why, on any node.
	out := h2.MustCLI(t, "events", "--format", "json", "--filter", "type=service", "--filter", "name=burn",
		"--since", start.UTC().Format(time.RFC3339Nano), "--until", time.Now().UTC().Format(time.RFC3339Nano))
	var steps []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev api.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("event line %q: %v", line, err)
		}
		if ev.Action == "scaled" {
			if !strings.Contains(ev.Attributes["reason"], "target") {
				t.Errorf("scaled event without the autoscaler's reason: %+v", ev)
			}
			steps = append(steps, ev.Attributes["previous_replicas"]+"→"+ev.Attributes["replicas"])
		}
	}
	if len(steps) < 3 || steps[len(steps)-1] != "2→1" {
		t.Fatalf("scaled events %v, want the way up and down to 1", steps)
	}
	t.Logf("scaled events: %v", steps)

	// --autoscale off: the replica count is the user's again.
	h2.MustCLI(t, "service", "update", "-d", "--autoscale", "off", "burn")
	if s := autoscaledService(t, h1, "burn"); s.Spec.Autoscale != nil {
		t.Fatalf("autoscale still set after off: %+v", s.Spec.Autoscale)
	}
	h1.MustCLI(t, "service", "scale", "-d", "burn=2")
	harness.Consistently(t, 15*time.Second, func() (bool, string) {
		s := autoscaledService(t, h1, "burn")
		return s.Spec.Replicas == 2, fmt.Sprintf("replicas %d", s.Spec.Replicas)
	}, "replicas stay as scaled with autoscale off")
}
