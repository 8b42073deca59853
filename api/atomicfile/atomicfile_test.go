package atomicfile

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// entries lists dir, so a test can see that no temporary file is left.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestWriteFile(t *testing.T) {
	old := syscall.Umask(0o077) // perm must not depend on the umask
	defer syscall.Umask(old)
	for _, tt := range []struct {
		name string
		opts []Option
	}{
		{"sync", nil},
		{"nosync", []Option{NoSync()}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "state.json")
			if err := WriteFile(p, []byte("one"), 0o644, tt.opts...); err != nil {
				t.Fatal(err)
			}
			if err := WriteFile(p, []byte("two, longer"), 0o640, tt.opts...); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(p)
			if err != nil || string(b) != "two, longer" {
				t.Fatalf("content %q, %v; want the second write", b, err)
			}
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o640 {
				t.Errorf("mode %v, want 0640 whatever the umask", st.Mode().Perm())
			}
			if names := entries(t, dir); len(names) != 1 {
				t.Errorf("dir holds %v, want only state.json", names)
			}
		})
	}
}

func TestWriteFailureLeavesOldContent(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	if err := WriteFile(p, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := Write(p, 0o600, func(w io.Writer) error {
		_, _ = w.Write([]byte("half"))
		return boom
	})
	if err != boom {
		t.Fatalf("err %v, want the fill error as it is", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "old" {
		t.Errorf("content %q after a failed write, want the old one", b)
	}
	if names := entries(t, dir); len(names) != 1 {
		t.Errorf("dir holds %v after a failed write, want only state.json", names)
	}

	// The target is a directory: the rename fails, nothing is left behind.
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sub, "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(sub, []byte("x"), 0o600); err == nil {
		t.Error("writing over a non-empty directory succeeded")
	}
	if names := entries(t, dir); len(names) != 2 {
		t.Errorf("dir holds %v after a failed rename, want state.json and sub", names)
	}
}

func TestWriteFileMissingDir(t *testing.T) {
	p := filepath.Join(t.TempDir(), "missing", "state.json")
	if err := WriteFile(p, []byte("x"), 0o600); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err %v, want fs.ErrNotExist (the directory is the caller's)", err)
	}
}

// TestReadersSeeWholeFiles: a reader racing with writers of two contents of
// different lengths only ever reads one of them, never a mix or a prefix.
func TestReadersSeeWholeFiles(t *testing.T) {
	p := filepath.Join(t.TempDir(), "state")
	a := bytes.Repeat([]byte("a"), 64<<10)
	b := bytes.Repeat([]byte("b"), 3)
	if err := WriteFile(p, a, 0o600, NoSync()); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			data := a
			if i%2 == 1 {
				data = b
			}
			if err := WriteFile(p, data, 0o600, NoSync()); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for i := 0; i < 2000; i++ {
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, a) && !bytes.Equal(got, b) {
			t.Fatalf("read %d bytes that are neither content", len(got))
		}
	}
	close(stop)
	wg.Wait()
}

// recordSyncs replaces fsync for the test with one that records the path
// of each file or directory synced (and syncs it, or fails with failDirs
// for a directory when it is set).
func recordSyncs(t *testing.T, failDirs error) *[]string {
	t.Helper()
	var synced []string
	old := fsync
	fsync = func(f *os.File) error {
		synced = append(synced, f.Name())
		if st, err := f.Stat(); failDirs != nil && err == nil && st.IsDir() {
			return failDirs
		}
		return f.Sync()
	}
	t.Cleanup(func() { fsync = old })
	return &synced
}

// TestWriteSyncsFileThenDirectory: a durable write fsyncs the data before
// the rename and the directory after it, so that a power loss cannot
// undo the rename of a write reported done (before, the directory was not
// synced: the old file, or no file, could come back). NoSync syncs
// nothing, for callers that write often on purpose (contact.json).
func TestWriteSyncsFileThenDirectory(t *testing.T) {
	for _, tt := range []struct {
		name  string
		write func(p string) error
		want  func(dir, p string) []string
	}{
		{"WriteFile", func(p string) error { return WriteFile(p, []byte("x"), 0o600) },
			func(dir, p string) []string { return []string{"tmp", dir} }},
		{"Write", func(p string) error {
			return Write(p, 0o600, func(w io.Writer) error { _, err := w.Write([]byte("x")); return err })
		}, func(dir, p string) []string { return []string{"tmp", dir} }},
		{"WriteJSON", func(p string) error { return WriteJSON(p, 1) },
			func(dir, p string) []string { return []string{"tmp", dir} }},
		{"NoSync", func(p string) error { return WriteFile(p, []byte("x"), 0o600, NoSync()) },
			func(dir, p string) []string { return nil }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "state.json")
			for _, round := range []string{"new file", "replaced"} {
				synced := recordSyncs(t, nil)
				if err := tt.write(p); err != nil {
					t.Fatal(err)
				}
				got := *synced
				if len(got) > 0 && filepath.Dir(got[0]) == dir && strings.HasPrefix(filepath.Base(got[0]), ".state.json.tmp-") {
					got[0] = "tmp"
				}
				if want := tt.want(dir, p); !slices.Equal(got, want) {
					t.Fatalf("%s: synced %q, want %q", round, got, want)
				}
			}
		})
	}
}

// TestWriteDirSyncFails: an error syncing the directory is returned (the
// writer must not believe the write durable), and says so; the new
// content is in place.
func TestWriteDirSyncFails(t *testing.T) {
	p := filepath.Join(t.TempDir(), "state.json")
	boom := errors.New("EIO")
	recordSyncs(t, boom)
	err := WriteFile(p, []byte("new"), 0o600)
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "sync directory") {
		t.Fatalf("err %v, want the directory's sync error", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "new" {
		t.Fatalf("content %q, want the new one (the rename was done)", b)
	}
}

// TestWriteJSONSyncsNewDirs: the directories WriteJSON makes are synced
// into their parents, top down, before the file is written; a directory
// that exists costs no sync.
func TestWriteJSONSyncsNewDirs(t *testing.T) {
	root := t.TempDir()
	p := filepath.Join(root, "a", "b", "state.json")
	synced := recordSyncs(t, nil)
	if err := WriteJSON(p, 1); err != nil {
		t.Fatal(err)
	}
	got := *synced
	want := []string{root, filepath.Join(root, "a"), "tmp", filepath.Join(root, "a", "b")}
	if len(got) == 4 && strings.HasPrefix(filepath.Base(got[2]), ".state.json.tmp-") {
		got[2] = "tmp"
	}
	if !slices.Equal(got, want) {
		t.Fatalf("synced %q, want %q", got, want)
	}
}
