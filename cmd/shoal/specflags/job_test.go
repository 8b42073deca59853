package specflags

import (
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
)

// TestJobFlags: --mode replicated-job|global-job, --replicas as the
// completions, --max-concurrent (replicated-job only), and the update and
// rollback flags refused with a job, as docker's CLI does.
func TestJobFlags(t *testing.T) {
	tests := []struct {
		name   string
		update bool
		from   api.ServiceSpec
		args   []string
		want   func(api.ServiceSpec) bool
		err    string
	}{
		{name: "replicated-job", args: []string{"--mode", "replicated-job", "--replicas", "3", "--max-concurrent", "2"},
			want: func(s api.ServiceSpec) bool {
				return s.Mode == api.ModeReplicatedJob && s.Replicas == 3 && s.MaxConcurrent == 2 &&
					s.RestartPolicy.Condition == api.RestartOnFailure
			}},
		{name: "job with a restart condition", args: []string{"--mode", "global-job", "--restart-condition", "none"},
			want: func(s api.ServiceSpec) bool { return s.RestartPolicy.Condition == api.RestartNone }},
		{name: "service keeps any", args: []string{"--replicas", "2"},
			want: func(s api.ServiceSpec) bool { return s.RestartPolicy.Condition == api.RestartAny }},
		{name: "max concurrent left to the default", args: []string{"--mode", "replicated-job", "--replicas", "3"},
			want: func(s api.ServiceSpec) bool { return s.Replicas == 3 && s.MaxConcurrent == 0 }},
		{name: "global-job", args: []string{"--mode", "global-job"},
			want: func(s api.ServiceSpec) bool { return s.Mode == api.ModeGlobalJob && s.Replicas == 0 }},
		{name: "global-job with replicas", args: []string{"--mode", "global-job", "--replicas", "2"},
			err: "--replicas cannot be used with a global-job service"},
		{name: "max concurrent on a service", args: []string{"--replicas", "2", "--max-concurrent", "1"},
			err: "--max-concurrent can only be used with replicated-job mode"},
		{name: "max concurrent on a global job", args: []string{"--mode", "global-job", "--max-concurrent", "1"},
			err: "--max-concurrent can only be used with replicated-job mode"},
		{name: "update config on a job", args: []string{"--mode", "replicated-job", "--update-parallelism", "2"},
			err: "--update-parallelism cannot be used with a job"},
		{name: "rollback config on a job", args: []string{"--mode", "global-job", "--rollback-order", "start-first"},
			err: "--rollback-order cannot be used with a job"},
		{name: "bad mode", args: []string{"--mode", "job"}, err: `invalid --mode "job": want replicated, global, replicated-job or global-job`},
		{name: "update a job's max concurrent", update: true, from: api.ServiceSpec{Mode: api.ModeReplicatedJob, Replicas: 4},
			args: []string{"--max-concurrent", "3"},
			want: func(s api.ServiceSpec) bool {
				return s.Replicas == 4 && s.MaxConcurrent == 3 && s.RestartPolicy.Condition == api.RestartAny // as stored
			}},
		{name: "update a job's completions", update: true, from: api.ServiceSpec{Mode: api.ModeReplicatedJob, Replicas: 4, MaxConcurrent: 2},
			args: []string{"--replicas", "6"},
			want: func(s api.ServiceSpec) bool { return s.Replicas == 6 && s.MaxConcurrent == 2 }},
		{name: "update max concurrent of a service", update: true, from: api.ServiceSpec{Mode: api.ModeReplicated, Replicas: 4},
			args: []string{"--max-concurrent", "3"}, err: "--max-concurrent can only be used with replicated-job mode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			from := DefaultSpec()
			if tt.from.Mode != "" {
				from.Mode, from.Replicas, from.MaxConcurrent = tt.from.Mode, tt.from.Replicas, tt.from.MaxConcurrent
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
			if !tt.want(got) {
				t.Fatalf("spec %+v", got)
			}
		})
	}
}
