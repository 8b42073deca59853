package volume

// Volume copy-up (docker's behaviour): when a container is created with a
// named volume whose data dir is empty, the image's content at the mount
// target is copied into it first — a database image's initial files, an
// app's default config — with its owners and modes, so the container sees
// what it would have seen without the volume. `volume-nocopy` opts out. A
// volume with anything in it is never touched, so data a task wrote is
// never overwritten by a later task or a new image (but for what a copy
// that never completed left: below).
//
// What is read and written. The source is the container's freshly mounted
// rootfs (image layers plus an upper dir nothing has written yet), before
// any process of the container ran; the target path is resolved inside it
// with openat2(RESOLVE_IN_ROOT) (ocispec.OpenInRoot), so an image's symlink cannot lead the
// agent out of the rootfs, and the tree is walked without following links
// (a symlink is copied as a symlink). The destination is the volume's data
// dir, opened without following links from the agent's volumes dir, and
// every entry is created relative to its parent's descriptor, exclusively
// and without following links: a container that shares the volume and
// races the copy cannot redirect it. Devices, fifos and sockets are
// skipped (image layers hold none).
//
// What is written is bounded by the image. Hard links stay hard links: the
// first name of a file with more than one link is copied, the others are
// linked to that copy (found again under the volume's data dir without
// following any link, and checked to be the very inode copied), so an image
// of one large file and thousands of names for it costs the volume one
// file, not thousands. And each volume gets at most a budget of file
// content (the runtime gives the image's unpacked size): beyond it the copy
// stops with ErrTooLarge.
//
// An interrupted copy is redone. A copy that stops midway (the budget, a
// full disk, an I/O error, the agent killed, the host losing power) leaves
// part of the image's content in the volume, and a volume with anything in
// it is otherwise never touched: the next start would run the container on
// the partial copy, with no error. So a copy is bracketed by a marker,
// NAME/.seeding beside the data dir (the agent's, out of every container's
// reach, never among the user's data): made and synced (file and NAME)
// before the first entry is copied, removed once the copy is whole and on
// disk (syncfs of the volume's file system, once per volume: fsync of every
// copied file would cost an image of many small files minutes), and that
// removal synced before Seed returns, so before any container can have run
// on the volume. A start that finds the marker empties the data dir (with
// rmtree, whatever a container could have left there) and copies again.
// Only a volume whose copy never completed is ever emptied: the marker is
// gone, durably, before a container that mounts it with the copy runs.
// (A volume made before the marker existed has none and is kept as it is.)
// One copy of a volume runs at a time (flock on NAME): a second container
// created with it meanwhile waits, then finds it full, and cannot empty a
// copy under way.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/ocispec"
	"github.com/shoal-org/shoal/runtime/rmtree"
)

// seedingMarker is the file in a volume's dir (beside its data dir) that
// says a copy-up into it began and did not complete (seedVolume).
const seedingMarker = ".seeding"

// Seed copies the image content of rootfs into every empty named
// volume of ms that does not say volume-nocopy. volumesDir holds the
// volumes (which the runtime's prepareMounts created). budget bounds the
// bytes of file content written into each volume (a copy that would
// exceed it stops with ErrTooLarge). A copy that stops leaves what it
// copied with its marker, and the next Seed of the volume empties it and
// copies again. Errors name the mount.
func Seed(rootfs, volumesDir string, ms []api.Mount, budget int64) error {
	for _, m := range ms {
		if m.Type != api.MountVolume || m.NoCopy {
			continue
		}
		if _, err := seedVolume(rootfs, m.Target, volumesDir, m.Source, budget); err != nil {
			return fmt.Errorf("mount %s: copy the image's %s into the empty volume: %w", m, m.Target, err)
		}
	}
	return nil
}

