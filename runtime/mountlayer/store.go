package mountlayer

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Store keeps a node's mountpoints layers on disk, one directory per set
// of entries under Dir (the runtime's Root/mountpoints), named by Key,
// built once and never written again. Its methods are safe for concurrent
// use.
type Store struct {
	Dir string

	mu sync.Mutex // serialises creating layers
}

// For returns the mountpoints layer a container of the image layers (base
// first) with the mounts ms needs, creating it on first use; "" when the
// image already has every mountpoint runc would create.
func (s *Store) For(layers []string, ms []specs.Mount) (string, error) {
	want := Wanted(ms)
	if len(want) == 0 {
		return "", nil
	}
	entries := Plan(want, NewView(layers).Lookup)
	if len(entries) == 0 {
		return "", nil
	}
	return s.Ensure(entries)
}

// Ensure returns the directory of the layer holding entries,
// creating it when missing: built in a temp dir beside it and renamed into
// place, so it is complete whenever it exists. A concurrent creator (this
// agent serialises its own) is fine: the first rename wins, the others
// discard their copy.
func (s *Store) Ensure(entries []Entry) (string, error) {
	parent := s.Dir
	dir := filepath.Join(parent, Key(entries))
	if st, err := os.Lstat(dir); err == nil && st.IsDir() {
		return dir, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
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
	if err := Build(tmp, entries); err != nil {
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

// Prune removes the layers whose names used does not hold and the temp
// dirs of an interrupted creation; what else is in Dir (not a Key) stays.
// A layer that cannot be removed is passed to warn. The caller makes sure
// no For or Ensure runs meanwhile.
func (s *Store) Prune(used map[string]bool, warn func(dir string, err error)) {
	dir := s.Dir
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		// By name: a record made under another spelling of Root still
		// keeps its layer.
		if used[e.Name()] || (!IsKey(e.Name()) && !strings.HasPrefix(e.Name(), ".tmp-")) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if err := os.RemoveAll(p); err != nil {
			warn(p, err)
		}
	}
}
