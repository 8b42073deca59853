// Package mountlayer decides and builds the mountpoints layer of a
// container's rootfs.
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
// Which entries (Wanted, then Plan, both pure): the spec's mounts whose
// destination lies on the rootfs itself (no other mount of the spec at an
// ancestor or at the same path, before or after it) and whose type Shoal
// always knows — the directories /proc, /dev and /sys, and the regular
// files it binds at /etc/hosts, /etc/hostname, /etc/resolv.conf,
// ocispec.InitPath and ocispec.SeccompPath. Against the image's merged view (View: the layers
// top-down, whiteouts and opaque dirs as the image store writes them):
//   - a destination the image has (of whatever type) is left out: nothing
//     would be copied up, or runc handles the mismatch as it always did;
//   - a destination with an ancestor that is not a directory (an /etc
//     symlink, say) is left out: runc resolves it as it always did;
//   - the layer's directories that the image also has carry the image's
//     mode, owner and group (overlayfs shows the topmost layer's
//     attributes); new directories are 0755 root, new files empty, 0644
//     root (a bind mount always covers them).
//
// A layer is named by a hash of its entries (Key). The runtime keeps its
// layers under Root/mountpoints, built (Build) in a temp dir and renamed
// into place once, never written again. The container's record keeps the
// path it was mounted with (record.MountLayer), so a remount after a reboot
// stacks the same layers; records without one (containers made before this
// existed) get none.
package mountlayer

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"sort"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/shoal-org/shoal/runtime/ocispec"
)

// Kind is what a path is in an image's merged view.
type Kind uint8

const (
	KindAbsent Kind = iota // not there, or whited out
	KindDir
	KindFile  // a regular file
	KindOther // a symlink, device, fifo or socket, or not readable: left to runc
)

// ImageEntry is what the image's merged view holds at a path. Mode is the
// permission bits with setuid, setgid and sticky.
type ImageEntry struct {
	Kind     Kind
	Mode     uint32
	UID, GID uint32
}

// Mountpoint is a mount destination runc would have to create: a directory
// (a kernel file system, a tmpfs) or a regular file (a file bind mount).
type Mountpoint struct {
	Path string // absolute and clean
	Dir  bool
}

// Entry is one entry of a mountpoints layer.
type Entry struct {
	Path     string // absolute and clean
	Dir      bool   // else an empty regular file
	Mode     uint32 // permission bits with setuid, setgid and sticky
	UID, GID uint32
}

// Destinations whose type Shoal always knows (see ocispec's defaultMounts).
var (
	mountpointDirs  = map[string]bool{"/proc": true, "/dev": true, "/sys": true}
	mountpointFiles = map[string]bool{"/etc/hosts": true, "/etc/hostname": true, "/etc/resolv.conf": true, ocispec.InitPath: true, ocispec.SeccompPath: true}
)

// Wanted picks from a spec's mounts (in runc's order) the destinations the
// mountpoints layer may provide: the known directories (mounted as
// anything but a bind) and the known file binds, each only when no other
// mount's destination is the same path or an ancestor of it (one mounted
// earlier makes runc create it inside that mount, not in the rootfs; one
// mounted later hides it, and the image's content under a volume target
// must stay as it was for the volume's copy-up).
func Wanted(ms []specs.Mount) []Mountpoint {
	var out []Mountpoint
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
			out = append(out, Mountpoint{Path: d, Dir: true})
		case mountpointFiles[d] && m.Type == "bind":
			out = append(out, Mountpoint{Path: d, Dir: false})
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

// Plan decides the entries of the mountpoints layer: for each wanted
// mountpoint the image lacks, under ancestors that are directories or
// absent in the image, the mountpoint and its ancestors. image answers for
// the image's merged view (View.Lookup). The result is sorted by path
// (parents first); empty when nothing needs creating.
func Plan(want []Mountpoint, image func(p string) ImageEntry) []Entry {
	byPath := map[string]Entry{}
	for _, m := range want {
		if !path.IsAbs(m.Path) || path.Clean(m.Path) != m.Path || m.Path == "/" {
			continue
		}
		if _, dup := byPath[m.Path]; dup {
			continue // already in the layer, as an ancestor of another
		}
		var add []Entry
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
			case KindAbsent:
				add = append(add, Entry{Path: a, Dir: true, Mode: 0o755})
			case KindDir:
				add = append(add, Entry{Path: a, Dir: true, Mode: f.Mode, UID: f.UID, GID: f.GID})
			default:
				ok = false
			}
			if !ok {
				break
			}
		}
		if !ok || image(m.Path).Kind != KindAbsent {
			continue
		}
		for _, e := range add {
			byPath[e.Path] = e
		}
		if m.Dir {
			byPath[m.Path] = Entry{Path: m.Path, Dir: true, Mode: 0o755}
		} else {
			byPath[m.Path] = Entry{Path: m.Path, Mode: 0o644}
		}
	}
	out := make([]Entry, 0, len(byPath))
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

// Key names a layer by its exact entries (sorted by path).
func Key(entries []Entry) string {
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

// IsKey reports whether name could be a Key.
func IsKey(name string) bool {
	if len(name) != 32 {
		return false
	}
	_, err := hex.DecodeString(name)
	return err == nil && strings.ToLower(name) == name
}
