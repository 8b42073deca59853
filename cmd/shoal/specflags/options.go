package specflags

// The container options of `service create` and `service update`, as
// `docker service create` has them: --read-only, ... Compose maps the keys
// of the same names onto the same spec fields (cmd/shoal/compose).

import (
	"github.com/urfave/cli/v2"

	"github.com/shoal-org/shoal/api"
)

// optionFlags are the container option flags; update selects the
// -add/-rm variants of the lists.
func optionFlags(update bool) []cli.Flag {
	flags := []cli.Flag{
		&cli.BoolFlag{Name: "read-only", Usage: "mount the container's root file system read-only (its /etc/hosts, secrets, configs and mounts stay as they are)"},
	}
	return flags
}

// applyOptions sets the container options the user gave.
func applyOptions(c *cli.Context, spec *api.ServiceSpec, update bool) error {
	if c.IsSet("read-only") {
		spec.ReadOnly = c.Bool("read-only")
	}
	return nil
}
