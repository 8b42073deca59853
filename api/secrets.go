package api

import (
	"fmt"
	"path"
	"strings"
)

// MaxObjectNameLen bounds secret and config names (Swarm's limit).
const MaxObjectNameLen = 64

// ObjectNameProblem returns why name cannot name a secret or config, or "".
// Swarm's rule: letters, digits, '-', '_' and '.', starting and ending with
// a letter or digit, at most 64 characters. The name also becomes the
// default file name under SecretsDir, so it can never hold a '/'.
func ObjectNameProblem(name string) string {
	if name == "" {
		return "must not be empty"
	}
	if len(name) > MaxObjectNameLen {
		return fmt.Sprintf("longer than %d characters", MaxObjectNameLen)
	}
	alnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' }
	for i := 0; i < len(name); i++ {
		if c := name[i]; !alnum(c) && c != '-' && c != '_' && c != '.' {
			return fmt.Sprintf("character %q not allowed (letters, digits, '-', '_' and '.')", c)
		}
	}
	if !alnum(name[0]) || !alnum(name[len(name)-1]) {
		return "must start and end with a letter or digit"
	}
	return ""
}

// SecretTarget is the path inside the container where a secret reference
// is mounted: Target (default Source) under SecretsDir unless absolute.
func SecretTarget(r FileReference) string {
	t := r.Target
	if t == "" {
		t = r.Source
	}
	if path.IsAbs(t) {
		return path.Clean(t)
	}
	return path.Join(SecretsDir, t)
}

// ConfigTarget is the path inside the container where a config reference
// is mounted: Target, or "/" + Source when empty.
func ConfigTarget(r FileReference) string {
	t := r.Target
	if t == "" {
		t = "/" + r.Source
	}
	return path.Clean(t)
}

// FileMode is the mode of a mounted secret or config file (default 0444).
func FileMode(r FileReference) uint32 {
	if r.Mode == 0 {
		return 0o444
	}
	return r.Mode
}

// FileReferenceProblem returns why a secret (secret true) or config
// reference is invalid, or "".
func FileReferenceProblem(r FileReference, secret bool) string {
	if p := ObjectNameProblem(r.Source); p != "" {
		return fmt.Sprintf("source %q: %s", r.Source, p)
	}
	if r.Mode&^0o777 != 0 {
		return fmt.Sprintf("mode %#o: only permission bits (0-0777) are allowed", r.Mode)
	}
	if !secret && r.Target != "" && !path.IsAbs(r.Target) {
		return fmt.Sprintf("target %q must be an absolute path", r.Target)
	}
	for _, part := range strings.Split(r.Target, "/") {
		if part == ".." || part == "." {
			return fmt.Sprintf("target %q must not contain '.' or '..'", r.Target)
		}
	}
	t := ConfigTarget(r)
	if secret {
		t = SecretTarget(r)
	}
	// A target that names the secrets directory itself would hide every
	// other secret of the task under one file.
	if t == "/" || t == SecretsDir || strings.HasSuffix(r.Target, "/") {
		return fmt.Sprintf("target %q must name a file", r.Target)
	}
	// A file is bind mounted like any mount: not over what isolation or
	// the init relies on (/.shoal/init, /dev/null, ...).
	for _, res := range ReservedMountTargets {
		if t == res || strings.HasPrefix(t, res+"/") {
			return fmt.Sprintf("target %q: %s is reserved", t, res)
		}
	}
	return ""
}

// FileTarget is the path inside the container where a secret (secret true)
// or config reference is mounted.
func FileTarget(r FileReference, secret bool) string {
	if secret {
		return SecretTarget(r)
	}
	return ConfigTarget(r)
}

// FileTargetConflict returns why the secrets and configs of one service
// spec cannot all be mounted, or "": two references whose files land on the
// same path in the container. One file would hide the other and which one
// wins would depend on mount order, so Docker refuses such a spec instead
// of merging it; secrets and configs share the container's filesystem, so a
// secret and a config at one path conflict too. The CLI, the compose
// loader and the API all refuse with these words.
func FileTargetConflict(secrets, configs []FileReference) string {
	type use struct {
		kind, source string
	}
	seen := map[string]use{}
	for _, list := range []struct {
		refs   []FileReference
		secret bool
	}{{secrets, true}, {configs, false}} {
		kind := "config"
		if list.secret {
			kind = "secret"
		}
		for _, r := range list.refs {
			t := FileTarget(r, list.secret)
			if u, ok := seen[t]; ok {
				if u.kind == kind && u.source == r.Source {
					return fmt.Sprintf("%s %s is listed twice at target %s", kind, r.Source, t)
				}
				return fmt.Sprintf("%s %s and %s %s have the same target %s", u.kind, u.source, kind, r.Source, t)
			}
			seen[t] = use{kind, r.Source}
		}
	}
	return ""
}
