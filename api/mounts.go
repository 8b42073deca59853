package api

import (
	"fmt"
	"path"
	"strings"
)

// MaxVolumeNameLen bounds a volume name: it is a directory name on the node.
const MaxVolumeNameLen = 255

// ReservedMountTargets are the container paths no mount may cover: the
// Shoal init and its state (/.shoal) and the kernel file systems the runtime
// sets up with masked and read-only paths (/proc, /sys, /dev). A mount there
// would hide or replace what isolation relies on.
var ReservedMountTargets = []string{"/.shoal", "/proc", "/sys", "/dev"}

// VolumeNameProblem returns why name cannot name a volume, or "". A volume
// is a directory of the node, so its name is one path element: letters,
// digits, '_', '.' and '-', starting with a letter or digit (Docker's rule).
func VolumeNameProblem(name string) string {
	if name == "" {
		return "must not be empty"
	}
	if len(name) > MaxVolumeNameLen {
		return fmt.Sprintf("longer than %d characters", MaxVolumeNameLen)
	}
	alnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' }
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !alnum(c) && c != '_' && c != '.' && c != '-' {
			return fmt.Sprintf("character %q not allowed (letters, digits, '_', '.' and '-')", c)
		}
	}
	if !alnum(name[0]) {
		return "must start with a letter or digit"
	}
	return ""
}

// MountProblem returns why m cannot be mounted, or "". It checks the
// spec only; whether a bind source exists is checked on the node that runs
// the container. The API, the leader's spec validation, the runtime's spec
// builder and the CLI share this rule.
func MountProblem(m Mount) string {
	for _, s := range []string{m.Type, m.Source, m.Target} {
		if strings.IndexByte(s, 0) >= 0 {
			return "contains a NUL byte"
		}
	}
	if p := targetProblem(m.Target); p != "" {
		return p
	}
	if m.Type != MountTmpfs && (m.TmpfsSize != 0 || m.TmpfsMode != 0) {
		return "tmpfs-size and tmpfs-mode apply to tmpfs mounts only"
	}
	if m.Type != MountVolume && m.NoCopy {
		return "volume-nocopy applies to volume mounts only"
	}
	switch m.Type {
	case MountVolume:
		if m.Source == "" {
			return "a volume mount needs a source (the volume name); anonymous volumes are not supported"
		}
		if p := VolumeNameProblem(m.Source); p != "" {
			return fmt.Sprintf("volume name %q: %s", m.Source, p)
		}
	case MountBind:
		if m.Source == "" {
			return "a bind mount needs a source (an absolute path on the node)"
		}
		if !path.IsAbs(m.Source) {
			return fmt.Sprintf("bind source %q: must be an absolute path", m.Source)
		}
		if path.Clean(m.Source) != m.Source {
			return fmt.Sprintf("bind source %q: must be a clean path (%s)", m.Source, path.Clean(m.Source))
		}
	case MountTmpfs:
		if m.Source != "" {
			return "a tmpfs mount takes no source"
		}
		if m.TmpfsSize < 0 {
			return fmt.Sprintf("tmpfs-size %d: must not be negative", m.TmpfsSize)
		}
		if m.TmpfsMode > 0o7777 {
			return fmt.Sprintf("tmpfs-mode %o: not a file mode", m.TmpfsMode)
		}
	case "":
		return "type missing: want volume, bind or tmpfs"
	default:
		return fmt.Sprintf("type %q: want volume, bind or tmpfs", m.Type)
	}
	return ""
}

func targetProblem(t string) string {
	switch {
	case t == "":
		return "target missing: the path in the container"
	case !path.IsAbs(t):
		return fmt.Sprintf("target %q: must be an absolute path", t)
	case path.Clean(t) != t:
		return fmt.Sprintf("target %q: must be a clean path (%s)", t, path.Clean(t))
	case t == "/":
		return "target /: cannot mount over the container's root"
	}
	for _, r := range ReservedMountTargets {
		if t == r || strings.HasPrefix(t, r+"/") {
			return fmt.Sprintf("target %q: %s is reserved", t, r)
		}
	}
	return ""
}

// MountsProblems checks a list of mounts: each with MountProblem, and no
// two on the same target. Each problem names the mount by index.
func MountsProblems(ms []Mount) []string {
	var out []string
	seen := map[string]int{}
	for i, m := range ms {
		if p := MountProblem(m); p != "" {
			out = append(out, fmt.Sprintf("mounts[%d]: %s", i, p))
			continue
		}
		if j, dup := seen[m.Target]; dup {
			out = append(out, fmt.Sprintf("mounts[%d]: target %s already used by mounts[%d]", i, m.Target, j))
			continue
		}
		seen[m.Target] = i
	}
	return out
}

// String renders m in the --mount syntax, for messages.
func (m Mount) String() string {
	var b strings.Builder
	b.WriteString("type=" + m.Type)
	if m.Source != "" {
		b.WriteString(",source=" + m.Source)
	}
	b.WriteString(",target=" + m.Target)
	if m.ReadOnly {
		b.WriteString(",readonly")
	}
	if m.TmpfsSize != 0 {
		fmt.Fprintf(&b, ",tmpfs-size=%d", m.TmpfsSize)
	}
	if m.TmpfsMode != 0 {
		fmt.Fprintf(&b, ",tmpfs-mode=%o", m.TmpfsMode)
	}
	if m.NoCopy {
		b.WriteString(",volume-nocopy")
	}
	return b.String()
}
