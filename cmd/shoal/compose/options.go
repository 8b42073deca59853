package compose

import (
	"fmt"
	"maps"
	"slices"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/api/containeropts"
)

// containerOptions maps a service's container options onto spec, as
// `docker stack deploy` does (the flags of the same names in specflags):
// read_only, hostname, extra_hosts, stop_signal, cap_add, cap_drop, sysctls, ulimits, logging. bad reports a problem with the key
// (".read_only" form).
func containerOptions(spec *api.ServiceSpec, cs types.ServiceConfig, bad func(key, format string, args ...any)) {
	spec.ReadOnly = cs.ReadOnly
	if cs.Hostname != "" {
		if p := containeropts.HostnameProblem(cs.Hostname); p != "" {
			bad(".hostname", "%s", p)
		} else {
			spec.Hostname = cs.Hostname
		}
	}
	for _, host := range slices.Sorted(maps.Keys(cs.ExtraHosts)) {
		for _, ip := range cs.ExtraHosts[host] {
			e, err := containeropts.ParseExtraHost(host + "=" + ip)
			if err != nil {
				bad(".extra_hosts", "%v", err)
				continue
			}
			spec.ExtraHosts = append(spec.ExtraHosts, e)
		}
	}
	if cs.StopSignal != "" {
		if _, name, err := containeropts.ParseSignal(cs.StopSignal); err != nil {
			bad(".stop_signal", "%v", err)
		} else {
			spec.StopSignal = name
		}
	}
	caps := func(key string, names []string) []string {
		var out []string
		for i, n := range names {
			c, err := containeropts.NormalizeCapability(n)
			if err != nil {
				bad(fmt.Sprintf("%s[%d]", key, i), "%v", err)
				continue
			}
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
		return out
	}
	spec.CapAdd, spec.CapDrop = caps(".cap_add", cs.CapAdd), caps(".cap_drop", cs.CapDrop)
	for _, k := range slices.Sorted(maps.Keys(cs.Sysctls)) {
		if p := containeropts.SysctlProblem(k, cs.Sysctls[k]); p != "" {
			bad(".sysctls."+k, "%s", p)
			continue
		}
		if spec.Sysctls == nil {
			spec.Sysctls = map[string]string{}
		}
		spec.Sysctls[k] = cs.Sysctls[k]
	}
	for _, name := range slices.Sorted(maps.Keys(cs.Ulimits)) {
		l := cs.Ulimits[name]
		if l == nil {
			continue
		}
		u := api.Ulimit{Name: name, Soft: int64(l.Soft), Hard: int64(l.Hard)}
		if l.Single != 0 {
			u.Soft, u.Hard = int64(l.Single), int64(l.Single)
		}
		if p := containeropts.UlimitProblem(u); p != "" {
			bad(".ulimits."+name, "%s", p)
			continue
		}
		spec.Ulimits = append(spec.Ulimits, u)
	}
	serviceLogging(spec, cs, bad)
}

// serviceLogging maps logging.driver and logging.options onto spec
// (--log-driver, --log-opt), refusing what Shoal does not implement.
func serviceLogging(spec *api.ServiceSpec, cs types.ServiceConfig, bad func(key, format string, args ...any)) {
	if cs.Logging == nil {
		return
	}
	var opts map[string]string
	if len(cs.Logging.Options) > 0 {
		opts = maps.Clone(map[string]string(cs.Logging.Options))
	}
	if _, err := api.ParseLogging(cs.Logging.Driver, opts); err != nil {
		bad(".logging", "%v", err)
		return
	}
	spec.LogDriver, spec.LogOptions = cs.Logging.Driver, opts
}
