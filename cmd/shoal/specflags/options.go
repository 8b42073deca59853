package specflags

// The container options of `service create` and `service update`, as
// `docker service create` has them: --read-only, --cap-add, --cap-drop, ...
// Compose maps the keys of the same names onto the same spec fields
// (cmd/shoal/compose). Values are normalized with api/containeropts, the
// rules the leader validates with, so a bad one fails here naming the flag.

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/api/containeropts"
)

// optionFlags are the container option flags (the same on create and
// update: on update a list flag adds to the spec's list).
func optionFlags(update bool) []cli.Flag {
	flags := []cli.Flag{
		&cli.BoolFlag{Name: "read-only", Usage: "mount the container's root file system read-only (its /etc/hosts, secrets, configs and mounts stay as they are)"},
		&cli.StringSliceFlag{Name: "cap-add", Usage: "add a Linux capability to the default set, e.g. NET_ADMIN, or ALL (repeatable)"},
		&cli.StringFlag{Name: "hostname", Usage: "the containers' hostname (default: the task's name, e.g. web.3)"},
		&cli.StringFlag{Name: "stop-signal", Usage: "signal that stops the container, before the kill after --stop-grace-period (default SIGTERM)"},
		&cli.StringSliceFlag{Name: "cap-drop", Usage: "drop a Linux capability from the default set, e.g. NET_RAW, or ALL (repeatable)"},
	}
	if update {
		flags = append(flags,
			&cli.StringSliceFlag{Name: "sysctl-add", Usage: "add or change a namespaced kernel parameter, e.g. net.core.somaxconn=1024"},
			&cli.StringSliceFlag{Name: "sysctl-rm", Usage: "remove a kernel parameter, by name"},
			&cli.StringSliceFlag{Name: "ulimit-add", Usage: "add or change a resource limit, NAME=SOFT[:HARD], e.g. nofile=1024:2048"},
			&cli.StringSliceFlag{Name: "ulimit-rm", Usage: "remove a resource limit, by name"},
			&cli.StringSliceFlag{Name: "host-add", Usage: "add a line to /etc/hosts, HOST:IP"},
			&cli.StringSliceFlag{Name: "host-rm", Usage: "remove /etc/hosts lines, by HOST or HOST:IP"},
		)
	} else {
		flags = append(flags,
			&cli.StringSliceFlag{Name: "sysctl", Usage: "namespaced kernel parameter K=V: net.*, kernel.shm*, kernel.msg*, kernel.sem or fs.mqueue.* (repeatable)"},
			// Not --host (docker service create's name): that is every
			// command's agent socket here, as docker's -H/--host.
			&cli.StringSliceFlag{Name: "add-host", Usage: "add a line to /etc/hosts, HOST:IP (repeatable)"},
			&cli.StringSliceFlag{Name: "ulimit", Usage: "resource limit NAME=SOFT[:HARD] (nofile, nproc, core, memlock, stack, ...; -1 unlimited) (repeatable)"},
		)
	}
	return flags
}

