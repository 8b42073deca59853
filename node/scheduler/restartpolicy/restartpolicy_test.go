package restartpolicy

import (
	"slices"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

func TestDecide(t *testing.T) {
	// ended is a task of the slot created at c that ended (state) at e.
	ended := func(state string, code, c, e int) *api.Task {
		return &api.Task{State: state, ExitCode: code, CreatedAt: at(c), UpdatedAt: at(e)}
	}
	any := api.RestartPolicy{Condition: api.RestartAny, Delay: 5 * time.Second}
	for _, tc := range []struct {
		name    string
		rp      api.RestartPolicy
		history []*api.Task // the last is the ended task
		seen    int         // first sight of the end; -1: none
		now     int
		want    Action
		at      int
	}{
		{"any, clean exit, before the delay", any, []*api.Task{ended(api.TaskComplete, 0, 0, 10)}, -1, 12, Wait, 15},
		{"any, after the delay", any, []*api.Task{ended(api.TaskFailed, 1, 0, 10)}, -1, 15, Now, 0},
		// `--restart-delay 0`: replaced at the end itself.
		{"no delay", api.RestartPolicy{Condition: api.RestartAny, Delay: api.ExplicitZero}, []*api.Task{ended(api.TaskFailed, 1, 0, 10)}, -1, 10, Now, 0},
		{"none", api.RestartPolicy{Condition: api.RestartNone}, []*api.Task{ended(api.TaskFailed, 1, 0, 10)}, -1, 99, No, 0},
		{"on-failure, clean exit", api.RestartPolicy{Condition: api.RestartOnFailure}, []*api.Task{ended(api.TaskComplete, 0, 0, 10)}, -1, 99, No, 0},
		{"on-failure, exit 2", api.RestartPolicy{Condition: api.RestartOnFailure}, []*api.Task{ended(api.TaskComplete, 2, 0, 10)}, -1, 10, Now, 0},
		{"on-failure, rejected", api.RestartPolicy{Condition: api.RestartOnFailure}, []*api.Task{ended(api.TaskRejected, 0, 0, 10)}, -1, 10, Now, 0},
		{"max attempts left", api.RestartPolicy{Condition: api.RestartAny, MaxAttempts: 2},
			[]*api.Task{ended(api.TaskFailed, 1, 0, 1), ended(api.TaskFailed, 1, 2, 3)}, -1, 9, Now, 0},
		{"max attempts reached", api.RestartPolicy{Condition: api.RestartAny, MaxAttempts: 2},
			[]*api.Task{ended(api.TaskFailed, 1, 0, 1), ended(api.TaskFailed, 1, 2, 3), ended(api.TaskFailed, 1, 4, 5)}, -1, 9, No, 0},
		{"shut down tasks are no attempts", api.RestartPolicy{Condition: api.RestartAny, MaxAttempts: 1},
			[]*api.Task{ended(api.TaskShutdown, 0, 0, 1), ended(api.TaskFailed, 1, 2, 3)}, -1, 9, Now, 0},
		{"attempts outside the window", api.RestartPolicy{Condition: api.RestartAny, MaxAttempts: 1, Window: 10 * time.Second},
			[]*api.Task{ended(api.TaskFailed, 1, 0, 1), ended(api.TaskFailed, 1, 20, 25)}, -1, 26, Now, 0},
		{"attempts inside the window", api.RestartPolicy{Condition: api.RestartAny, MaxAttempts: 1, Window: 30 * time.Second},
			[]*api.Task{ended(api.TaskFailed, 1, 0, 1), ended(api.TaskFailed, 1, 20, 25)}, -1, 26, No, 0},
		// The node's clock ahead: its date of the end is later than the
		// leader's sight of it, which counts.
		{"sight before the node's date", any, []*api.Task{ended(api.TaskFailed, 1, 0, 60)}, 10, 15, Now, 0},
		{"sight after the node's date", any, []*api.Task{ended(api.TaskFailed, 1, 0, 10)}, 30, 12, Wait, 15},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var seen time.Time
			if tc.seen >= 0 {
				seen = at(tc.seen)
			}
			last := tc.history[len(tc.history)-1]
			got, when := Decide(tc.rp, last, slices.Values(tc.history), seen, at(tc.now))
			want := time.Time{}
			if tc.want == Wait {
				want = at(tc.at)
			}
			if got != tc.want || !when.Equal(want) {
				t.Fatalf("Decide = %v at %v, want %v at %v", got, when, tc.want, want)
			}
		})
	}
}
