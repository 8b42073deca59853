package progress

import (
	"testing"
	"time"
)

// TestStability: a create or scale is done once every running task of the
// current spec has been seen running for the monitor period; one that dies
// meanwhile restarts the count for its replacement; tasks running at the
// first poll are stable at once; a monitor of 0 waits for nothing.
func TestStability(t *testing.T) {
	t0 := time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)
	const mon = 5 * time.Second
	type poll struct {
		at      time.Duration
		running []string
		done    bool // Assess's verdict
		want    bool
	}
	tests := []struct {
		name    string
		monitor time.Duration
		polls   []poll
	}{
		{"create: stable after the monitor period", mon, []poll{
			{0, nil, false, false},
			{time.Second, []string{"a"}, true, false},
			{5 * time.Second, []string{"a"}, true, false},
			{6 * time.Second, []string{"a"}, true, true},
		}},
		{"create: a task that dies restarts the period", mon, []poll{
			{0, nil, false, false},
			{time.Second, []string{"a"}, true, false},
			{2 * time.Second, nil, false, false},
			{3 * time.Second, []string{"b"}, true, false},
			{7 * time.Second, []string{"b"}, true, false},
			{8 * time.Second, []string{"b"}, true, true},
		}},
		{"scale down: running at the first poll", mon, []poll{
			{0, []string{"a", "b"}, true, true},
		}},
		{"scale up: the new task's period", mon, []poll{
			{0, []string{"a"}, false, false},
			{time.Second, []string{"a", "b"}, true, false},
			{6 * time.Second, []string{"a", "b"}, true, true},
		}},
		{"monitor 0", 0, []poll{
			{0, nil, false, false},
			{time.Second, []string{"a"}, true, true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s Stability
			for i, p := range tt.polls {
				conv := Convergence{Name: "web", Done: p.done, RunningIDs: p.running, Monitor: tt.monitor}
				got, note := s.Settled(conv, t0.Add(p.at))
				if got != p.want {
					t.Fatalf("poll %d (%s): settled %v, want %v", i, p.at, got, p.want)
				}
				if wantNote := p.done && !p.want; (note != "") != wantNote {
					t.Errorf("poll %d: note %q", i, note)
				}
			}
		})
	}
}
