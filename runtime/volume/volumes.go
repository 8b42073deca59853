package volume

// Named volumes and the mounts of a container, as the runtime serves them.
//
// A service's --mount becomes an OCI mount in ocispec.BuildSpec (ociMounts, pure):
// a bind mount is an rbind of a host path, a volume is an rbind of the
// node-local directory Root/volumes/NAME/_data, a tmpfs is a tmpfs with
// Docker's options. Volumes are local to the node: created on first use
// (or by `shoal volume create`), kept across container restarts, task
// replacements and agent restarts, and deleted only by Remove (the runtime's RemoveVolume), which
// refuses while any container of this node (running or not) mounts it.
//
// What a container can reach. Root/volumes and Root/volumes/NAME belong to
// the agent; only the contents of _data are the container's. The agent
// creates NAME and _data with mkdirat/openat(O_NOFOLLOW) relative to a
// descriptor of the volumes dir, so a name can never lead outside it, and
// never opens anything inside _data. Remove first renames NAME out of
// the way (the volume is gone at once, a crash leaves only a dot-named
// leftover that the next start deletes), then deletes the tree with
// rmtree.RemoveAll, which walks with openat(O_NOFOLLOW|O_DIRECTORY) and
// unlinkat and a few descriptors however deep the tree: a symlink the
// container left inside _data is unlinked, never followed, and a chain of
// directories deeper than the agent's limit of open files goes too.
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
	"strings"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/ocispec"
	"github.com/shoal-org/shoal/runtime/rmtree"
)

// Sentinel errors of the volumes API; the runtime's ErrVolumeNotFound and
// ErrVolumeInUse are these.
var (
	// ErrNotFound: no volume of this node has that name.
	ErrNotFound = errors.New("no such volume")
	// ErrInUse: a container of this node mounts the volume.
	ErrInUse = errors.New("volume is in use")
	// ErrTooLarge: the copy of an image's content into an empty volume
	// (Seed) went past its budget.
	ErrTooLarge = errors.New("the image's content exceeds the volume's copy budget")
)

// Users returns the IDs of the containers of this node that mount volume
// name, sorted. It is the runtime's answer (its records), asked with the
// Store's mutex held.
type Users func(name string) []string

func (v *Store) info(name string, created time.Time, users Users) api.Volume {
	ids := users(name)
	return api.Volume{
		Name:       name,
		Mountpoint: ocispec.VolumePath(v.Dir, name),
		InUse:      len(ids) > 0,
		CreatedAt:  created,
		Containers: ids,
	}
}

// List lists the named volumes of this node, by name.
func (v *Store) List(users Users) ([]api.Volume, error) {
	ents, err := os.ReadDir(v.Dir)
	if err != nil {
		return nil, fmt.Errorf("read volumes dir: %w", err)
	}
	out := []api.Volume{}
	for _, e := range ents {
		if created, ok := v.Exists(e.Name()); ok {
			out = append(out, v.info(e.Name(), created, users))
		}
	}
	return out, nil
}

// Get returns one volume, or ErrNotFound.
func (v *Store) Get(name string, users Users) (api.Volume, error) {
	created, ok := v.Exists(name)
	if !ok {
		return api.Volume{}, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	return v.info(name, created, users), nil
}

// Create creates volume name; creating an existing volume is a no-op that
// returns it.
func (v *Store) Create(name string, users Users) (api.Volume, error) {
	v.Lock()
	_, err := v.EnsureLocked(name)
	v.Unlock()
	if err != nil {
		return api.Volume{}, err
	}
	return v.Get(name, users)
}

// Remove deletes volume name and everything in it. It refuses with
// ErrInUse while any container of this node mounts it (users) or is being
// created with it (Pending), and never follows a link the container left
// inside.
func (v *Store) Remove(name string, users Users) error {
	v.Lock()
	defer v.Unlock()
	if _, ok := v.Exists(name); !ok {
		return fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if users := users(name); len(users) > 0 || v.Pending[name] > 0 {
		short := make([]string, len(users))
		for i, id := range users {
			short[i] = api.ShortID(id)
		}
		if len(short) == 0 {
			short = []string{"a container being created"}
		}
		return fmt.Errorf("%w: %s is mounted by %s", ErrInUse, name, strings.Join(short, ", "))
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	trash := filepath.Join(v.Dir, TrashPrefix+name+"-"+hex.EncodeToString(b[:]))
	if err := os.Rename(filepath.Join(v.Dir, name), trash); err != nil {
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	if err := rmtree.RemoveAll(trash); err != nil {
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	return nil
}

// Prepare makes what a container's mounts need on this node: named
// volumes are created, bind sources must exist. Volumes count as in use
// (Pending) until release is called (after the container is registered, or
// failed). Errors name the mount and wrap ocispec.ErrInvalidSpec when the
// mounts are at fault.
func (v *Store) Prepare(ms []api.Mount) (release func(), err error) {
	if probs := api.MountsProblems(ms); len(probs) > 0 {
		return func() {}, fmt.Errorf("%w: %s", ocispec.ErrInvalidSpec, strings.Join(probs, "; "))
	}
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
				return v.releaseLocked(held), fmt.Errorf("mount %s: %w", m, err)
			}
			v.Pending[m.Source]++
			held = append(held, m.Source)
		case api.MountBind:
			if _, err := os.Stat(m.Source); err != nil {
				what := err.Error()
				if errors.Is(err, os.ErrNotExist) {
					what = "does not exist on this node"
				}
				return v.releaseLocked(held), fmt.Errorf("%w: mount %s: bind source %s %s", ocispec.ErrInvalidSpec, m, m.Source, what)
			}
		}
	}
	return release, nil
}

// releaseLocked drops the pending counts of held (v locked) and returns a
// no-op release for the error paths of Prepare.
func (v *Store) releaseLocked(held []string) func() {
	for _, n := range held {
		if v.Pending[n]--; v.Pending[n] <= 0 {
			delete(v.Pending, n)
		}
	}
	return func() {}
}
