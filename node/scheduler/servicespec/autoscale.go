package servicespec

import (
	"fmt"
	"math"

	"github.com/shoal-org/shoal/api"
)

// MaxAutoscaleCPUPercent bounds a CPU target: without a CPU limit usage is
// counted against one core, and a task may use several.
const MaxAutoscaleCPUPercent = 1000

// autoscaleProblems lists what is wrong with a spec's autoscale config
// (Validate reports them with the rest).
func autoscaleProblems(spec api.ServiceSpec) []string {
	a := spec.Autoscale
	if a == nil {
		return nil
	}
	var p []string
	bad := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	if spec.Mode == api.ModeGlobal {
		bad("autoscale: a global service runs one task on every eligible node; autoscale applies to replicated services only")
	}
	if api.IsJob(spec.Mode) {
		bad("autoscale: a %s runs its tasks to completion; autoscale applies to replicated services only", spec.Mode)
	}
	if a.Min < 1 {
		bad("autoscale.min %d: must be at least 1", a.Min)
	}
	if a.Max < a.Min {
		bad("autoscale.max %d: must be at least min (%d)", a.Max, a.Min)
	}
	if a.Max > MaxReplicas {
		bad("autoscale.max %d: more than %d", a.Max, MaxReplicas)
	}
	if a.CPUPercent == 0 && a.MemoryPercent == 0 {
		bad("autoscale: needs a cpu or memory target")
	}
	if a.CPUPercent < 0 || a.CPUPercent > MaxAutoscaleCPUPercent || math.IsNaN(a.CPUPercent) {
		bad("autoscale.cpu_percent %g: must be between 0 and %d", a.CPUPercent, MaxAutoscaleCPUPercent)
	}
	if a.MemoryPercent < 0 || a.MemoryPercent > 100 || math.IsNaN(a.MemoryPercent) {
		bad("autoscale.memory_percent %g: must be between 0 and 100", a.MemoryPercent)
	}
	if a.MemoryPercent > 0 && spec.Resources.Limits.MemoryBytes <= 0 {
		bad("autoscale.memory_percent: a memory target needs a memory limit (--limit-memory)")
	}
	if a.ScaleUpDelay < 0 {
		bad("autoscale.scale_up_delay %s: must not be negative", a.ScaleUpDelay)
	}
	if a.ScaleDownDelay < 0 {
		bad("autoscale.scale_down_delay %s: must not be negative", a.ScaleDownDelay)
	}
	return p
}
