package ocispec

import (
	"fmt"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/shoal-org/shoal/api"
)

// VolumeDataDir is the directory of a volume that containers see.
const VolumeDataDir = "_data"

// ociMounts turns the user's mounts into OCI mounts; volumesDir is the
// directory holding the node's volumes (Root/volumes). It has no side
// effects and refuses what api.MountsProblems refuses.
func ociMounts(ms []api.Mount, volumesDir string) ([]specs.Mount, error) {
	if probs := api.MountsProblems(ms); len(probs) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrInvalidSpec, strings.Join(probs, "; "))
	}
	out := make([]specs.Mount, 0, len(ms))
	for _, m := range ms {
		var om specs.Mount
		switch m.Type {
		case api.MountBind, api.MountVolume:
			src := m.Source
			if m.Type == api.MountVolume {
				if volumesDir == "" {
					return nil, fmt.Errorf("%w: volume mount %s without a volumes dir", ErrInvalidSpec, m.Target)
				}
				src = VolumePath(volumesDir, m.Source)
			}
			om = specs.Mount{Destination: m.Target, Type: "bind", Source: src,
				Options: []string{"rbind", "rprivate"}}
		case api.MountTmpfs:
			mode := m.TmpfsMode
			if mode == 0 {
				mode = 0o1777
			}
			// Docker's tmpfs options.
			opts := []string{"noexec", "nosuid", "nodev", "rprivate", fmt.Sprintf("mode=%o", mode)}
			if m.TmpfsSize > 0 {
				opts = append(opts, fmt.Sprintf("size=%d", m.TmpfsSize))
			}
			om = specs.Mount{Destination: m.Target, Type: "tmpfs", Source: "tmpfs", Options: opts}
		}
		if m.ReadOnly {
			om.Options = append(om.Options, "ro")
		}
		out = append(out, om)
	}
	return out, nil
}

// VolumePath is the host directory of volume name.
func VolumePath(volumesDir, name string) string {
	return filepath.Join(volumesDir, name, VolumeDataDir)
}

// FileMount is a prepared file: Source on a host tmpfs, bind-mounted
// read-only at Target inside the container.
type FileMount struct {
	Source string `json:"source"`
	Target string `json:"target"`
}

// fileMounts turns prepared files into read-only bind mounts; Mounts
// orders them with the others, parents first.
func fileMounts(files []FileMount) []specs.Mount {
	out := make([]specs.Mount, 0, len(files))
	for _, f := range files {
		out = append(out, specs.Mount{Destination: f.Target, Type: "bind", Source: f.Source,
			Options: []string{"rbind", "rprivate", "ro", "nosuid", "nodev", "noexec"}})
	}
	return out
}
