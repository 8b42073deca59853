package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-org/shoal/cmd/shoal/shell"
)

// TestReadObjectDataCancelled: `secret create NAME FIFO` with no writer (or
// `-` on a terminal) blocks in open or read; Ctrl-C cancels the command's
// context, and the read must then return at once. It used to hang until
// SIGKILL: `timeout 10 shoal secret create x ./fifo` was still there after
// ten minutes.
func TestReadObjectDataCancelled(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	s := &commands{&shell.Shell{}}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	done := make(chan error, 1)
	go func() {
		_, err := s.readObjectData(ctx, fifo)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), fifo) {
			t.Fatalf("err = %v, want context.Canceled naming %s", err, fifo)
		}
	case <-time.After(10 * time.Second):
		// Unblock the open so the test binary can end.
		if f, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			f.Close()
		}
		t.Fatal("still reading the FIFO 10s after the context was cancelled")
	}
}

// TestReadObjectDataDirectory: a directory is named once ("read DIR: is a
// directory"), not twice.
func TestReadObjectDataDirectory(t *testing.T) {
	dir := t.TempDir()
	_, err := (&commands{&shell.Shell{}}).readObjectData(context.Background(), dir)
	if err == nil || err.Error() != "read "+dir+": is a directory" {
		t.Fatalf("err = %v", err)
	}
}
