package placement

import (
	"fmt"
	"strings"

	"github.com/shoal-org/shoal/api"
)

// Placement preferences, as Swarm's: spread=node.labels.NAME. The tasks of
// a service are spread evenly over the distinct values of the label first
// (the nodes without it form one more group), then over the nodes within
// a group; several preferences nest, the first outermost.

// Preference is one parsed spread preference: the node label whose values
// group the nodes.
type Preference struct {
	// Label is the label name (zone in node.labels.zone).
	Label string
}

// String renders the preference as the API stores it.
func (p Preference) String() string { return KeyNodeLabel + p.Label }

// MaxPreferences bounds a spec's preferences: each is one level of the
// spreading tree, and no real topology nests more deeply.
const MaxPreferences = 8

// ParsePreference checks one preference of a spec. Only spread over a node
// label exists (Swarm also knows engine.labels, which Shoal nodes have
// not); the prefix is case-insensitive, as Swarm's.
func ParsePreference(p api.PlacementPreference) (Preference, error) {
	d := strings.TrimSpace(p.Spread)
	if d == "" {
		return Preference{}, fmt.Errorf("%w: empty spread (want spread=node.labels.NAME)", ErrInvalidPreference)
	}
	if len(d) <= len(KeyNodeLabel) || !strings.EqualFold(d[:len(KeyNodeLabel)], KeyNodeLabel) {
		return Preference{}, fmt.Errorf("%w spread=%s: want node.labels.NAME (spreading over node labels is the only preference)", ErrInvalidPreference, d)
	}
	label := d[len(KeyNodeLabel):]
	if strings.ContainsAny(label, " \t\n=\x00") {
		return Preference{}, fmt.Errorf("%w spread=%q: label name %q contains a space, '=' or NUL", ErrInvalidPreference, d, label)
	}
	return Preference{Label: label}, nil
}

// ParsePreferences parses every preference and returns the first error.
func ParsePreferences(ps []api.PlacementPreference) ([]Preference, error) {
	if len(ps) == 0 {
		return nil, nil
	}
	if len(ps) > MaxPreferences {
		return nil, fmt.Errorf("%w: %d preferences, at most %d", ErrInvalidPreference, len(ps), MaxPreferences)
	}
	out := make([]Preference, 0, len(ps))
	for _, p := range ps {
		q, err := ParsePreference(p)
		if err != nil {
			return nil, err
		}
		out = append(out, q)
	}
	return out, nil
}

// value is the node's group at one preference: its label value, or
// missing for the nodes without the label.
func (p Preference) value(n api.Node) (string, bool) {
	v, ok := n.Labels[p.Label]
	return v, ok
}
