// Package atomicfile replaces a file's content so that a reader, or the
// next start after a crash, sees either the old content or the new one,
// never a mix: the data goes to a temporary file in the same directory
// (same file system, so the rename is atomic), is fsynced, and is renamed
// over the target.
//
// It lives under api, not in a layer, because consensus, runtime, overlay,
// lb and node all write small state files this way and may share only api
// (DESIGN.md, Packages). Like api it imports the standard library only.
//
// What it does not do: it does not fsync the directory after the rename,
// so after a power loss the rename itself may be undone (the old content
// comes back, whole). Callers that must know the new name is durable sync
// the directory themselves (consensus's rejoin marker does).
package atomicfile

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Option changes how WriteFile and Write write.
type Option func(*options)

type options struct {
	noSync bool
}

// NoSync skips the fsync of the data before the rename. A crash of the
// process still leaves the old or the new content, but a power loss may
// leave an empty or torn file under the new name. For files whose loss
// with the machine does not matter, written on a hot path (overlay's
// address allocations, the runtime's container records).
func NoSync() Option { return func(o *options) { o.noSync = true } }

// WriteFile replaces path with data, with permissions perm (set on the
// temporary file explicitly, so the umask does not apply). The directory
// must exist. On error path is unchanged and the temporary file is gone.
// Concurrent writers of one path each write a whole file; the last rename
// wins.
func WriteFile(path string, data []byte, perm fs.FileMode, opts ...Option) error {
	return Write(path, perm, func(w io.Writer) error {
		if _, err := w.Write(data); err != nil {
			return fmt.Errorf("write temp file for %s: %w", path, err)
		}
		return nil
	}, opts...)
}

// Write is WriteFile for content produced by fill, which writes it to w (a
// temporary file; fill must not keep w). An error from fill aborts the
// write and is returned as it is; path is then unchanged.
func Write(path string, perm fs.FileMode, fill func(w io.Writer) error, opts ...Option) error {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create temp file in %s: %w", dir, err)
	}
	tmp := f.Name()
	done := false
	defer func() {
		if !done {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if err := fill(f); err != nil {
		return err
	}
	if !o.noSync {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("sync %s: %w", tmp, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp, path, err)
	}
	done = true
	return nil
}

// WriteJSON replaces path with v as indented JSON, mode 0600, making its
// directory (0700) first: how the agent keeps its small state files
// (identity, cluster files, key epochs and indexes).
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return WriteFile(path, b, 0o600)
}
