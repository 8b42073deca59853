package updatemonitor

import (
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func TestJudge(t *testing.T) {
	cfg := func(action string, ratio float64) api.UpdateConfig {
		return api.UpdateConfig{FailureAction: action, Monitor: 3 * time.Second, MaxFailureRatio: ratio}
	}
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	running := func(id, slot string) Task {
		return Task{ID: id, Name: "web." + slot, Slot: slot, State: api.TaskRunning, StartedAt: at(0), EndedAt: at(0)}
	}
	ended := func(id, slot, state string, started, end float64) Task {
		m := Task{ID: id, Name: "web." + slot, Slot: slot, State: state, EndedAt: at(end)}
		if started >= 0 {
			m.StartedAt = at(started)
		}
		return m
	}
	tests := []struct {
		name        string
		cfg         api.UpdateConfig
		rollingBack bool
		canRollBack bool
		tasks       []Task
		pending     int
		wantAction  string
		wantState   string
		wantMsg     string // substring
	}{
		{name: "nothing yet", cfg: cfg(api.FailurePause, 0), pending: 6},
		{name: "all running", cfg: cfg(api.FailurePause, 0),
			tasks: []Task{running("a", "1"), running("b", "2")}, pending: 4},
		{name: "failed within monitor pauses", cfg: cfg(api.FailurePause, 0),
			tasks:      []Task{ended("a", "1", api.TaskFailed, 0, 1), running("b", "2")},
			wantAction: api.FailurePause, wantState: api.UpdatePaused, wantMsg: "update paused: task web.1 (a) failed 1s after it started"},
		{name: "exactly at the end of the monitor counts", cfg: cfg(api.FailurePause, 0),
			tasks:      []Task{ended("a", "1", api.TaskFailed, 0, 3)},
			wantAction: api.FailurePause, wantState: api.UpdatePaused},
		{name: "failed after the monitor is not the update's fault", cfg: cfg(api.FailurePause, 0),
			tasks: []Task{ended("a", "1", api.TaskFailed, 0, 3.5)}},
		{name: "never started (rejected) counts", cfg: cfg(api.FailurePause, 0),
			tasks:      []Task{{ID: "a", Name: "web.1", Slot: "1", State: api.TaskRejected, Error: "no such image", EndedAt: at(0)}},
			wantAction: api.FailurePause, wantState: api.UpdatePaused, wantMsg: "task web.1 (a) rejected: no such image"},
		{name: "complete within monitor counts (swarmkit)", cfg: cfg(api.FailurePause, 0),
			tasks:      []Task{ended("a", "1", api.TaskComplete, 0, 0.5)},
			wantAction: api.FailurePause, wantState: api.UpdatePaused},
		{name: "shut down is not a failure", cfg: cfg(api.FailurePause, 0),
			tasks: []Task{ended("a", "1", api.TaskShutdown, 0, 0.5)}},
		{name: "rollback", cfg: cfg(api.FailureRollback, 0), canRollBack: true,
			tasks:      []Task{ended("a", "1", api.TaskFailed, 0, 1)},
			wantAction: api.FailureRollback, wantState: api.UpdateRollbackStarted, wantMsg: "update rolled back: task web.1 (a) failed"},
		{name: "rollback without previous spec pauses", cfg: cfg(api.FailureRollback, 0),
			tasks:      []Task{ended("a", "1", api.TaskFailed, 0, 1)},
			wantAction: api.FailurePause, wantState: api.UpdatePaused, wantMsg: "no previous spec"},
		{name: "a failing rollback pauses", cfg: cfg(api.FailurePause, 0), rollingBack: true, canRollBack: true,
			tasks:      []Task{ended("a", "1", api.TaskFailed, 0, 1)},
			wantAction: api.FailurePause, wantState: api.UpdateRollbackPaused, wantMsg: "rollback paused"},
		{name: "never roll back a rollback", cfg: cfg(api.FailureRollback, 0), rollingBack: true, canRollBack: true,
			tasks:      []Task{ended("a", "1", api.TaskFailed, 0, 1)},
			wantAction: api.FailurePause, wantState: api.UpdateRollbackPaused},
		{name: "continue", cfg: cfg(api.FailureContinue, 0),
			tasks: []Task{ended("a", "1", api.TaskFailed, 0, 1)}},
		// The ratio is over the slots of the whole update (swarmkit's
		// dirty slots): touched ones plus pending ones.
		{name: "under the ratio", cfg: cfg(api.FailurePause, 0.2),
			tasks: []Task{ended("a", "1", api.TaskFailed, 0, 1), running("b", "2")}, pending: 4},
		{name: "at the ratio", cfg: cfg(api.FailurePause, 0.5),
			tasks: []Task{ended("a", "1", api.TaskFailed, 0, 1), running("b", "2")}, pending: 0},
		{name: "over the ratio", cfg: cfg(api.FailurePause, 0.2),
			tasks: []Task{ended("a", "1", api.TaskFailed, 0, 1), ended("b", "2", api.TaskFailed, 0, 2),
				running("c", "3")}, pending: 3,
			wantAction: api.FailurePause, wantState: api.UpdatePaused, wantMsg: "task web.2 (b) failed 2s after it started (2 failures in 6 slots)"},
		{name: "restarts in one slot count each", cfg: cfg(api.FailurePause, 0.5),
			tasks: []Task{ended("a", "1", api.TaskFailed, 0, 1), ended("b", "1", api.TaskFailed, 2, 3),
				running("c", "2")},
			wantAction: api.FailurePause, wantState: api.UpdatePaused, wantMsg: "web.1 (b)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Judge(tt.cfg, tt.rollingBack, tt.canRollBack, tt.tasks, tt.pending)
			if v.Action != tt.wantAction || v.State != tt.wantState || !strings.Contains(v.Message, tt.wantMsg) {
				t.Fatalf("got %+v, want action %q state %q message containing %q", v, tt.wantAction, tt.wantState, tt.wantMsg)
			}
			if (v.Action == "") != (v.Message == "") {
				t.Fatalf("a verdict with an action has a message and only then: %+v", v)
			}
		})
	}
}

func TestDone(t *testing.T) {
	tests := []struct {
		name      string
		lastStart time.Time
		now       time.Time
		done      bool
		wake      time.Time
	}{
		{"no task started", time.Time{}, t0, true, time.Time{}},
		{"just started", t0, t0, false, t0.Add(5 * time.Second)},
		{"within the window", t0, t0.Add(4 * time.Second), false, t0.Add(5 * time.Second)},
		{"window over", t0, t0.Add(5 * time.Second), true, time.Time{}},
		{"long ago", t0, t0.Add(time.Hour), true, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			done, wake := Done(tt.lastStart, 5*time.Second, tt.now)
			if done != tt.done || !wake.Equal(tt.wake) {
				t.Fatalf("Done = %v, %v; want %v, %v", done, wake, tt.done, tt.wake)
			}
		})
	}
}
