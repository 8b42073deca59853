package autoscale

// Autoscaling decisions, as a pure function of what the leader observed
// (node/leaderloop/autoscale.go gathers the samples and writes the result).
//
// A sample is the average usage of a service's running tasks at one moment,
// as a percentage of each task's limit. The decision only looks at samples
// taken at the current replica count and after the last change it made, so
// every change is followed by a fresh observation period (the cool-down):
//
//   - outside [Min, Max]: move to the nearest bound at once;
//   - up: every sample of the last ScaleUpDelay is above a target, and the
//     observation covers that long: replicas × average/target (as
//     Kubernetes' HPA), at least one more, at most double, at most Max;
//   - down: every sample of the last ScaleDownDelay is below every target,
//     the observation covers that long, and the load of the remaining tasks
//     (average × n/(n−1)) would still be below every target: one fewer, at
//     least Min. The projection keeps the service from flapping between n
//     and n−1.

import (
	"fmt"
	"math"
	"time"

	"github.com/shoal-org/shoal/api"
)

// Default autoscaling delays (api.AutoscaleConfig zero values).
const (
	DefaultScaleUpDelay   = 15 * time.Second
	DefaultScaleDownDelay = 60 * time.Second
)

// Sample is the average usage of one service's running tasks at
// one moment. CPUPercent is a share of each task's CPU limit (of one core
// without a limit); MemoryPercent a share of its memory limit.
type Sample struct {
	At            time.Time
	Replicas      uint64 // the service's replica count when taken
	Tasks         int    // running tasks that reported usage
	CPUPercent    float64
	MemoryPercent float64
}

// Input is what Decide needs; nothing else is read.
type Input struct {
	Config   api.AutoscaleConfig
	Replicas uint64
	// Samples in any order; those before LastScale or at another replica
	// count are ignored.
	Samples   []Sample
	LastScale time.Time
	Now       time.Time
}

// Decision is the replica count the service should have and why.
// Reason is empty when Replicas is unchanged.
type Decision struct {
	Replicas      uint64
	Reason        string
	CPUPercent    float64 // averages over the deciding window
	MemoryPercent float64
}

// Decide returns the replica count a service with in.Config should
// have. It is pure: the same input gives the same answer.
func Decide(in Input) Decision {
	cfg := in.Config
	cur := in.Replicas
	keep := Decision{Replicas: cur}
	if cur < cfg.Min {
		return Decision{Replicas: cfg.Min, Reason: fmt.Sprintf("%d replicas is below the autoscale minimum %d", cur, cfg.Min)}
	}
	if cfg.Max > 0 && cur > cfg.Max {
		return Decision{Replicas: cfg.Max, Reason: fmt.Sprintf("%d replicas is above the autoscale maximum %d", cur, cfg.Max)}
	}
	var rel []Sample
	var first time.Time
	for _, s := range in.Samples {
		if s.Replicas != cur || s.Tasks <= 0 || !s.At.After(in.LastScale) || s.At.After(in.Now) {
			continue
		}
		rel = append(rel, s)
		if first.IsZero() || s.At.Before(first) {
			first = s.At
		}
	}
	if len(rel) == 0 {
		return keep
	}
	observed := in.Now.Sub(first)

	up := cfg.ScaleUpDelay
	if up <= 0 {
		up = DefaultScaleUpDelay
	}
	if observed >= up && cur < cfg.Max {
		w := window(rel, in.Now.Add(-up))
		allAbove := len(w) > 0
		for _, s := range w {
			if !above(cfg, s) {
				allAbove = false
				break
			}
		}
		if allAbove {
			cpu, mem := means(w)
			factor := 0.0
			if cfg.CPUPercent > 0 {
				factor = max(factor, cpu/cfg.CPUPercent)
			}
			if cfg.MemoryPercent > 0 {
				factor = max(factor, mem/cfg.MemoryPercent)
			}
			want := uint64(math.Ceil(float64(cur) * factor))
			want = max(want, cur+1)
			want = min(want, 2*cur, cfg.Max)
			return Decision{
				Replicas:      want,
				Reason:        fmt.Sprintf("%s above target for %s: scale up %d → %d", usageText(cfg, cpu, mem), up, cur, want),
				CPUPercent:    cpu,
				MemoryPercent: mem,
			}
		}
	}

	down := cfg.ScaleDownDelay
	if down <= 0 {
		down = DefaultScaleDownDelay
	}
	if observed >= down && cur > cfg.Min && cur > 1 {
		w := window(rel, in.Now.Add(-down))
		allBelow := len(w) > 0
		for _, s := range w {
			if !below(cfg, s) {
				allBelow = false
				break
			}
		}
		if allBelow {
			cpu, mem := means(w)
			// The remaining tasks take over the load of the one removed.
			k := float64(cur) / float64(cur-1)
			if below(cfg, Sample{CPUPercent: cpu * k, MemoryPercent: mem * k}) {
				want := cur - 1
				return Decision{
					Replicas:      want,
					Reason:        fmt.Sprintf("%s below target for %s: scale down %d → %d", usageText(cfg, cpu, mem), down, cur, want),
					CPUPercent:    cpu,
					MemoryPercent: mem,
				}
			}
		}
	}
	return keep
}

// window returns the samples at or after from.
func window(samples []Sample, from time.Time) []Sample {
	var w []Sample
	for _, s := range samples {
		if !s.At.Before(from) {
			w = append(w, s)
		}
	}
	return w
}

// above reports whether a sample exceeds any target.
func above(cfg api.AutoscaleConfig, s Sample) bool {
	return (cfg.CPUPercent > 0 && s.CPUPercent > cfg.CPUPercent) ||
		(cfg.MemoryPercent > 0 && s.MemoryPercent > cfg.MemoryPercent)
}

// below reports whether a sample is under every target.
func below(cfg api.AutoscaleConfig, s Sample) bool {
	return (cfg.CPUPercent <= 0 || s.CPUPercent < cfg.CPUPercent) &&
		(cfg.MemoryPercent <= 0 || s.MemoryPercent < cfg.MemoryPercent)
}

func means(w []Sample) (cpu, mem float64) {
	for _, s := range w {
		cpu += s.CPUPercent
		mem += s.MemoryPercent
	}
	n := float64(len(w))
	return cpu / n, mem / n
}

// usageText names the averages against their targets, e.g.
// "cpu 96% (target 50%)".
func usageText(cfg api.AutoscaleConfig, cpu, mem float64) string {
	var s string
	if cfg.CPUPercent > 0 {
		s = fmt.Sprintf("cpu %.0f%% (target %g%%)", cpu, cfg.CPUPercent)
	}
	if cfg.MemoryPercent > 0 {
		if s != "" {
			s += ", "
		}
		s += fmt.Sprintf("memory %.0f%% (target %g%%)", mem, cfg.MemoryPercent)
	}
	return s
}