// seedVolume copies rootfs's target into volume name when the volume's data
// dir is empty, or holds what a copy that never completed left (its
// marker is there: the data dir is emptied first), and reports whether it
// copied. A target the image lacks (or that is not a directory) leaves the
// volume empty.
func seedVolume(rootfs, target, volumesDir, name string, budget int64) (bool, error) {
	vol, dst, err := openVolume(volumesDir, name)
	if err != nil {
		return false, err
	}
	defer unix.Close(vol)
	defer unix.Close(dst)
	// Closing vol releases the lock.
	if err := unix.Flock(vol, unix.LOCK_EX); err != nil {
		return false, fmt.Errorf("lock volume %s: %w", name, err)
	}
	var mst unix.Stat_t
	interrupted := true
	switch err := unix.Fstatat(vol, seedingMarker, &mst, unix.AT_SYMLINK_NOFOLLOW); {
	case errors.Is(err, unix.ENOENT):
		interrupted = false
	case err != nil:
		return false, fmt.Errorf("volume %s: %s: %w", name, seedingMarker, err)
	}
	if interrupted {
		if err := emptyData(ocispec.VolumePath(volumesDir, name), dst); err != nil {
			return false, fmt.Errorf("empty the volume after a copy that did not complete: %w", err)
		}
	} else if empty, err := dirEmpty(dst); err != nil || !empty {
		return false, err
	}
	copied, err := copyImageDir(rootfs, target, vol, dst, budget, interrupted)
	if err != nil || !copied && !interrupted {
		return false, err
	}
	// The copy is whole (or there was nothing to copy): on disk first,
	// then the marker goes, durably, before any container runs on it.
	if copied {
		if err := unix.Syncfs(dst); err != nil {
			return false, fmt.Errorf("sync the copy: %w", err)
		}
	}
	if err := unix.Unlinkat(vol, seedingMarker, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return false, fmt.Errorf("volume %s: remove %s: %w", name, seedingMarker, err)
	}
	if err := unix.Fsync(vol); err != nil {
		return false, fmt.Errorf("volume %s: sync: %w", name, err)
	}
	return copied, nil
}

// copyImageDir copies rootfs's target into the data dir dst of the volume
// dir vol, making the marker first unless marked (it is there already),
// and reports whether the image had anything there to copy.
func copyImageDir(rootfs, target string, vol, dst int, budget int64, marked bool) (bool, error) {
	root, err := unix.Open(rootfs, unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_RDONLY, 0)
	if err != nil {
		return false, fmt.Errorf("open rootfs: %w", err)
	}
	defer unix.Close(root)
	src, err := ocispec.OpenInRoot(root, target, unix.O_DIRECTORY|unix.O_RDONLY)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("open %s in the image: %w", target, err)
	}
	defer unix.Close(src)
	if empty, err := dirEmpty(src); err != nil || empty {
		return false, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(src, &st); err != nil {
		return false, err
	}
	if !marked {
		if err := mark(vol); err != nil {
			return false, err
		}
	}
	c := &copier{dstRoot: dst, budget: budget, left: budget, links: map[fileID]firstCopy{}}
	if err := c.copyTree(src, dst, ""); err != nil {
		return false, err
	}
	// The volume's root takes the owner and mode of the image's directory
	// (a database that runs as its own user must be able to write it).
	if err := unix.Fchown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return false, err
	}
	return true, unix.Fchmod(dst, st.Mode&0o7777)
}

// mark makes the marker of a copy under way in the volume dir vol, on disk
// (the file and its name) before anything is copied.
func mark(vol int) error {
	fd, err := unix.Openat(vol, seedingMarker, unix.O_WRONLY|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", seedingMarker, err)
	}
	err = unix.Fsync(fd)
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.Fsync(vol)
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", seedingMarker, err)
	}
	return nil
}

// emptyData removes every entry of the data dir dst (at path dataPath)
// with rmtree: no link followed, a few descriptors however deep.
func emptyData(dataPath string, dst int) error {
	names, err := readNames(dst)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := rmtree.RemoveAll(filepath.Join(dataPath, n)); err != nil {
			return err
		}
	}
	return nil
}

// openVolume opens the dir of volume name and its data dir without
// following links.
func openVolume(volumesDir, name string) (vol, data int, err error) {
	if p := api.VolumeNameProblem(name); p != "" {
		return -1, -1, fmt.Errorf("%w: volume name %q: %s", ocispec.ErrInvalidSpec, name, p)
	}
	const flags = unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_RDONLY
	dir, err := unix.Open(volumesDir, flags, 0)
	if err != nil {
		return -1, -1, fmt.Errorf("open %s: %w", volumesDir, err)
	}
	defer unix.Close(dir)
	vol, err = unix.Openat(dir, name, flags, 0)
	if err != nil {
		return -1, -1, fmt.Errorf("open volume %s: %w", name, err)
	}
	data, err = unix.Openat(vol, ocispec.VolumeDataDir, flags, 0)
	if err != nil {
		unix.Close(vol)
		return -1, -1, fmt.Errorf("open volume %s data dir: %w", name, err)
	}
	return vol, data, nil
}

