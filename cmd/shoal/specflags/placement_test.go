package specflags

import (
	"reflect"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
)

// TestPlacementFlags: --replicas-max-per-node and --placement-pref (with
// -add/-rm on update) and the spec fields they set; bad values fail
// naming the flag, and change nothing.
func TestPlacementFlags(t *testing.T) {
	zone := api.PlacementPreference{Spread: "node.labels.zone"}
	rack := api.PlacementPreference{Spread: "node.labels.rack"}
	tests := []struct {
		name   string
		update bool
		from   func(*api.ServiceSpec)
		args   []string
		want   func(*api.ServiceSpec)
		err    string
	}{
		{name: "max per node", args: []string{"--replicas", "4", "--replicas-max-per-node", "1"},
			want: func(s *api.ServiceSpec) { s.MaxReplicasPerNode = 1 }},
		{name: "max per node on a global service", args: []string{"--mode", "global", "--replicas-max-per-node", "1"},
			err: "--replicas-max-per-node applies to replicated services only"},
		{name: "update max per node to no limit", update: true, from: func(s *api.ServiceSpec) { s.MaxReplicasPerNode = 2 },
			args: []string{"--replicas-max-per-node", "0"}, want: func(s *api.ServiceSpec) { s.MaxReplicasPerNode = 0 }},
		{name: "update leaves max per node alone", update: true, from: func(s *api.ServiceSpec) { s.MaxReplicasPerNode = 2 },
			args: []string{"--replicas", "3"}, want: func(s *api.ServiceSpec) { s.MaxReplicasPerNode = 2 }},
		{name: "negative max per node", args: []string{"--replicas-max-per-node", "-1"}, err: "replicas-max-per-node"},
		{name: "prefs in order", args: []string{"--placement-pref", "spread=node.labels.zone", "--placement-pref", "spread=node.labels.rack", "--placement-pref", "spread=node.labels.zone"},
			want: func(s *api.ServiceSpec) { s.PlacementPreferences = []api.PlacementPreference{zone, rack} }},
		{name: "pref prefix in any case", args: []string{"--placement-pref", "spread=Node.Labels.zone"},
			want: func(s *api.ServiceSpec) { s.PlacementPreferences = []api.PlacementPreference{zone} }},
		{name: "pref other strategy", args: []string{"--placement-pref", "pack=node.labels.zone"},
			err: `--placement-pref: "pack=node.labels.zone": unsupported placement preference "pack" (only spread is supported)`},
		{name: "pref without strategy", args: []string{"--placement-pref", "node.labels.zone"},
			err: `--placement-pref: "node.labels.zone": want spread=node.labels.NAME`},
		{name: "pref over hostname", args: []string{"--placement-pref", "spread=node.hostname"},
			err: "--placement-pref: spread=node.hostname: want spread=node.labels.NAME"},
		{name: "pref empty label", args: []string{"--placement-pref", "spread=node.labels."}, err: "want spread=node.labels.NAME"},
		{name: "update pref add and rm", update: true, from: func(s *api.ServiceSpec) { s.PlacementPreferences = []api.PlacementPreference{zone} },
			args: []string{"--placement-pref-add", "spread=node.labels.rack", "--placement-pref-rm", "spread=node.labels.zone"},
			want: func(s *api.ServiceSpec) { s.PlacementPreferences = []api.PlacementPreference{rack} }},
		{name: "update rm last pref", update: true, from: func(s *api.ServiceSpec) { s.PlacementPreferences = []api.PlacementPreference{zone} },
			args: []string{"--placement-pref-rm", "spread=node.labels.zone"},
			want: func(s *api.ServiceSpec) { s.PlacementPreferences = nil }},
		{name: "update rm missing pref", update: true, from: func(s *api.ServiceSpec) { s.PlacementPreferences = []api.PlacementPreference{zone} },
			args: []string{"--placement-pref-rm", "spread=node.labels.rack"},
			err:  `invalid --placement-pref-rm "spread=node.labels.rack": the service has no such placement preference (it has: spread=node.labels.zone)`},
		{name: "update add bad pref", update: true, args: []string{"--placement-pref-add", "spread=zone"},
			err: "--placement-pref-add: spread=zone: want spread=node.labels.NAME"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			from := DefaultSpec()
			if tt.from != nil {
				tt.from(&from)
			}
			got, err := applyArgs(t, tt.update, from, tt.args...)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want it to contain %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := from
			want.Replicas = got.Replicas
			tt.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}
