package specflags

import (
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

// TestMonitorFlags: --update-monitor 0 asks for no monitor and becomes
// api.ExplicitZero, since 0 on the wire is the default (5s); a flag left out
// keeps what the spec had, and an update can turn the monitor back on.
func TestMonitorFlags(t *testing.T) {
	tests := []struct {
		name                string
		update              bool
		from                time.Duration
		args                []string
		wantUpdate, wantRbk time.Duration
		err                 string
	}{
		{name: "left out", args: []string{"--replicas", "2"}, wantUpdate: 5 * time.Second, wantRbk: 5 * time.Second},
		{name: "zero", args: []string{"--update-monitor", "0"}, wantUpdate: api.ExplicitZero, wantRbk: 5 * time.Second},
		{name: "zero seconds, rollback", args: []string{"--rollback-monitor", "0s"}, wantUpdate: 5 * time.Second, wantRbk: api.ExplicitZero},
		{name: "a period", args: []string{"--update-monitor", "3s"}, wantUpdate: 3 * time.Second, wantRbk: 5 * time.Second},
		{name: "negative", args: []string{"--update-monitor", "-1s"}, err: "--update-monitor must not be negative"},
		{name: "update keeps none", update: true, from: api.ExplicitZero, args: []string{"--replicas", "2"},
			wantUpdate: api.ExplicitZero, wantRbk: 5 * time.Second},
		{name: "update turns it on", update: true, from: api.ExplicitZero, args: []string{"--update-monitor", "2s"},
			wantUpdate: 2 * time.Second, wantRbk: 5 * time.Second},
		{name: "update turns it off", update: true, from: 5 * time.Second, args: []string{"--update-monitor", "0"},
			wantUpdate: api.ExplicitZero, wantRbk: 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			from := DefaultSpec()
			if tt.from != 0 {
				from.UpdateConfig.Monitor = tt.from
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
			if got.UpdateConfig.Monitor != tt.wantUpdate || got.RollbackConfig.Monitor != tt.wantRbk {
				t.Fatalf("update monitor %v, rollback monitor %v; want %v, %v",
					got.UpdateConfig.Monitor, got.RollbackConfig.Monitor, tt.wantUpdate, tt.wantRbk)
			}
		})
	}
}

// TestRestartDelayFlag: --restart-delay 0 is api.ExplicitZero (replace at
// once), as --update-monitor 0 is; left out, the default stays.
func TestRestartDelayFlag(t *testing.T) {
	for _, tt := range []struct {
		name   string
		update bool
		from   time.Duration
		args   []string
		want   time.Duration
	}{
		{name: "left out", args: []string{"--replicas", "2"}, want: 5 * time.Second},
		{name: "zero", args: []string{"--restart-delay", "0"}, want: api.ExplicitZero},
		{name: "a period", args: []string{"--restart-delay", "2s"}, want: 2 * time.Second},
		{name: "update keeps none", update: true, from: api.ExplicitZero, args: []string{"--replicas", "2"}, want: api.ExplicitZero},
		{name: "update turns it off", update: true, from: 5 * time.Second, args: []string{"--restart-delay", "0s"}, want: api.ExplicitZero},
	} {
		t.Run(tt.name, func(t *testing.T) {
			from := DefaultSpec()
			if tt.from != 0 {
				from.RestartPolicy.Delay = tt.from
			}
			got, err := applyArgs(t, tt.update, from, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			if got.RestartPolicy.Delay != tt.want {
				t.Fatalf("restart delay %v, want %v", got.RestartPolicy.Delay, tt.want)
			}
		})
	}
}

// TestStopGraceFlag: --stop-grace-period 0 is api.ExplicitZero (SIGKILL at
// once); left out, the CLI's default 10s stays.
func TestStopGraceFlag(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want time.Duration
	}{
		{[]string{"--replicas", "2"}, 10 * time.Second},
		{[]string{"--stop-grace-period", "0"}, api.ExplicitZero},
		{[]string{"--stop-grace-period", "3s"}, 3 * time.Second},
	} {
		got, err := applyArgs(t, false, DefaultSpec(), tt.args...)
		if err != nil {
			t.Fatal(err)
		}
		if got.StopGracePeriod != tt.want {
			t.Errorf("%v: stop grace %v, want %v", tt.args, got.StopGracePeriod, tt.want)
		}
	}
}
