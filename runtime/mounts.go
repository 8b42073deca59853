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
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/ocispec"
)

// trashPrefix starts the name of a volume dir being deleted; volume names
// start with a letter or digit, so it never collides with one.
const trashPrefix = ".rm-"

// volumeStore manages Root/volumes. mu serialises create, remove and the
// pending counts.
type volumeStore struct {
	dir string

	mu      sync.Mutex
	pending map[string]int // volume → containers being created with it
}

func newVolumeStore(dir string) (*volumeStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	v := &volumeStore{dir: dir, pending: map[string]int{}}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), trashPrefix) {
			_ = os.RemoveAll(filepath.Join(dir, e.Name())) // a crash mid-remove
		}
	}
	return v, nil
}

// ensureLocked creates volume name if it does not exist, without following
// links, and reports whether it made it.
func (v *volumeStore) ensureLocked(name string) (bool, error) {
	if p := api.VolumeNameProblem(name); p != "" {
		return false, fmt.Errorf("%w: volume name %q: %s", ErrInvalidSpec, name, p)
	}
	root, err := unix.Open(v.dir, unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_RDONLY, 0)
	if err != nil {
		return false, fmt.Errorf("open %s: %w", v.dir, err)
	}
	defer unix.Close(root)
	created := false
	switch err := unix.Mkdirat(root, name, 0o700); {
	case err == nil:
		created = true
	case errors.Is(err, unix.EEXIST):
	default:
		return false, fmt.Errorf("create volume %s: %w", name, err)
	}
	fd, err := unix.Openat(root, name, unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_RDONLY, 0)
	if err != nil {
		return false, fmt.Errorf("open volume %s: %w", name, err)
	}
	defer unix.Close(fd)
	if err := unix.Mkdirat(fd, ocispec.VolumeDataDir, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return false, fmt.Errorf("create volume %s data dir: %w", name, err)
	}
	// The mkdirat mode is masked by the umask; containers expect 0755.
	if created {
		if err := unix.Fchmodat(fd, ocispec.VolumeDataDir, 0o755, 0); err != nil {
			return false, fmt.Errorf("chmod volume %s data dir: %w", name, err)
		}
	}
	data, err := unix.Openat(fd, ocispec.VolumeDataDir, unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_RDONLY, 0)
	if err != nil {
		return false, fmt.Errorf("volume %s data dir: %w", name, err)
	}
	unix.Close(data)
	return created, nil
}

// exists reports whether volume name exists (as a real directory).
func (v *volumeStore) exists(name string) (time.Time, bool) {
	if api.VolumeNameProblem(name) != "" {
		return time.Time{}, false
	}
	fi, err := os.Lstat(filepath.Join(v.dir, name))
	if err != nil || !fi.IsDir() {
		return time.Time{}, false
	}
	return fi.ModTime().UTC(), true
}

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
		Mountpoint: ocispec.VolumePath(r.vols.dir, name),
		InUse:      len(users) > 0,
		CreatedAt:  created,
		Containers: users,
	}
}

// Volumes lists the named volumes of this node, by name.
func (r *Runtime) Volumes() ([]api.Volume, error) {
	ents, err := os.ReadDir(r.vols.dir)
	if err != nil {
		return nil, fmt.Errorf("read volumes dir: %w", err)
	}
	out := []api.Volume{}
	for _, e := range ents {
		if created, ok := r.vols.exists(e.Name()); ok {
			out = append(out, r.volumeAPI(e.Name(), created))
		}
	}
	return out, nil
}

// Volume returns one volume, or ErrVolumeNotFound.
func (r *Runtime) Volume(name string) (api.Volume, error) {
	created, ok := r.vols.exists(name)
	if !ok {
		return api.Volume{}, fmt.Errorf("%w: %s", ErrVolumeNotFound, name)
	}
	return r.volumeAPI(name, created), nil
}

// CreateVolume creates volume name; creating an existing volume is a
// no-op that returns it.
func (r *Runtime) CreateVolume(name string) (api.Volume, error) {
	r.vols.mu.Lock()
	_, err := r.vols.ensureLocked(name)
	r.vols.mu.Unlock()
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
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.exists(name); !ok {
		return fmt.Errorf("%w: %s", ErrVolumeNotFound, name)
	}
	if users := r.volumeUsers(name); len(users) > 0 || v.pending[name] > 0 {
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
	trash := filepath.Join(v.dir, trashPrefix+name+"-"+hex.EncodeToString(b[:]))
	if err := os.Rename(filepath.Join(v.dir, name), trash); err != nil {
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
	v.mu.Lock()
	defer v.mu.Unlock()
	var held []string
	release = func() {
		v.mu.Lock()
		defer v.mu.Unlock()
		for _, n := range held {
			if v.pending[n]--; v.pending[n] <= 0 {
				delete(v.pending, n)
			}
		}
	}
	for _, m := range ms {
		switch m.Type {
		case api.MountVolume:
			if _, err := v.ensureLocked(m.Source); err != nil {
				return r.releaseLocked(held), fmt.Errorf("mount %s: %w", m, err)
			}
			v.pending[m.Source]++
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

// releaseLocked drops the pending counts of held (v.mu held) and returns a
// no-op release for the error paths of prepareMounts.
func (r *Runtime) releaseLocked(held []string) func() {
	for _, n := range held {
		if r.vols.pending[n]--; r.vols.pending[n] <= 0 {
			delete(r.vols.pending, n)
		}
	}
	return func() {}
}
