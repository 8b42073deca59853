package runtime

// The mountpoints layer: one more read-only lowerdir above the image's
// layers that already holds the mount destinations runc would otherwise
// create in the container's upper dir. What it holds and why is package
// runtime/mountlayer's (its doc and README); here is the glue that needs
// the Runtime: making a layer under Root/mountpoints (mountLayerFor,
// ensureMountLayer), stacking it at a remount (rootfsLayers) and removing
// the layers no record names (pruneMountLayers).

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/shoal-org/shoal/runtime/mountlayer"
)

// mountLayersDir is the directory of the mountpoints layers, under Root.
const mountLayersDir = "mountpoints"

// mountLayerFor returns the mountpoints layer a container of the image
// layers (base first) with the mounts ms needs, creating it on first use;
// "" when the image already has every mountpoint runc would create.
func (r *Runtime) mountLayerFor(layers []string, ms []specs.Mount) (string, error) {
	want := mountlayer.Wanted(ms)
	if len(want) == 0 {
		return "", nil
	}
	entries := mountlayer.Plan(want, mountlayer.NewView(layers).Lookup)
	if len(entries) == 0 {
		return "", nil
	}
	return r.ensureMountLayer(entries)
}

// ensureMountLayer returns the directory of the layer holding entries,
// creating it when missing: built in a temp dir beside it and renamed into
// place, so it is complete whenever it exists. A concurrent creator (this
// agent serialises its own) is fine: the first rename wins, the others
// discard their copy.
func (r *Runtime) ensureMountLayer(entries []mountlayer.Entry) (string, error) {
	parent := filepath.Join(r.cfg.Root, mountLayersDir)
	dir := filepath.Join(parent, mountlayer.Key(entries))
	if st, err := os.Lstat(dir); err == nil && st.IsDir() {
		return dir, nil
	}
	r.mountLayerMu.Lock()
	defer r.mountLayerMu.Unlock()
	if st, err := os.Lstat(dir); err == nil && st.IsDir() {
		return dir, nil
	}
	if err := os.MkdirAll(parent, 0o711); err != nil {
		return "", fmt.Errorf("create %s: %w", parent, err)
	}
	tmp, err := os.MkdirTemp(parent, ".tmp-")
	if err != nil {
		return "", fmt.Errorf("mountpoints layer: %w", err)
	}
	if err := mountlayer.Build(tmp, entries); err != nil {
		_ = os.RemoveAll(tmp)
		return "", fmt.Errorf("mountpoints layer: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		_ = os.RemoveAll(tmp)
		if st, serr := os.Lstat(dir); serr == nil && st.IsDir() {
			return dir, nil // another process made it first
		}
		return "", fmt.Errorf("mountpoints layer: %w", err)
	}
	return dir, nil
}

// rootfsLayers is the lowerdir stack of rec's rootfs, base first: the
// image's layers, then the mountpoints layer it was created with. A record
// without one (made before the layer existed) gets none, and so does one
// whose layer is gone: runc then creates the mountpoints in the upper dir,
// as it did before. That is safe over an upper dir made with the layer:
// the layer only adds what the image lacks, and directories with the
// image's attributes, so what the upper dir copied up from it is what it
// would have copied up from the image.
func (r *Runtime) rootfsLayers(rec record) []string {
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
	dir := filepath.Join(r.cfg.Root, mountLayersDir)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	used := map[string]bool{}
	r.mu.Lock()
	for _, c := range r.containers {
		if c.rec.MountLayer != "" {
			used[filepath.Base(c.rec.MountLayer)] = true
		}
	}
	r.mu.Unlock()
	for _, e := range ents {
		// By name: a record made under another spelling of Root still
		// keeps its layer.
		if used[e.Name()] || (!mountlayer.IsKey(e.Name()) && !strings.HasPrefix(e.Name(), ".tmp-")) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if err := os.RemoveAll(p); err != nil {
			r.log.Warn("remove unused mountpoints layer", "dir", p, "err", err)
		}
	}
}
