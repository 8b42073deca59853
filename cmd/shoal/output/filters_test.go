package output

import (
	"errors"
	"reflect"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/cmd/shoal/specflags"
)

func TestParseTaskFilters(t *testing.T) {
	tests := []struct {
		in      []string
		want    map[string][]string
		wantErr string
	}{
		{nil, map[string][]string{}, ""},
		{[]string{"node=h1", "node=h2", "desired-state=running"}, map[string][]string{"node": {"h1", "h2"}, "desired-state": {"running"}}, ""},
		{[]string{"name=web.1", "id=ab"}, map[string][]string{"name": {"web.1"}, "id": {"ab"}}, ""},
		{[]string{"node"}, nil, `invalid --filter "node": want KEY=VALUE`},
		{[]string{"node="}, nil, `invalid --filter "node=": want KEY=VALUE`},
		{[]string{"color=red"}, nil, `invalid --filter key "color": want one of desired-state, node, name, id`},
		{[]string{"desired-state=sleeping"}, nil, `invalid desired-state filter "sleeping": want running, shutdown, complete or accepted`},
	}
	for _, tt := range tests {
		got, err := ParseTaskFilters(tt.in)
		if tt.wantErr != "" {
			var ue *specflags.UsageError
			if err == nil || err.Error() != tt.wantErr || !errors.As(err, &ue) {
				t.Errorf("ParseTaskFilters(%q) = %v, want usage error %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseTaskFilters(%q) = %v, %v, want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestTaskViews(t *testing.T) {
	tasks := []api.Task{
		{ID: "t3", Name: "web.2", Service: "web", Slot: 2, NodeID: "nodeB", Node: "h2", DesiredState: "running"},
		{ID: "t1", Name: "web.1", Service: "web", Slot: 1, NodeID: "nodeA", Node: "h1", DesiredState: "running", IP: "10.0.0.5"},
		{ID: "t2", Name: "web.1", Service: "web", Slot: 1, NodeID: "nodeA", Node: "h1", DesiredState: "shutdown", Error: "boom"},
		{ID: "t4", Name: "api.1", Service: "api", Slot: 1, NodeID: "nodeB", Node: "h2", DesiredState: "running"},
	}
	tests := []struct {
		name    string
		filters map[string][]string
		want    []string
	}{
		{"all, in table order", nil, []string{"t4", "t1", "t2", "t3"}},
		{"node by hostname", map[string][]string{"node": {"h2"}}, []string{"t4", "t3"}},
		{"node by ID prefix", map[string][]string{"node": {"nodeA"}}, []string{"t1", "t2"}},
		{"desired running", map[string][]string{"desired-state": {"running"}}, []string{"t4", "t1", "t3"}},
		{"accepted is running", map[string][]string{"desired-state": {"accepted"}}, []string{"t4", "t1", "t3"}},
		{"shutdown", map[string][]string{"desired-state": {"shutdown"}}, []string{"t2"}},
		{"name is a slot, not a prefix", map[string][]string{"name": {"web"}}, []string{"t1", "t2", "t3"}},
		{"name of one slot", map[string][]string{"name": {"web.1"}}, []string{"t1", "t2"}},
		{"values OR, keys AND", map[string][]string{"id": {"t1", "t3"}, "node": {"h1"}}, []string{"t1"}},
		{"no match", map[string][]string{"id": {"zz"}}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := []string{}
			for _, v := range TaskViews(tasks, tt.filters) {
				got = append(got, v.ID)
				if v.Error != v.Task.Error || v.IP != v.Task.IP {
					t.Errorf("view %s lost error/ip: %+v", v.ID, v)
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}
