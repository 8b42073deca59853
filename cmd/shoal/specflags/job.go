package specflags

import (
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/shoal-org/shoal/api"
)

// jobFlags are the flags of job services (--mode replicated-job).
func jobFlags() []cli.Flag {
	return []cli.Flag{
		&cli.Uint64Flag{Name: "max-concurrent", Usage: "tasks of a replicated-job that run at once (default --replicas)"},
	}
}

// applyJob sets --max-concurrent and refuses what docker refuses of a job:
// --max-concurrent on another mode, and the --update-* and --rollback-*
// flags (a job is run again by an update, never rolled out or back). A
// job created without --restart-condition gets docker's on-failure.
func applyJob(c *cli.Context, spec *api.ServiceSpec, update bool) error {
	if c.IsSet("max-concurrent") {
		if spec.Mode != api.ModeReplicatedJob {
			return UsageErrorf("--max-concurrent can only be used with replicated-job mode")
		}
		spec.MaxConcurrent = c.Uint64("max-concurrent")
	}
	if !api.IsJob(spec.Mode) {
		return nil
	}
	if !update && !c.IsSet("restart-condition") {
		spec.RestartPolicy.Condition = api.RestartOnFailure
	}
	for _, f := range c.Command.Flags {
		for _, n := range f.Names() {
			if (strings.HasPrefix(n, "update-") || strings.HasPrefix(n, "rollback-")) && c.IsSet(n) {
				return UsageErrorf("--%s cannot be used with a job: a job is run again by an update, not rolled out or back", n)
			}
		}
	}
	return nil
}