// applyOptions sets the container options the user gave.
func applyOptions(c *cli.Context, spec *api.ServiceSpec, update bool) error {
	if c.IsSet("read-only") {
		spec.ReadOnly = c.Bool("read-only")
	}
	if c.IsSet("hostname") {
		h := c.String("hostname")
		if h != "" {
			if p := containeropts.HostnameProblem(h); p != "" {
				return SpecError("hostname", errors.New(p))
			}
		}
		spec.Hostname = h
	}
	if c.IsSet("stop-signal") {
		spec.StopSignal = ""
		if s := c.String("stop-signal"); s != "" {
			_, name, err := containeropts.ParseSignal(s)
			if err != nil {
				return SpecError("stop-signal", err)
			}
			spec.StopSignal = name
		}
	}
	adds, err := containeropts.NormalizeCapabilities(c.StringSlice("cap-add"))
	if err != nil {
		return SpecError("cap-add", err)
	}
	drops, err := containeropts.NormalizeCapabilities(c.StringSlice("cap-drop"))
	if err != nil {
		return SpecError("cap-drop", err)
	}
	spec.CapAdd, spec.CapDrop = AddCapabilities(spec.CapAdd, spec.CapDrop, adds, drops)
	sysctlFlag := "sysctl"
	if update {
		sysctlFlag = "sysctl-add"
		for _, k := range c.StringSlice("sysctl-rm") {
			spec.Sysctls = maps.Clone(spec.Sysctls)
			delete(spec.Sysctls, k)
		}
	}
	if spec.Sysctls, err = SetSysctls(spec.Sysctls, c.StringSlice(sysctlFlag)); err != nil {
		return SpecError(sysctlFlag, err)
	}
	if len(spec.Sysctls) == 0 {
		spec.Sysctls = nil
	}
	ulimitFlag := "ulimit"
	if update {
		ulimitFlag = "ulimit-add"
		for _, n := range c.StringSlice("ulimit-rm") {
			spec.Ulimits = slices.DeleteFunc(slices.Clone(spec.Ulimits), func(u api.Ulimit) bool { return u.Name == n })
		}
	}
	if spec.Ulimits, err = SetUlimits(spec.Ulimits, c.StringSlice(ulimitFlag)); err != nil {
		return SpecError(ulimitFlag, err)
	}
	if len(spec.Ulimits) == 0 {
		spec.Ulimits = nil
	}
	hostFlag := "add-host"
	if update {
		hostFlag = "host-add"
		for _, h := range c.StringSlice("host-rm") {
			spec.ExtraHosts = slices.DeleteFunc(slices.Clone(spec.ExtraHosts), func(e string) bool {
				host, _, _ := strings.Cut(e, ":")
				return e == h || host == h
			})
		}
	}
	for _, h := range c.StringSlice(hostFlag) {
		e, err := containeropts.ParseExtraHost(h)
		if err != nil {
			return SpecError(hostFlag, err)
		}
		if !slices.Contains(spec.ExtraHosts, e) {
			spec.ExtraHosts = append(slices.Clip(spec.ExtraHosts), e)
		}
	}
	if len(spec.ExtraHosts) == 0 {
		spec.ExtraHosts = nil
	}
	return nil
}

// SetUlimits sets the NAME=SOFT[:HARD] limits of values in us (a copy;
// one of a name already there replaces it), sorted by name so that a
// spec's limits compare equal whatever order they were given in.
func SetUlimits(us []api.Ulimit, values []string) ([]api.Ulimit, error) {
	if len(values) == 0 {
		return us, nil
	}
	us = slices.Clone(us)
	for _, v := range values {
		u, err := containeropts.ParseUlimit(v)
		if err != nil {
			return us, err
		}
		us = slices.DeleteFunc(us, func(x api.Ulimit) bool { return x.Name == u.Name })
		us = append(us, u)
	}
	slices.SortFunc(us, func(a, b api.Ulimit) int { return strings.Compare(a.Name, b.Name) })
	return us, nil
}

// SetSysctls adds K=V kernel parameters to m (a copy), each checked with
// containeropts.SysctlProblem.
func SetSysctls(m map[string]string, values []string) (map[string]string, error) {
	if len(values) == 0 {
		return m, nil
	}
	m = maps.Clone(m)
	if m == nil {
		m = map[string]string{}
	}
	for _, kv := range values {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return m, fmt.Errorf("%w %q: want KEY=VALUE, e.g. net.core.somaxconn=1024", errBadKeyValue, kv)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if p := containeropts.SysctlProblem(k, v); p != "" {
			return m, errors.New(p)
		}
		m[k] = v
	}
	return m, nil
}

// AddCapabilities adds normalized adds and drops to a spec's lists, as
// `docker service update` does: a capability added is no longer dropped
// and the other way round, so an update can undo an earlier flag.
func AddCapabilities(capAdd, capDrop, adds, drops []string) ([]string, []string) {
	if len(adds) == 0 && len(drops) == 0 {
		return capAdd, capDrop
	}
	capAdd, capDrop = slices.Clone(capAdd), slices.Clone(capDrop)
	for _, a := range adds {
		capDrop = slices.DeleteFunc(capDrop, func(x string) bool { return x == a })
		if !slices.Contains(capAdd, a) {
			capAdd = append(capAdd, a)
		}
	}
	for _, d := range drops {
		if slices.Contains(adds, d) {
			continue // given both ways at once: added, as Docker does
		}
		capAdd = slices.DeleteFunc(capAdd, func(x string) bool { return x == d })
		if !slices.Contains(capDrop, d) {
			capDrop = append(capDrop, d)
		}
	}
	return capAdd, capDrop
}
