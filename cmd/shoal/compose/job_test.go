package compose

import (
	"testing"

	"github.com/shoal-org/shoal/api"
)

// TestComposeJobs: deploy.mode replicated-job and global-job map onto the
// job modes, deploy.replicas being a replicated job's completions (all at
// once, as docker stack deploy sets max concurrent to them); before, the
// modes were refused ("want replicated or global").
func TestComposeJobs(t *testing.T) {
	mode := func(s api.ServiceSpec) any {
		return []any{s.Mode, s.Replicas, s.MaxConcurrent, s.RestartPolicy.Condition}
	}
	runKeyCases(t, []keyCase{
		{
			name:    "replicated-job",
			yaml:    "services:\n  migrate:\n    image: x\n    deploy:\n      mode: replicated-job\n      replicas: 3\n",
			got:     mode,
			want:    []any{api.ModeReplicatedJob, uint64(3), uint64(0), api.RestartOnFailure},
			ignored: []string{},
		},
		{
			name:    "replicated-job, one completion by default",
			yaml:    "services:\n  migrate:\n    image: x\n    deploy:\n      mode: replicated-job\n",
			got:     mode,
			want:    []any{api.ModeReplicatedJob, uint64(1), uint64(0), api.RestartOnFailure},
			ignored: []string{},
		},
		{
			name:    "global-job",
			yaml:    "services:\n  sweep:\n    image: x\n    deploy:\n      mode: global-job\n",
			got:     mode,
			want:    []any{api.ModeGlobalJob, uint64(0), uint64(0), api.RestartOnFailure},
			ignored: []string{},
		},
		{
			name:    "global-job with a restart condition",
			yaml:    "services:\n  sweep:\n    image: x\n    deploy:\n      mode: global-job\n      restart_policy:\n        condition: none\n",
			got:     mode,
			want:    []any{api.ModeGlobalJob, uint64(0), uint64(0), api.RestartNone},
			ignored: []string{},
		},
		{
			name: "global-job with replicas",
			yaml: "services:\n  sweep:\n    image: x\n    deploy:\n      mode: global-job\n      replicas: 2\n",
			err:  []string{"services.sweep.deploy.replicas: cannot be used with mode global-job"},
		},
	})
}
