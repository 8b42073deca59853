package stack

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/cmd/shoal/compose"
)

// TestEnsureStackObjectsBoundedRead: a compose file whose secret file: is
// endless (a fifo that never closes, like /dev/zero) is refused once it
// passed the size limit, instead of read until the CLI runs out of memory.
func TestEnsureStackObjectsBoundedRead(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "endless")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			return
		}
		defer w.Close()
		_, _ = w.Write(bytes.Repeat([]byte("x"), api.MaxSecretSize+4096))
		<-stop // keep the writer open: the reader never sees EOF
	}()
	done := make(chan error, 1)
	go func() {
		objs := []compose.StackObject{{Secret: true, Key: "k", Name: "s_k", File: fifo}}
		done <- (&commands{}).ensureStackObjects(context.Background(), nil, objs)
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "nothing was created") {
			t.Fatalf("err = %v, want the size refusal", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still reading the secret file after 10s")
	}
}
