package specflags

// How a service is reached by name: --endpoint-mode, and the long form of
// --network / --network-add that gives a network's aliases.

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/shoal-org/shoal/api"
)

// endpointFlags are the flags of this file, on create and update alike.
func endpointFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "endpoint-mode", Usage: "vip (a virtual IP its name resolves to, balanced) or dnsrr (no VIP: its name resolves to its tasks' addresses; ports only with mode=host); a change rolls no task (default vip)"},
	}
}

// applyEndpointMode reads --endpoint-mode. vip is stored as the empty
// default (servicespec.Defaults spells it so too).
func applyEndpointMode(c *cli.Context, spec *api.ServiceSpec) error {
	if !c.IsSet("endpoint-mode") {
		return nil
	}
	switch m := strings.ToLower(strings.TrimSpace(c.String("endpoint-mode"))); m {
	case api.EndpointVIP:
		spec.EndpointMode = ""
	case api.EndpointDNSRR:
		spec.EndpointMode = api.EndpointDNSRR
	default:
		return UsageErrorf("invalid --endpoint-mode %q: want vip or dnsrr", c.String("endpoint-mode"))
	}
	return nil
}

// parseNetwork reads a --network or --network-add value: NAME (the short
// form) or docker's long form name=NAME,alias=A[,alias=B]. Each alias is
// checked as the leader checks it (api.AliasProblem), once per network.
func parseNetwork(s string) (name string, aliases []string, err error) {
	if !strings.Contains(s, "=") {
		if strings.TrimSpace(s) == "" || strings.Contains(s, ",") {
			return "", nil, fmt.Errorf("%q: want NAME or name=NAME,alias=ALIAS", s)
		}
		return s, nil, nil
	}
	for _, field := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(field), "=")
		if !ok || v == "" {
			return "", nil, fmt.Errorf("%q: %q needs a value (key=value)", s, field)
		}
		switch strings.ToLower(k) {
		case "name", "target":
			if name != "" {
				return "", nil, fmt.Errorf("%q: name given twice", s)
			}
			name = v
		case "alias":
			if p := api.AliasProblem(v); p != "" {
				return "", nil, fmt.Errorf("%q: alias %q: %s", s, v, p)
			}
			if slices.ContainsFunc(aliases, func(a string) bool { return strings.EqualFold(a, v) }) {
				return "", nil, fmt.Errorf("%q: alias %q given twice", s, v)
			}
			aliases = append(aliases, v)
		default:
			return "", nil, fmt.Errorf("%q: unknown key %q (want name, alias)", s, k)
		}
	}
	if name == "" {
		return "", nil, fmt.Errorf("%q: no name= (want name=NAME,alias=ALIAS)", s)
	}
	return name, aliases, nil
}

// setAliases records aliases of network in spec (none: the network has
// none, and an empty map is nil so specs compare equal). The map is
// copied: an update's spec may share it with the service it came from.
func setAliases(spec *api.ServiceSpec, network string, aliases []string) {
	m := maps.Clone(spec.NetworkAliases)
	if len(aliases) == 0 {
		delete(m, network)
	} else {
		if m == nil {
			m = map[string][]string{}
		}
		m[network] = aliases
	}
	if len(m) == 0 {
		m = nil
	}
	spec.NetworkAliases = m
}
