package runtime

// The mountpoints layer: one more read-only lowerdir above the image's
// layers that already holds the mount destinations runc would otherwise
// create in the container's upper dir. What it holds and why is package
// runtime/mountlayer's (its doc and README); the layers on disk
// under Root/mountpoints are its Store's. Here is the glue that needs the
// Runtime: stacking a record's layer at a remount (rootfsLayers) and
// removing the layers no record names (pruneMountLayers).

import (
	"os"
	"path/filepath"

	"github.com/shoal-org/shoal/runtime/record"
)

// mountLayersDir is the directory of the mountpoints layers, under Root.
const mountLayersDir = "mountpoints"

// rootfsLayers is the lowerdir stack of rec's rootfs, base first: the
// image's layers, then the mountpoints layer it was created with. A record
// without one (made before the layer existed) gets none, and so does one
// whose layer is gone: runc then creates the mountpoints in the upper dir,
// as it did before. That is safe over an upper dir made with the layer:
// the layer only adds what the image lacks, and directories with the
// image's attributes, so what the upper dir copied up from it is what it
// would have copied up from the image.
func (r *Runtime) rootfsLayers(rec record.Record) []string {
	if rec.MountLayer == "" {
		return rec.Layers
	}
	if st, err := os.Stat(rec.MountLayer); err != nil || !st.IsDir() {
		r.log.Warn("mountpoints layer missing: mounting the rootfs without it", "id", ShortID(rec.ID), "layer", rec.MountLayer)
		return rec.Layers
	}
	return append(append(make([]string, 0, len(rec.Layers)+1), rec.Layers...), rec.MountLayer)
}

// pruneMountLayers removes the layers no container record names and the
// temp dirs of an interrupted creation. adopt calls it before the runtime
// is ready, so no create runs meanwhile.
func (r *Runtime) pruneMountLayers() {
	used := map[string]bool{}
	r.mu.Lock()
	for _, c := range r.containers {
		if c.rec.MountLayer != "" {
			used[filepath.Base(c.rec.MountLayer)] = true
		}
	}
	r.mu.Unlock()
	r.mountLayers.Prune(used, func(dir string, err error) {
		r.log.Warn("remove unused mountpoints layer", "dir", dir, "err", err)
	})
}
