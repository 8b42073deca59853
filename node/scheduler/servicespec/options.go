package servicespec

import (
	"fmt"
	"maps"
	"slices"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/api/containeropts"
)

// optionProblems returns what is wrong with the container options of
// spec, each naming its field: anything runc would refuse is refused
// here, at create or update, rather than as tasks that fail one after the
// other on every node.
func optionProblems(spec api.ServiceSpec) []string {
	var p []string
	bad := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	for _, l := range []struct {
		field string
		caps  []string
	}{{"cap_add", spec.CapAdd}, {"cap_drop", spec.CapDrop}} {
		for i, c := range l.caps {
			if _, err := containeropts.NormalizeCapability(c); err != nil {
				bad("%s[%d]: %v", l.field, i, err)
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(spec.Sysctls)) {
		if why := containeropts.SysctlProblem(k, spec.Sysctls[k]); why != "" {
			bad("sysctls: %s", why)
		}
	}
	p = append(p, containeropts.UlimitsProblems("ulimits", spec.Ulimits)...)
	if spec.Hostname != "" {
		if why := containeropts.HostnameProblem(spec.Hostname); why != "" {
			bad("hostname %s", why)
		}
	}
	for i, e := range spec.ExtraHosts {
		if why := containeropts.ExtraHostProblem(e); why != "" {
			bad("extra_hosts[%d]: %s", i, why)
		}
	}
	if spec.StopSignal != "" {
		if _, _, err := containeropts.ParseSignal(spec.StopSignal); err != nil {
			bad("stop_signal: %v", err)
		}
	}
	if _, err := api.ParseLogging(spec.LogDriver, spec.LogOptions); err != nil {
		bad("logging: %v", err)
	}
	return p
}
