package autoscale

import (
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

func TestDecideAutoscale(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0.Add(5 * time.Minute)
	cpu50 := api.AutoscaleConfig{Min: 1, Max: 3, CPUPercent: 50, ScaleUpDelay: 15 * time.Second, ScaleDownDelay: 60 * time.Second}
	mem80 := api.AutoscaleConfig{Min: 2, Max: 10, MemoryPercent: 80}
	both := api.AutoscaleConfig{Min: 1, Max: 10, CPUPercent: 50, MemoryPercent: 80, ScaleUpDelay: 15 * time.Second, ScaleDownDelay: 60 * time.Second}
	// series makes one sample every 3s over the span before now.
	series := func(span time.Duration, replicas uint64, cpu, mem float64) []Sample {
		var out []Sample
		for d := span; d >= 0; d -= 3 * time.Second {
			out = append(out, Sample{At: now.Add(-d), Replicas: replicas, Tasks: int(replicas), CPUPercent: cpu, MemoryPercent: mem})
		}
		return out
	}
	cat := func(parts ...[]Sample) []Sample {
		var out []Sample
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	spike := func(s []Sample, ago time.Duration, cpu float64) []Sample {
		return append(s, Sample{At: now.Add(-ago), Replicas: s[0].Replicas, Tasks: 1, CPUPercent: cpu})
	}
	tests := []struct {
		name      string
		cfg       api.AutoscaleConfig
		replicas  uint64
		samples   []Sample
		lastScale time.Time
		want      uint64
		reason    string // substring; "" means no reason
	}{
		{"below min, no samples", mem80, 1, nil, time.Time{}, 2, "below the autoscale minimum 2"},
		{"above max", cpu50, 5, series(time.Minute, 5, 0, 0), time.Time{}, 3, "above the autoscale maximum 3"},
		{"no samples", cpu50, 1, nil, time.Time{}, 1, ""},
		{"above long enough: doubles", cpu50, 1, series(20*time.Second, 1, 100, 0), time.Time{}, 2, "cpu 100% (target 50%) above target for 15s: scale up 1 → 2"},
		{"above by a lot: at most double", cpu50, 2, series(20*time.Second, 2, 400, 0), time.Time{}, 3, "scale up 2 → 3"},
		{"proportional: 4 at 75% of 50 → 6", api.AutoscaleConfig{Min: 1, Max: 10, CPUPercent: 50}, 4, series(20*time.Second, 4, 75, 0), time.Time{}, 6, "scale up 4 → 6"},
		{"slightly above: at least one more", api.AutoscaleConfig{Min: 1, Max: 10, CPUPercent: 50}, 4, series(20*time.Second, 4, 51, 0), time.Time{}, 5, "scale up 4 → 5"},
		{"above not long enough", cpu50, 1, series(12*time.Second, 1, 100, 0), time.Time{}, 1, ""},
		{"above, but one dip in the window", cpu50, 1, spike(series(20*time.Second, 1, 100, 0), 5*time.Second, 10), time.Time{}, 1, ""},
		{"a dip before the window does not count", cpu50, 1, spike(series(20*time.Second, 1, 100, 0), 18*time.Second, 10), time.Time{}, 2, "scale up 1 → 2"},
		{"at max: stays", cpu50, 3, series(time.Minute, 3, 100, 0), time.Time{}, 3, ""},
		{"cool-down: samples before the last scale are ignored", cpu50, 1, series(time.Minute, 1, 100, 0), now.Add(-10 * time.Second), 1, ""},
		{"cool-down over", cpu50, 1, series(time.Minute, 1, 100, 0), now.Add(-16 * time.Second), 2, "scale up"},
		{"samples at another replica count are ignored", cpu50, 2, series(time.Minute, 1, 100, 0), time.Time{}, 2, ""},
		{"samples without tasks are ignored", cpu50, 1, []Sample{{At: now.Add(-20 * time.Second), Replicas: 1}, {At: now, Replicas: 1, Tasks: 1, CPUPercent: 100}}, time.Time{}, 1, ""},
		{"below long enough: one step down", cpu50, 3, series(61*time.Second, 3, 5, 0), time.Time{}, 2, "cpu 5% (target 50%) below target for 1m0s: scale down 3 → 2"},
		{"below not long enough", cpu50, 3, series(50*time.Second, 3, 5, 0), time.Time{}, 3, ""},
		{"below, one spike in the window", cpu50, 3, spike(series(61*time.Second, 3, 5, 0), 30*time.Second, 60), time.Time{}, 3, ""},
		{"below but the rest would go above: stays", cpu50, 2, series(61*time.Second, 2, 40, 0), time.Time{}, 2, ""},
		{"below and the rest stays below", cpu50, 3, series(61*time.Second, 3, 30, 0), time.Time{}, 2, "scale down 3 → 2"},
		{"at min: stays", cpu50, 1, series(2*time.Minute, 1, 0, 0), time.Time{}, 1, ""},
		{"between targets: stays", cpu50, 2, series(2*time.Minute, 2, 50, 0), time.Time{}, 2, ""},
		{"default delays: up after 15s", mem80, 2, series(16*time.Second, 2, 0, 90), time.Time{}, 3, "memory 90% (target 80%) above target for 15s: scale up 2 → 3"},
		{"default delays: not down before 60s", mem80, 3, series(50*time.Second, 3, 0, 10), time.Time{}, 3, ""},
		{"two targets: one above scales up", both, 2, series(20*time.Second, 2, 10, 90), time.Time{}, 3, "cpu 10% (target 50%), memory 90% (target 80%) above target"},
		{"two targets: down needs both below", both, 3, series(2*time.Minute, 3, 10, 79), time.Time{}, 3, ""},
		{"two targets: both below", both, 3, series(2*time.Minute, 3, 10, 20), time.Time{}, 2, "scale down 3 → 2"},
		{"future samples are ignored", cpu50, 1, []Sample{{At: now.Add(time.Hour), Replicas: 1, Tasks: 1, CPUPercent: 100}}, time.Time{}, 1, ""},
		{"old then recent: observation counts from the first", cpu50, 1, cat(series(0, 1, 100, 0), []Sample{{At: now.Add(-15 * time.Second), Replicas: 1, Tasks: 1, CPUPercent: 100}}), time.Time{}, 2, "scale up 1 → 2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := Input{Config: tc.cfg, Replicas: tc.replicas, Samples: tc.samples, LastScale: tc.lastScale, Now: now}
			got := Decide(in)
			if got.Replicas != tc.want {
				t.Fatalf("replicas %d, want %d (reason %q)", got.Replicas, tc.want, got.Reason)
			}
			if tc.reason == "" && got.Reason != "" {
				t.Fatalf("reason %q, want none", got.Reason)
			}
			if !strings.Contains(got.Reason, tc.reason) {
				t.Fatalf("reason %q, want it to contain %q", got.Reason, tc.reason)
			}
			if (got.Replicas != tc.replicas) != (got.Reason != "") {
				t.Fatalf("a change needs a reason and only a change has one: %+v", got)
			}
			// Pure: the same input, the same answer.
			if again := Decide(in); again != got {
				t.Fatalf("second call %+v, first %+v", again, got)
			}
		})
	}
}

// TestDecideAutoscaleStaysInBounds: whatever the samples, the answer is
// within [Min, Max], at most double and down by at most one.
func TestDecideAutoscaleStaysInBounds(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 5, 0, 0, time.UTC)
	for _, cfg := range []api.AutoscaleConfig{
		{Min: 1, Max: 3, CPUPercent: 50, ScaleUpDelay: time.Second, ScaleDownDelay: time.Second},
		{Min: 2, Max: 100, CPUPercent: 10, MemoryPercent: 50, ScaleUpDelay: time.Second, ScaleDownDelay: time.Second},
	} {
		for cur := cfg.Min; cur <= min(cfg.Max, 20); cur++ {
			for _, cpu := range []float64{0, 1, 9, 10, 11, 49, 50, 51, 100, 1000} {
				for _, mem := range []float64{0, 49, 51, 100} {
					var samples []Sample
					for d := 10 * time.Second; d >= 0; d -= time.Second {
						samples = append(samples, Sample{At: now.Add(-d), Replicas: cur, Tasks: 1, CPUPercent: cpu, MemoryPercent: mem})
					}
					got := Decide(Input{Config: cfg, Replicas: cur, Samples: samples, Now: now}).Replicas
					if got < cfg.Min || got > cfg.Max || got > 2*cur || got+1 < cur {
						t.Fatalf("cfg %+v replicas %d cpu %g mem %g → %d", cfg, cur, cpu, mem, got)
					}
				}
			}
		}
	}
}
