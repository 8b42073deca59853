package taskplan

import (
	"slices"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

func TestDrainStops(t *testing.T) {
	withIP := func(t *api.Task) { t.IP = "10.42.1.2" }
	serving := task("serving", api.TaskShutdown, api.TaskRunning, withIP)
	healthy := task("healthy", api.TaskShutdown, api.TaskRunning, withIP, withHealth(api.HealthHealthy))
	notHealthy := task("nothealthy", api.TaskShutdown, api.TaskRunning, withIP, withHealth(api.HealthStarting))
	noIP := task("noip", api.TaskShutdown, api.TaskRunning)
	unhealthy := task("unhealthy", api.TaskRunning, api.TaskRunning, withIP, withHealth(api.HealthUnhealthy))
	// The load balancers' rule comes in; here it is a plain list, so the
	// table is about the drain, not the rule (node's servesTraffic). The
	// unhealthy task is on it to show that a task still meant to run is
	// stopped at once whatever the rule says.
	backends := map[*api.Task]bool{serving: true, healthy: true, unhealthy: true}
	serves := func(t *api.Task) bool { return backends[t] }
	stop := func(tk *api.Task) Action {
		return Action{Kind: Stop, Task: tk, Container: &api.Container{ID: "c-" + tk.ID, State: api.ContainerRunning}}
	}
	other := []Action{
		{Kind: Start, Task: task("new", api.TaskRunning, api.TaskAssigned)},
		{Kind: Report, Task: task("r", api.TaskRunning, api.TaskStarting), Status: api.TaskStatus{TaskID: "r", State: api.TaskRunning}},
	}
	at := func(d time.Duration) time.Time { return reconcileNow.Add(d) }
	tests := []struct {
		name     string
		acts     []Action
		seen     map[string]DrainMark
		now      time.Time
		lbs      map[string]uint64
		want     []string
		wantSeen []string
		wake     time.Time
	}{
		{name: "first sight holds the stop", acts: append(slices.Clone(other), stop(serving)), now: at(0),
			want: []string{"report r running", "start new"}, wantSeen: []string{"serving"}, wake: at(DrainPeriod)},
		{name: "healthy one too", acts: []Action{stop(healthy)}, now: at(0),
			wantSeen: []string{"healthy"}, wake: at(DrainPeriod)},
		{name: "still within the period", acts: []Action{stop(serving)}, seen: map[string]DrainMark{"serving": {at(0), 10}},
			now: at(DrainPeriod - time.Millisecond), wantSeen: []string{"serving"}, wake: at(DrainPeriod)},
		{name: "period over: stop", acts: []Action{stop(serving)}, seen: map[string]DrainMark{"serving": {at(0), 10}},
			now: at(DrainPeriod), want: []string{"stop serving c-serving"}, wantSeen: []string{"serving"}},
		{name: "first sight notes the index", acts: []Action{stop(serving)}, now: at(0), lbs: map[string]uint64{"a": 9, "b": 12},
			wantSeen: []string{"serving"}, wake: at(DrainPeriod)},
		{name: "every load balancer past: stop now", acts: []Action{stop(serving)}, seen: map[string]DrainMark{"serving": {at(0), 10}},
			now: at(time.Millisecond), lbs: map[string]uint64{"a": 10, "b": 12},
			want: []string{"stop serving c-serving"}, wantSeen: []string{"serving"}},
		{name: "one load balancer behind: hold", acts: []Action{stop(serving)}, seen: map[string]DrainMark{"serving": {at(0), 10}},
			now: at(time.Millisecond), lbs: map[string]uint64{"a": 9, "b": 12},
			wantSeen: []string{"serving"}, wake: at(DrainPeriod)},
		{name: "behind but the period is over", acts: []Action{stop(serving)}, seen: map[string]DrainMark{"serving": {at(0), 10}},
			now: at(DrainPeriod), lbs: map[string]uint64{"a": 0},
			want: []string{"stop serving c-serving"}, wantSeen: []string{"serving"}},
		{name: "earliest wake of two", acts: []Action{stop(serving), stop(healthy)},
			seen: map[string]DrainMark{"healthy": {at(-time.Second), 10}}, now: at(0),
			wantSeen: []string{"healthy", "serving"}, wake: at(DrainPeriod - time.Second)},
		{name: "never served: stop at once", acts: []Action{stop(notHealthy), stop(noIP)}, now: at(0),
			want: []string{"stop nothealthy c-nothealthy", "stop noip c-noip"}},
		{name: "unhealthy task meant to run: stop at once", acts: []Action{stop(unhealthy)}, now: at(0),
			want: []string{"stop unhealthy c-unhealthy"}},
		{name: "stopped tasks are forgotten", acts: other, seen: map[string]DrainMark{"gone": {at(0), 10}}, now: at(time.Second),
			want: []string{"report r running", "start new"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.acts)
			got, seen, wake := DrainStops(tt.acts, tt.seen, tt.now, 10, tt.lbs, DrainPeriod, serves)
			if d := describeAll(got); !slices.Equal(d, sortedCopy(tt.want)) {
				t.Fatalf("actions %q, want %q", d, tt.want)
			}
			var keys []string
			for k := range seen {
				keys = append(keys, k)
			}
			if !slices.Equal(sortedCopy(keys), sortedCopy(tt.wantSeen)) {
				t.Fatalf("seen %v, want %v", keys, tt.wantSeen)
			}
			for k, v := range tt.seen {
				if s, ok := seen[k]; ok && s != v {
					t.Fatalf("first sight of %s moved from %v to %v", k, v, s)
				}
			}
			if !wake.Equal(tt.wake) {
				t.Fatalf("wake %v, want %v", wake, tt.wake)
			}
			if describe(in[0]) != describe(tt.acts[0]) {
				t.Fatal("the input actions were changed")
			}
		})
	}
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	if c == nil {
		c = []string{}
	}
	return c
}

func TestDrainDemand(t *testing.T) {
	now := time.Unix(1000, 0)
	cases := []struct {
		seen map[string]DrainMark
		want uint64
	}{
		{nil, 0},
		{map[string]DrainMark{"a": {At: now, Index: 7}}, 7},
		{map[string]DrainMark{"a": {At: now, Index: 7}, "b": {At: now, Index: 12}, "c": {At: now, Index: 3}}, 12},
	}
	for _, c := range cases {
		if got := DrainDemand(c.seen); got != c.want {
			t.Errorf("DrainDemand(%v) = %d, want %d", c.seen, got, c.want)
		}
	}
}
