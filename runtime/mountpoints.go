package runtime

// The mountpoints layer.
//
// runc creates a mount's destination inside the rootfs when the image lacks
// it: /etc/hosts, /etc/hostname, /etc/resolv.conf and /.shoal/init in most
// images, sometimes /proc, /dev or /sys. On an overlayfs rootfs each of those
// is a copy-up into the container's upper dir (the parent dir copied up, then
// the new entry): six ext4 inode allocations per start, and as many frees at
// removal, on the CPU the starts are bound by. Docker's answer is an "init
// layer" per container; here it is one read-only lowerdir, placed above the
// image's layers, that already holds those mountpoints, shared by every
// container that needs the same entries. runc finds its destinations and
// creates nothing, so a fresh container's upper dir stays empty.
//
// Which entries (wantedMountpoints, then planMountLayer, both pure): the
// spec's mounts whose destination lies on the rootfs itself (no other mount
// of the spec at an ancestor or at the same path, before or after it) and
// whose type Shoal always knows — the directories /proc, /dev and /sys, and
// the regular files it binds at /etc/hosts, /etc/hostname, /etc/resolv.conf
// and ocispec.InitPath. Against the image's merged view (imageView: the
// layers top-down, whiteouts and opaque dirs as the image store writes them):
//   - a destination the image has (of whatever type) is left out: nothing
//     would be copied up, or runc handles the mismatch as it always did;
//   - a destination with an ancestor that is not a directory (an /etc
//     symlink, say) is left out: runc resolves it as it always did;
//   - the layer's directories that the image also has carry the image's
//     mode, owner and group (overlayfs shows the topmost layer's
//     attributes); new directories are 0755 root, new files empty, 0644
//     root (a bind mount always covers them).
//
// A layer is named by a hash of its entries (mountLayerKey) under
// Root/mountpoints, built in a temp dir and renamed into place once, never
// written again. The container's record keeps the path it was mounted with
// (record.MountLayer), so a remount after a reboot stacks the same layers;
// records without one (containers made before this existed) get none.

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/runtime/ocispec"
)

// mountLayersDir is the directory of the mountpoints layers, under Root.
const mountLayersDir = "mountpoints"

// fsKind is what a path is in an image's merged view.
type fsKind uint8

const (
	kindAbsent fsKind = iota // not there, or whited out
	kindDir
	kindFile  // a regular file
	kindOther // a symlink, device, fifo or socket, or not readable: left to runc
)

// imageEntry is what the image's merged view holds at a path. Mode is the
// permission bits with setuid, setgid and sticky.
type imageEntry struct {
	Kind     fsKind
	Mode     uint32
	UID, GID uint32
}

// mountpoint is a mount destination runc would have to create: a directory
// (a kernel file system, a tmpfs) or a regular file (a file bind mount).
type mountpoint struct {
	Path string // absolute and clean
	Dir  bool
}

// layerEntry is one entry of a mountpoints layer.
type layerEntry struct {
	Path     string // absolute and clean
	Dir      bool   // else an empty regular file
	Mode     uint32 // permission bits with setuid, setgid and sticky
	UID, GID uint32
}

// Destinations whose type Shoal always knows (see ocispec's defaultMounts).
var (
	mountpointDirs  = map[string]bool{"/proc": true, "/dev": true, "/sys": true}
	mountpointFiles = map[string]bool{"/etc/hosts": true, "/etc/hostname": true, "/etc/resolv.conf": true, ocispec.InitPath: true}
)

// wantedMountpoints picks from a spec's mounts (in runc's order) the
// destinations the mountpoints layer may provide: the known directories
// (mounted as anything but a bind) and the known file binds, each only when
// no other mount's destination is the same path or an ancestor of it (one
// mounted earlier makes runc create it inside that mount, not in the rootfs;
// one mounted later hides it, and the image's content under a volume target
// must stay as it was for the volume's copy-up).
func wantedMountpoints(ms []specs.Mount) []mountpoint {
	var out []mountpoint
	for i, m := range ms {
		d := m.Destination
		if !path.IsAbs(d) || path.Clean(d) != d || d == "/" {
			continue
		}
		covered := false
		for j, o := range ms {
			if j != i && coversPath(o.Destination, d) {
				covered = true
				break
			}
		}
		switch {
		case covered:
		case mountpointDirs[d] && m.Type != "bind":
			out = append(out, mountpoint{Path: d, Dir: true})
		case mountpointFiles[d] && m.Type == "bind":
			out = append(out, mountpoint{Path: d, Dir: false})
		}
	}
	return out
}

