package runtime

// Mounts and named volumes.
//
// A service's --mount becomes an OCI mount in ocispec.BuildSpec (ociMounts, pure):
// a bind mount is an rbind of a host path, a volume is an rbind of the
// node-local directory Root/volumes/NAME/_data, a tmpfs is a tmpfs with
// Docker's options. Volumes are local to the node: created on first use
// (or by `shoal volume create`), kept across container restarts, task
// replacements and agent restarts, and deleted only by RemoveVolume, which
// refuses while any container of this node (running or not) mounts it.
//
// What a container can reach. Root/volumes and Root/volumes/NAME belong to
// the agent; only the contents of _data are the container's. The agent
// creates NAME and _data with mkdirat/openat(O_NOFOLLOW) relative to a
// descriptor of the volumes dir, so a name can never lead outside it, and
// never opens anything inside _data. RemoveVolume first renames NAME out of
// the way (the volume is gone at once, a crash leaves only a dot-named
// leftover that the next start deletes), then deletes the tree with
// os.RemoveAll, which on Linux walks with openat(O_NOFOLLOW|O_DIRECTORY)
// and unlinkat: a symlink the container left inside _data is unlinked,
// never followed.
//
// A volume in use cannot be removed, and a container being created counts
// as a user from the moment its mounts are prepared (pending) until it is
// registered, so a remove racing a create cannot delete the directory under
// it.

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/ocispec"
	"github.com/shoal-org/shoal/runtime/volume"
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

func (r *Runtime) volumeAPI(name string, created time.Time) api.Volume {
	users := r.volumeUsers(name)
	return api.Volume{
		Name:       name,
		Mountpoint: ocispec.VolumePath(r.vols.Dir, name),
		InUse:      len(users) > 0,
		CreatedAt:  created,
		Containers: users,
	}
}

// Volumes lists the named volumes of this node, by name.
func (r *Runtime) Volumes() ([]api.Volume, error) {
	ents, err := os.ReadDir(r.vols.Dir)
	if err != nil {
		return nil, fmt.Errorf("read volumes dir: %w", err)
	}
	out := []api.Volume{}
	for _, e := range ents {
		if created, ok := r.vols.Exists(e.Name()); ok {
			out = append(out, r.volumeAPI(e.Name(), created))
		}
	}
	return out, nil
}

// Volume returns one volume, or ErrVolumeNotFound.
func (r *Runtime) Volume(name string) (api.Volume, error) {
	created, ok := r.vols.Exists(name)
	if !ok {
		return api.Volume{}, fmt.Errorf("%w: %s", ErrVolumeNotFound, name)
	}
	return r.volumeAPI(name, created), nil
}

// CreateVolume creates volume name; creating an existing volume is a
// no-op that returns it.
func (r *Runtime) CreateVolume(name string) (api.Volume, error) {
	r.vols.Lock()
	_, err := r.vols.EnsureLocked(name)
	r.vols.Unlock()
	if err != nil {
		return api.Volume{}, err
	}
	return r.Volume(name)
}

// RemoveVolume deletes volume name and everything in it. It refuses with
// ErrVolumeInUse while any container of this node mounts it (remove the
// containers first) and never follows a link the container left inside.
func (r *Runtime) RemoveVolume(name string) error {
	v := r.vols
	v.Lock()
	defer v.Unlock()
	if _, ok := v.Exists(name); !ok {
		return fmt.Errorf("%w: %s", ErrVolumeNotFound, name)
	}
	if users := r.volumeUsers(name); len(users) > 0 || v.Pending[name] > 0 {
		short := make([]string, len(users))
		for i, id := range users {
			short[i] = ShortID(id)
		}
		if len(short) == 0 {
			short = []string{"a container being created"}
		}
		return fmt.Errorf("%w: %s is mounted by %s", ErrVolumeInUse, name, strings.Join(short, ", "))
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	trash := filepath.Join(v.Dir, volume.TrashPrefix+name+"-"+hex.EncodeToString(b[:]))
	if err := os.Rename(filepath.Join(v.Dir, name), trash); err != nil {
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	return nil
}

// prepareMounts makes what a container's mounts need on this node: named
// volumes are created, bind sources must exist. Volumes count as in use
// until release is called (after the container is registered, or failed).
// Errors name the mount.
func (r *Runtime) prepareMounts(ms []api.Mount) (release func(), err error) {
	if probs := api.MountsProblems(ms); len(probs) > 0 {
		return func() {}, fmt.Errorf("%w: %s", ErrInvalidSpec, strings.Join(probs, "; "))
	}
	v := r.vols
	v.Lock()
	defer v.Unlock()
	var held []string
	release = func() {
		v.Lock()
		defer v.Unlock()
		for _, n := range held {
			if v.Pending[n]--; v.Pending[n] <= 0 {
				delete(v.Pending, n)
			}
		}
	}
	for _, m := range ms {
		switch m.Type {
		case api.MountVolume:
			if _, err := v.EnsureLocked(m.Source); err != nil {
				return r.releaseLocked(held), fmt.Errorf("mount %s: %w", m, err)
			}
			v.Pending[m.Source]++
			held = append(held, m.Source)
		case api.MountBind:
			if _, err := os.Stat(m.Source); err != nil {
				what := err.Error()
				if errors.Is(err, os.ErrNotExist) {
					what = "does not exist on this node"
				}
				return r.releaseLocked(held), fmt.Errorf("%w: mount %s: bind source %s %s", ErrInvalidSpec, m, m.Source, what)
			}
		}
	}
	return release, nil
}

// releaseLocked drops the pending counts of held (r.vols locked) and returns a
// no-op release for the error paths of prepareMounts.
func (r *Runtime) releaseLocked(held []string) func() {
	for _, n := range held {
		if r.vols.Pending[n]--; r.vols.Pending[n] <= 0 {
			delete(r.vols.Pending, n)
		}
	}
	return func() {}
}
