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
// Durable by default. A write that returns nil is on disk: the data is
// fsynced before the rename, and the directory after it. Without the
// second fsync a power loss could undo the rename although the writer was
// told the file was written: the old content came back (a renewed
// certificate, a new cluster epoch lost), or, for a new file, no file at
// all. WriteJSON also syncs the parents of the directories it makes.
//
// NoSync is the cheap variant, for files written often on purpose whose
// loss with the machine does not matter: no fsync at all, so a write costs
// no disk flush (an idle agent rewrites its contact file every few
// seconds).
package atomicfile

import (
	"encoding/json"
	"errors"
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

// NoSync skips the fsyncs: of the data before the rename and of the
// directory after it. A crash of the process still leaves the old or the
// new content, but a power loss may bring the old content back, leave no
// file where there was none, or an empty or torn file under the new name.
// For files whose loss with the machine does not matter, written on a hot
// path (the reconciler's contact file, the runtime's container records,
// the supervisor's state).
func NoSync() Option { return func(o *options) { o.noSync = true } }

// fsync syncs f (a file or a directory); tests replace it to see what is
// synced, in which order.
var fsync = (*os.File).Sync

// syncDir fsyncs directory dir, so that the names created, renamed or
// removed in it survive a power loss.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory %s to sync it: %w", dir, err)
	}
	err = fsync(d)
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// WriteFile replaces path with data, with permissions perm (set on the
// temporary file explicitly, so the umask does not apply), durably (see
// the package doc; NoSync). The directory must exist. On error path is
// unchanged and the temporary file is gone, but for an error syncing the
// directory after the rename (it says so): path then has the new content,
// which a power loss may undo. Concurrent writers of one path each write a
// whole file; the last rename wins.
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
		if err := fsync(f); err != nil {
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
	if o.noSync {
		return nil
	}
	return syncDir(dir)
}

// WriteJSON replaces path with v as indented JSON, mode 0600, durably,
// making its directory (0700) first: how the agent keeps its small state
// files (identity, cluster files, key epochs and indexes).
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	if err := mkdirAll(filepath.Dir(path)); err != nil {
		return err
	}
	return WriteFile(path, b, 0o600)
}

// mkdirAll makes dir and its missing parents (0700) and syncs the parent
// of each it made, top down, so that a file written durably into it is
// not lost with its directory. A dir that exists costs one stat.
func mkdirAll(dir string) error {
	var made []string // missing, deepest first
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil || !errors.Is(err, fs.ErrNotExist) || d == filepath.Dir(d) {
			break
		}
		made = append(made, d)
	}
	if len(made) == 0 {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for i := len(made) - 1; i >= 0; i-- {
		if err := syncDir(filepath.Dir(made[i])); err != nil {
			return err
		}
	}
	return nil
}
