// Package volume owns a node's named volumes on disk (Root/volumes): the
// directory of each, created without following links (Store), and the
// copy-up of an image's content into an empty volume (Seed). Which
// containers use a volume, and so whether it may be removed, is the
// runtime's.
package volume

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/ocispec"
	"github.com/shoal-org/shoal/runtime/rmtree"
)

// TrashPrefix starts the name of a volume dir being deleted; volume names
// start with a letter or digit, so it never collides with one.
const TrashPrefix = ".rm-"

// Store manages Root/volumes. Its mutex serialises create, remove and the
// pending counts.
type Store struct {
	Dir string

	sync.Mutex
	Pending map[string]int // volume → containers being created with it
}

// New opens the volumes dir dir, creating it, and deletes what a crash
// in the middle of a remove left.
func New(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	v := &Store{Dir: dir, Pending: map[string]int{}}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), TrashPrefix) {
			_ = rmtree.RemoveAll(filepath.Join(dir, e.Name())) // a crash mid-remove
		}
	}
	return v, nil
}

// EnsureLocked creates volume name if it does not exist, without following
// links, and reports whether it made it.
func (v *Store) EnsureLocked(name string) (bool, error) {
	if p := api.VolumeNameProblem(name); p != "" {
		return false, fmt.Errorf("%w: volume name %q: %s", ocispec.ErrInvalidSpec, name, p)
	}
	root, err := unix.Open(v.Dir, unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_RDONLY, 0)
	if err != nil {
		return false, fmt.Errorf("open %s: %w", v.Dir, err)
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

// Exists reports whether volume name exists (as a real directory).
func (v *Store) Exists(name string) (time.Time, bool) {
	if api.VolumeNameProblem(name) != "" {
		return time.Time{}, false
	}
	fi, err := os.Lstat(filepath.Join(v.Dir, name))
	if err != nil || !fi.IsDir() {
		return time.Time{}, false
	}
	return fi.ModTime().UTC(), true
}
