package runtime

import (
	"fmt"
	"path/filepath"

	"github.com/shoal-org/shoal/runtime/cgstats"
)

// Stats reads the cgroup usage of container id. It does not take the
// runtime's lock and may be called concurrently with anything.
func (r *Runtime) Stats(id string) (cgstats.Stats, error) {
	if id == "" || id != filepath.Base(id) {
		return cgstats.Stats{}, fmt.Errorf("stats of container %q: bad id", id)
	}
	st, err := cgstats.Read(cgstats.Root, filepath.Join(r.cfg.CgroupParent, id))
	if err != nil {
		return cgstats.Stats{}, fmt.Errorf("stats of container %s: %w", id, err)
	}
	return st, nil
}