// coversPath reports whether a mount at destination dst hides p: dst is p or
// one of its ancestors. A relative dst is taken from the rootfs, as runc
// does.
func coversPath(dst, p string) bool {
	if !path.IsAbs(dst) {
		dst = "/" + dst
	}
	dst = path.Clean(dst)
	return dst == "/" || dst == p || strings.HasPrefix(p, dst+"/")
}

// planMountLayer decides the entries of the mountpoints layer: for each
// wanted mountpoint the image lacks, under ancestors that are directories or
// absent in the image, the mountpoint and its ancestors. image answers for
// the image's merged view (imageView.lookup). The result is sorted by path
// (parents first); empty when nothing needs creating.
func planMountLayer(want []mountpoint, image func(p string) imageEntry) []layerEntry {
	byPath := map[string]layerEntry{}
	for _, m := range want {
		if !path.IsAbs(m.Path) || path.Clean(m.Path) != m.Path || m.Path == "/" {
			continue
		}
		if _, dup := byPath[m.Path]; dup {
			continue // already in the layer, as an ancestor of another
		}
		var add []layerEntry
		ok := true
		for _, a := range ancestors(m.Path) {
			if e, in := byPath[a]; in {
				if !e.Dir {
					ok = false
					break
				}
				continue
			}
			switch f := image(a); f.Kind {
			case kindAbsent:
				add = append(add, layerEntry{Path: a, Dir: true, Mode: 0o755})
			case kindDir:
				add = append(add, layerEntry{Path: a, Dir: true, Mode: f.Mode, UID: f.UID, GID: f.GID})
			default:
				ok = false
			}
			if !ok {
				break
			}
		}
		if !ok || image(m.Path).Kind != kindAbsent {
			continue
		}
		for _, e := range add {
			byPath[e.Path] = e
		}
		if m.Dir {
			byPath[m.Path] = layerEntry{Path: m.Path, Dir: true, Mode: 0o755}
		} else {
			byPath[m.Path] = layerEntry{Path: m.Path, Mode: 0o644}
		}
	}
	out := make([]layerEntry, 0, len(byPath))
	for _, e := range byPath {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// ancestors lists the directories above p, outermost first, without "/":
// "/a/b/c" gives "/a", "/a/b".
func ancestors(p string) []string {
	var out []string
	for i := 1; i < len(p); i++ {
		if p[i] == '/' {
			out = append(out, p[:i])
		}
	}
	return out
}

// mountLayerKey names a layer by its exact entries (sorted by path).
func mountLayerKey(entries []layerEntry) string {
	h := sha256.New()
	h.Write([]byte("shoal mountpoints layer v1\n"))
	for _, e := range entries {
		t := 'f'
		if e.Dir {
			t = 'd'
		}
		fmt.Fprintf(h, "%q %c %o %d %d\n", e.Path, t, e.Mode, e.UID, e.GID)
	}
	// 128 bits: a collision would need a second preimage, and the name
	// is part of every overlay mount's options, which must fit a page.
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// isMountLayerKey reports whether name could be a mountLayerKey.
func isMountLayerKey(name string) bool {
	if len(name) != 32 {
		return false
	}
	_, err := hex.DecodeString(name)
	return err == nil && strings.ToLower(name) == name
}

// imageView answers what paths are in the merged view of an image's layers
// as overlayfs shows them, in the image store's form: a whiteout is a 0/0
// character device, an opaque directory carries trusted.overlay.opaque=y.
// Redirects and metacopy are not used by the store. Answers are cached.
type imageView struct {
	top     []string // layer dirs, topmost first
	entries map[string]imageEntry
	merged  map[string][]int // a directory's layers (indices into top), topmost first
}

// newImageView views layers given base first, as the image store gives them.
func newImageView(layers []string) *imageView {
	top := make([]string, len(layers))
	for i, l := range layers {
		top[len(layers)-1-i] = l
	}
	all := make([]int, len(top))
	for i := range all {
		all[i] = i
	}
	return &imageView{top: top, entries: map[string]imageEntry{"/": {Kind: kindDir}}, merged: map[string][]int{"/": all}}
}

// lookup returns what the merged view holds at p (absolute and clean). Any
// error but "not there" reads as kindOther, which leaves p out of the
// layer.
func (v *imageView) lookup(p string) imageEntry {
	if e, ok := v.entries[p]; ok {
		return e
	}
	e := v.resolve(p)
	v.entries[p] = e
	return e
}

func (v *imageView) resolve(p string) imageEntry {
	parent := path.Dir(p)
	if pe := v.lookup(parent); pe.Kind != kindDir {
		return imageEntry{Kind: kindAbsent} // under a non-directory: not there
	}
	var (
		e      imageEntry
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
			return imageEntry{Kind: kindOther}
		}
		typ := st.Mode & unix.S_IFMT
		if typ == unix.S_IFCHR && st.Rdev == 0 {
			break // a whiteout: nothing from here down
		}
		if typ != unix.S_IFDIR {
			if found {
				break // a directory above hides it
			}
			kind := kindOther
			if typ == unix.S_IFREG {
				kind = kindFile
			}
			return imageEntry{Kind: kind, Mode: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid}
		}
		if !found {
			found = true
			e = imageEntry{Kind: kindDir, Mode: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid}
		}
		merged = append(merged, i)
		opaque, err := isOpaque(full)
		if err != nil {
			return imageEntry{Kind: kindOther}
		}
		if opaque {
			break
		}
	}
	if !found {
		return imageEntry{Kind: kindAbsent}
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

// mountLayerFor returns the mountpoints layer a container of the image
// layers (base first) with the mounts ms needs, creating it on first use;
// "" when the image already has every mountpoint runc would create.
func (r *Runtime) mountLayerFor(layers []string, ms []specs.Mount) (string, error) {
	want := wantedMountpoints(ms)
	if len(want) == 0 {
		return "", nil
	}
	entries := planMountLayer(want, newImageView(layers).lookup)
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
func (r *Runtime) ensureMountLayer(entries []layerEntry) (string, error) {
	parent := filepath.Join(r.cfg.Root, mountLayersDir)
	dir := filepath.Join(parent, mountLayerKey(entries))
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
	if err := buildMountLayer(tmp, entries); err != nil {
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

// buildMountLayer creates entries (sorted, parents first) under the empty
// directory root, then sets owners and modes deepest first, so that a 0700
// directory owned by someone else is filled before it gets its attributes.
func buildMountLayer(root string, entries []layerEntry) error {
	if err := os.Chmod(root, 0o755); err != nil {
		return err
	}
	for _, e := range entries {
		p := filepath.Join(root, e.Path)
		if e.Dir {
			if err := unix.Mkdir(p, 0o700); err != nil {
				return fmt.Errorf("mkdir %s: %w", e.Path, err)
			}
			continue
		}
		fd, err := unix.Open(p, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return fmt.Errorf("create %s: %w", e.Path, err)
		}
		unix.Close(fd)
	}
	for i := len(entries) - 1; i >= 0; i-- {
		e := entries[i]
		p := filepath.Join(root, e.Path)
		if err := unix.Lchown(p, int(e.UID), int(e.GID)); err != nil {
			return fmt.Errorf("chown %s: %w", e.Path, err)
		}
		// After the chown, which clears setuid and setgid.
		if err := unix.Chmod(p, e.Mode&0o7777); err != nil {
			return fmt.Errorf("chmod %s: %w", e.Path, err)
		}
	}
	return nil
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
		if used[e.Name()] || (!isMountLayerKey(e.Name()) && !strings.HasPrefix(e.Name(), ".tmp-")) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if err := os.RemoveAll(p); err != nil {
			r.log.Warn("remove unused mountpoints layer", "dir", p, "err", err)
		}
	}
}
