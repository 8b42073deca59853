package placement

import (
	"errors"
	"testing"

	"github.com/shoal-org/shoal/api"
)

func TestParsePreference(t *testing.T) {
	for _, tc := range []struct {
		in    string
		label string // "" = error
	}{
		{"node.labels.zone", "zone"},
		{" node.labels.zone ", "zone"},
		{"Node.Labels.zone", "zone"}, // the prefix is case-insensitive, as Swarm's
		{"node.labels.rack.row", "rack.row"},
		{"", ""},
		{"node.labels.", ""},
		{"node.label.zone", ""},
		{"engine.labels.zone", ""},
		{"node.hostname", ""},
		{"zone", ""},
		{"node.labels.zo ne", ""},
		{"node.labels.zone=a", ""},
	} {
		got, err := ParsePreference(api.PlacementPreference{Spread: tc.in})
		if tc.label == "" {
			if !errors.Is(err, ErrInvalidPreference) {
				t.Errorf("%q: err %v, want ErrInvalidPreference", tc.in, err)
			}
			continue
		}
		if err != nil || got.Label != tc.label {
			t.Errorf("%q: got %+v, %v; want label %q", tc.in, got, err, tc.label)
		}
	}
	if ps, err := ParsePreferences(nil); ps != nil || err != nil {
		t.Fatalf("nil: %v %v", ps, err)
	}
	many := make([]api.PlacementPreference, MaxPreferences+1)
	for i := range many {
		many[i].Spread = "node.labels.x"
	}
	if _, err := ParsePreferences(many); !errors.Is(err, ErrInvalidPreference) {
		t.Fatalf("%d preferences: %v", len(many), err)
	}
	if _, err := ParsePreferences(many[:MaxPreferences]); err != nil {
		t.Fatalf("%d preferences: %v", MaxPreferences, err)
	}
}
