package mountlayer

import (
	"errors"
	"fmt"
	"path"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// View answers what paths are in the merged view of an image's layers as
// overlayfs shows them, in the image store's form: a whiteout is a 0/0
// character device, an opaque directory carries trusted.overlay.opaque=y.
// Redirects and metacopy are not used by the store. Answers are cached.
type View struct {
	top     []string // layer dirs, topmost first
	entries map[string]ImageEntry
	merged  map[string][]int // a directory's layers (indices into top), topmost first
}

// NewView views layers given base first, as the image store gives them.
func NewView(layers []string) *View {
	top := make([]string, len(layers))
	for i, l := range layers {
		top[len(layers)-1-i] = l
	}
	all := make([]int, len(top))
	for i := range all {
		all[i] = i
	}
	return &View{top: top, entries: map[string]ImageEntry{"/": {Kind: KindDir}}, merged: map[string][]int{"/": all}}
}

// Lookup returns what the merged view holds at p (absolute and clean). Any
// error but "not there" reads as KindOther, which leaves p out of the
// layer.
func (v *View) Lookup(p string) ImageEntry {
	if e, ok := v.entries[p]; ok {
		return e
	}
	e := v.resolve(p)
	v.entries[p] = e
	return e
}

func (v *View) resolve(p string) ImageEntry {
	parent := path.Dir(p)
	if pe := v.Lookup(parent); pe.Kind != KindDir {
		return ImageEntry{Kind: KindAbsent} // under a non-directory: not there
	}
	var (
		e      ImageEntry
		found  bool
		merged []int
	)
	for _, i := range v.merged[parent] {
		full := filepath.Join(v.top[i], p)
		var st unix.Stat_t
		err := unix.Lstat(full, &st)
		if errors.Is(err, unix.ENOENT) {
			continue // this layer has nothing here: look below it
		}
		if err != nil {
			return ImageEntry{Kind: KindOther}
		}
		typ := st.Mode & unix.S_IFMT
		if typ == unix.S_IFCHR && st.Rdev == 0 {
			break // a whiteout: nothing from here down
		}
		if typ != unix.S_IFDIR {
			if found {
				break // a directory above hides it
			}
			kind := KindOther
			if typ == unix.S_IFREG {
				kind = KindFile
			}
			return ImageEntry{Kind: kind, Mode: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid}
		}
		if !found {
			found = true
			e = ImageEntry{Kind: KindDir, Mode: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid}
		}
		merged = append(merged, i)
		opaque, err := isOpaque(full)
		if err != nil {
			return ImageEntry{Kind: KindOther}
		}
		if opaque {
			break
		}
	}
	if !found {
		return ImageEntry{Kind: KindAbsent}
	}
	v.merged[p] = merged
	return e
}

// isOpaque reports whether directory p is marked opaque for overlayfs.
func isOpaque(p string) (bool, error) {
	var buf [8]byte
	n, err := unix.Lgetxattr(p, "trusted.overlay.opaque", buf[:])
	switch {
	case errors.Is(err, unix.ENODATA), errors.Is(err, unix.ENOTSUP):
		return false, nil
	case errors.Is(err, unix.ERANGE):
		return false, nil // not "y"
	case err != nil:
		return false, fmt.Errorf("read opaque mark of %s: %w", p, err)
	}
	return n == 1 && buf[0] == 'y', nil
}