// readNames lists directory fd (which stays open and is not moved).
func readNames(fd int) ([]string, error) {
	dup, err := unix.Openat(fd, ".", unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dup), "dir")
	defer f.Close()
	return f.Readdirnames(-1)
}

func dirEmpty(fd int) (bool, error) {
	names, err := readNames(fd)
	return len(names) == 0, err
}

// copier is one volume's copy-up.
type copier struct {
	dstRoot      int   // the volume's data dir
	budget, left int64 // bytes of file content allowed, and left
	// links holds the copy of each file of the image with more than one
	// link, by the image file's identity, to link its other names to.
	links map[fileID]firstCopy
}

type fileID struct{ dev, ino uint64 }

// firstCopy is the volume's copy of a file with more than one link: its
// path under the data dir and its own identity there.
type firstCopy struct {
	path string
	id   fileID
}

func idOf(st *unix.Stat_t) fileID { return fileID{dev: uint64(st.Dev), ino: st.Ino} }

// copyTree copies the entries of directory src into directory dst (rel
// under the data dir), which must not have them yet.
func (c *copier) copyTree(src, dst int, rel string) error {
	names, err := readNames(src)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := c.copyEntry(src, dst, rel, n); err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
	}
	return nil
}

// copyEntry copies entry n of src into dst (rel under the data dir): a
// directory recursively, a file by content (or as a link to the copy of
// another of its names), a symlink as a symlink; owners and modes kept.
func (c *copier) copyEntry(src, dst int, rel, n string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(src, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	mode := st.Mode & 0o7777
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		if err := unix.Mkdirat(dst, n, 0o700); err != nil {
			return err
		}
		const flags = unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_RDONLY
		s, err := unix.Openat(src, n, flags, 0)
		if err != nil {
			return err
		}
		defer unix.Close(s)
		d, err := unix.Openat(dst, n, flags, 0)
		if err != nil {
			return err
		}
		defer unix.Close(d)
		if err := c.copyTree(s, d, path.Join(rel, n)); err != nil {
			return err
		}
		if err := unix.Fchown(d, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
		return unix.Fchmod(d, mode)
	case unix.S_IFREG:
		if st.Nlink > 1 {
			if first, ok := c.links[idOf(&st)]; ok && c.link(first, dst, n) == nil {
				return nil
			}
			// Not linked (a container sharing the volume removed or
			// replaced the first copy): copied, within the budget.
		}
		if st.Size > c.left {
			return fmt.Errorf("%w: more than %d bytes", ErrTooLarge, c.budget)
		}
		s, err := unix.Openat(src, n, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		in := os.NewFile(uintptr(s), n)
		defer in.Close()
		d, err := unix.Openat(dst, n, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		out := os.NewFile(uintptr(d), n)
		defer out.Close()
		// One byte more than is left tells a file that grew.
		k, err := io.Copy(out, io.LimitReader(in, c.left+1))
		if err != nil {
			return err
		}
		if c.left -= k; c.left < 0 {
			return fmt.Errorf("%w: more than %d bytes", ErrTooLarge, c.budget)
		}
		if err := unix.Fchown(d, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
		if err := unix.Fchmod(d, mode); err != nil {
			return err
		}
		if st.Nlink > 1 {
			var cp unix.Stat_t
			if err := unix.Fstat(d, &cp); err != nil {
				return err
			}
			c.links[idOf(&st)] = firstCopy{path: path.Join(rel, n), id: idOf(&cp)}
		}
		return nil
	case unix.S_IFLNK:
		buf := make([]byte, unix.PathMax)
		k, err := unix.Readlinkat(src, n, buf)
		if err != nil {
			return err
		}
		if err := unix.Symlinkat(string(buf[:k]), dst, n); err != nil {
			return err
		}
		return unix.Fchownat(dst, n, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW)
	}
	return nil // device, fifo, socket: not copied
}

// link makes n in dst another name of first. first is found under the
// data dir without following links or leaving it, and must still be the
// inode the copy made: a container sharing the volume can move names
// around it, but cannot have the agent link anything else.
func (c *copier) link(first firstCopy, dst int, n string) error {
	fd, err := unix.Openat2(c.dstRoot, first.path, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	})
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || idOf(&st) != first.id {
		return fmt.Errorf("%s is no longer the copy made", first.path)
	}
	// AT_EMPTY_PATH links the descriptor's inode itself (the agent has
	// CAP_DAC_READ_SEARCH).
	return unix.Linkat(fd, "", dst, n, unix.AT_EMPTY_PATH)
}
