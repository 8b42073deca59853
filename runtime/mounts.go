package runtime

// Mounts and named volumes: the volumes on disk, the API's answers and a
// new container's mounts are runtime/volume's (its Store and the doc of
// volumes.go); which containers mount a volume, and so whether it may be
// removed, comes from the runtime's records (volumeUsers).

import (
	"sort"

	"github.com/shoal-org/shoal/api"
)

// volumeUsers returns the IDs of containers that mount volume name.
func (r *Runtime) volumeUsers(name string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ids []string
	for id, c := range r.containers {
		for _, m := range c.rec.Spec.Mounts {
			if m.Type == api.MountVolume && m.Source == name {
				ids = append(ids, id)
				break
			}
		}
	}
	sort.Strings(ids)
	return ids
}

// Volumes lists the named volumes of this node, by name.
func (r *Runtime) Volumes() ([]api.Volume, error) { return r.vols.List(r.volumeUsers) }

// Volume returns one volume, or ErrVolumeNotFound.
func (r *Runtime) Volume(name string) (api.Volume, error) { return r.vols.Get(name, r.volumeUsers) }

// CreateVolume creates volume name; creating an existing volume is a
// no-op that returns it.
func (r *Runtime) CreateVolume(name string) (api.Volume, error) {
	return r.vols.Create(name, r.volumeUsers)
}

// RemoveVolume deletes volume name and everything in it. It refuses with
// ErrVolumeInUse while any container of this node mounts it (remove the
// containers first) and never follows a link the container left inside.
func (r *Runtime) RemoveVolume(name string) error { return r.vols.Remove(name, r.volumeUsers) }
