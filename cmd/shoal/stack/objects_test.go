package stack

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/cmd/shoal/compose"
)

// TestReadStackObjectsBoundedRead: a compose file whose secret file: is
// a FIFO no one writes to (open blocks for good), or a file past the size
// limit, is refused at once with nothing created, instead of hanging the
// deploy or being read whole.
func TestReadStackObjectsBoundedRead(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, bytes.Repeat([]byte("x"), api.MaxSecretSize+4096), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ file, want string }{
		{fifo, "not a regular file"},
		{big, "nothing was created"},
	} {
		done := make(chan error, 1)
		go func() {
			objs := []compose.StackObject{{Secret: true, Key: "k", Name: "s_k", File: tc.file}}
			done <- readStackObjects(objs)
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%s: err = %v, want %q", tc.file, err, tc.want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: still reading the secret file after 10s", tc.file)
		}
	}
}
