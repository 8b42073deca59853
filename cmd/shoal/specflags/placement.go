package specflags

// The placement flags of `service create` and `service update` that are
// not constraints, as docker's: --replicas-max-per-node and
// --placement-pref (--placement-pref-add/-rm on update). Compose maps
// deploy.placement.max_replicas_per_node and .preferences onto the same
// spec fields (cmd/shoal/compose). The leader checks the same rules again
// (node/scheduler/servicespec, placement.ParsePreference).

import (
	"fmt"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/shoal-org/shoal/api"
)

// placementFlags are the flags of this file.
func placementFlags(update bool) []cli.Flag {
	flags := []cli.Flag{
		&cli.Uint64Flag{Name: "replicas-max-per-node", Usage: "most tasks of the service on one node, 0 = no limit (replicated mode, default 0)"},
	}
	if update {
		return append(flags,
			&cli.StringSliceFlag{Name: "placement-pref-add", Usage: "add a placement preference, spread=node.labels.NAME"},
			&cli.StringSliceFlag{Name: "placement-pref-rm", Usage: "remove a placement preference, spread=node.labels.NAME"},
		)
	}
	return append(flags,
		&cli.StringSliceFlag{Name: "placement-pref", Usage: "spread the tasks over the values of a node label, spread=node.labels.NAME (repeatable: each spreads within the groups of the one before)"},
	)
}

// applyPlacement sets the limit and the preferences the user gave.
func applyPlacement(c *cli.Context, spec *api.ServiceSpec, update bool) error {
	if c.IsSet("replicas-max-per-node") {
		m := c.Uint64("replicas-max-per-node")
		if m > 0 && spec.Mode == api.ModeGlobal {
			return UsageErrorf("--replicas-max-per-node applies to replicated services only (a global service runs one task per node)")
		}
		spec.MaxReplicasPerNode = m
	}
	add := "placement-pref"
	if update {
		add = "placement-pref-add"
		for _, v := range c.StringSlice("placement-pref-rm") {
			p, err := ParsePlacementPref(v)
			if err != nil {
				return SpecError("placement-pref-rm", err)
			}
			if !slices.Contains(spec.PlacementPreferences, p) {
				return notInSpec("placement-pref-rm", v, "placement preference",
					mapSlice(spec.PlacementPreferences, func(p api.PlacementPreference) string { return "spread=" + p.Spread }))
			}
			spec.PlacementPreferences = slices.DeleteFunc(slices.Clone(spec.PlacementPreferences),
				func(x api.PlacementPreference) bool { return x == p })
		}
	}
	var err error
	if spec.PlacementPreferences, err = AddPlacementPrefs(spec.PlacementPreferences, c.StringSlice(add)); err != nil {
		return SpecError(add, err)
	}
	if len(spec.PlacementPreferences) == 0 {
		spec.PlacementPreferences = nil
	}
	return nil
}

// AddPlacementPrefs appends the preferences (spread=node.labels.NAME) not
// already in ps, in order: the order is the nesting.
func AddPlacementPrefs(ps []api.PlacementPreference, values []string) ([]api.PlacementPreference, error) {
	for _, v := range values {
		p, err := ParsePlacementPref(v)
		if err != nil {
			return ps, err
		}
		if !slices.Contains(ps, p) {
			ps = append(slices.Clip(ps), p)
		}
	}
	return ps, nil
}

// ParsePlacementPref parses docker's STRATEGY=ARG; spread over a node label
// (node.labels.NAME, the prefix in any case) is the only strategy.
func ParsePlacementPref(v string) (api.PlacementPreference, error) {
	strategy, arg, ok := strings.Cut(strings.TrimSpace(v), "=")
	if !ok {
		return api.PlacementPreference{}, fmt.Errorf("%q: want spread=node.labels.NAME", v)
	}
	if strategy != "spread" {
		return api.PlacementPreference{}, fmt.Errorf("%q: unsupported placement preference %q (only spread is supported)", v, strategy)
	}
	return SpreadPreference(arg)
}

// SpreadPreference checks the argument of a spread preference,
// node.labels.NAME, and returns the preference with the prefix in lower
// case (as Swarm, any case is accepted), so --placement-pref-rm finds it.
func SpreadPreference(arg string) (api.PlacementPreference, error) {
	const prefix = "node.labels."
	arg = strings.TrimSpace(arg)
	if len(arg) <= len(prefix) || !strings.EqualFold(arg[:len(prefix)], prefix) {
		return api.PlacementPreference{}, fmt.Errorf("spread=%s: want spread=node.labels.NAME (spreading over node labels is the only preference)", arg)
	}
	if strings.ContainsAny(arg[len(prefix):], " \t\n=\x00") {
		return api.PlacementPreference{}, fmt.Errorf("spread=%q: the label name contains a space, '=' or NUL", arg)
	}
	return api.PlacementPreference{Spread: prefix + arg[len(prefix):]}, nil
}
