package atomicfile

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
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
