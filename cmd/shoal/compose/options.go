package compose

import (
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/shoal-org/shoal/api"
)

// containerOptions maps a service's container options onto spec, as
// `docker stack deploy` does (the flags of the same names in specflags):
// read_only. bad reports a problem with the key (".read_only" form).
func containerOptions(spec *api.ServiceSpec, cs types.ServiceConfig, bad func(key, format string, args ...any)) {
	spec.ReadOnly = cs.ReadOnly
}
