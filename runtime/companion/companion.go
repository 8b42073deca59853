// Package companion finds and checks the binaries Shoal ships beside its
// own: the container init (shoal-init) and the node supervisor
// (shoal-supervisor), next to the running executable (a build tree's bin/)
// or where the Debian package installs them, and tini-static from PATH as
// the init of last resort.
//
// It exists apart from the runtime because where a binary is looked for,
// in which order, is a pure function of a few paths, tested without a
// runtime, and the same answer is needed by the runtime's Config.Validate,
// by New (an init must be static: it runs in images without the host's
// libc) and by the tests and benchmarks that build the binaries.
package companion

import (
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// InitName is the file name of Shoal's container init (runtime/init) and
// SupervisorName that of the node supervisor's own binary
// (runtime/cmd/shoal-supervisor), both built by `make build` next to the
// shoal binary; Dir is where the Debian package installs them. The
// runtime's Config.InitBinary and SupervisorBinary default to the first
// found.
const (
	InitName       = "shoal-init"
	SupervisorName = "shoal-supervisor"
	Dir            = "/usr/lib/shoal"
)

// DefaultInit is the container init looked up in PATH when the runtime's
// Config.InitBinary is empty and no shoal-init is found: tini's static
// build, Docker's --init.
const DefaultInit = "tini-static"

// Candidates lists where the runtime's Config.Validate looks for Shoal's
// helper binary name (InitName, SupervisorName), in order: next to the
// executable exe (a build tree's bin/, or a test's own build), then Dir
// (the package's).
func Candidates(exe, name string) []string {
	var c []string
	if exe != "" {
		c = append(c, filepath.Join(filepath.Dir(exe), name))
	}
	return append(c, filepath.Join(Dir, name))
}

// FirstExecutable returns the first of paths that is an executable regular
// file, or "".
func FirstExecutable(paths []string) string {
	for _, p := range paths {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// FindInit returns the first of candidates that is an executable regular
// file, else DefaultInit found by lookPath with fallback true.
func FindInit(candidates []string, lookPath func(string) (string, error)) (path string, fallback bool, err error) {
	if p := FirstExecutable(candidates); p != "" {
		return p, false, nil
	}
	p, err := lookPath(DefaultInit)
	if err != nil {
		return "", true, fmt.Errorf("no %s in %s and %s not found: %w", InitName, strings.Join(candidates, " or "), DefaultInit, err)
	}
	return p, true, nil
}

// CheckStatic refuses a dynamically linked init binary: it would not start in
// an image without the host's libc.
func CheckStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("init binary %s: %v", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("init binary %s is dynamically linked; build it with CGO_ENABLED=0", path)
		}
	}
	return nil
}
