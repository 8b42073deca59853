package compose

import (
	"testing"

	"github.com/shoal-org/shoal/api"
)

// TestComposeLegacyRestart: a service-level restart: is the restart policy
// when deploy.restart_policy gives none, as docker stack deploy falls back
// to it (docker/cli convertRestartPolicy): on-failure stops restarting a
// task that exited 0. Before, it was reported as ignored and every task
// was restarted on any exit.
func TestComposeLegacyRestart(t *testing.T) {
	policy := func(s api.ServiceSpec) any {
		return []any{s.RestartPolicy.Condition, s.RestartPolicy.MaxAttempts}
	}
	svc := func(restart, deploy string) string {
		return "services:\n  w:\n    image: x\n    restart: " + restart + "\n" + deploy
	}
	runKeyCases(t, []keyCase{
		{name: "on-failure", yaml: svc("on-failure", ""), got: policy,
			want: []any{api.RestartOnFailure, 0}, ignored: []string{}},
		{name: "on-failure with a count", yaml: svc(`"on-failure:3"`, ""), got: policy,
			want: []any{api.RestartOnFailure, 3}, ignored: []string{}},
		{name: "always", yaml: svc("always", ""), got: policy,
			want: []any{api.RestartAny, 0}, ignored: []string{}},
		{name: "unless-stopped", yaml: svc("unless-stopped", ""), got: policy,
			want: []any{api.RestartAny, 0}, ignored: []string{}},
		{name: "no keeps the default", yaml: svc(`"no"`, ""), got: policy,
			want: []any{api.RestartAny, 0}, ignored: []string{}},
		{name: "deploy.restart_policy wins", yaml: svc("on-failure", "    deploy:\n      restart_policy:\n        condition: none\n"), got: policy,
			want: []any{api.RestartNone, 0}, ignored: []string{}},
		{name: "a job keeps its default with no", yaml: svc(`"no"`, "    deploy:\n      mode: replicated-job\n"), got: policy,
			want: []any{api.RestartOnFailure, 0}, ignored: []string{}},
		{name: "unknown policy", yaml: svc("sometimes", ""),
			err: []string{`services.w.restart: "sometimes": want no, always, on-failure[:N] or unless-stopped`}},
		{name: "bad count", yaml: svc(`"on-failure:x"`, ""),
			err: []string{`services.w.restart: "on-failure:x": the maximum retry count must be a non-negative integer`}},
	})
}
