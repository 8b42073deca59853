package shell

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestWrap(t *testing.T) {
	for _, tc := range []struct {
		ctx, err, want string
	}{
		{"remove secret db", "remove secret db: used by service app: already in use", "remove secret db: used by service app: already in use"},
		{"remove secret db", "secret db: not found", "remove secret db: secret db: not found"},
		{"create service web", "create service webby: exists", "create service web: create service webby: exists"},
		{"create service web", "create service web", "create service web: create service web"},
	} {
		if got := Wrap(tc.ctx, errors.New(tc.err)).Error(); got != tc.want {
			t.Errorf("Wrap(%q, %q) = %q, want %q", tc.ctx, tc.err, got, tc.want)
		}
	}
	if Wrap("x", nil) != nil {
		t.Error("Wrap of nil is not nil")
	}
	base := errors.New("base")
	if !errors.Is(Wrap("x", base), base) {
		t.Error("Wrap does not keep the error chain")
	}
}

// TestWrapOp: the operation is named once, whether the agent's error
// names it (with or without the object) or not (the write path's
// "no quorum").
func TestWrapOp(t *testing.T) {
	for _, tc := range []struct {
		op, name, err, want string
	}{
		{"create network", "n1", "no quorum: the write was not applied", "create network n1: no quorum: the write was not applied"},
		{"create network", "n1", "create network: a network named n1 exists (x): name taken", "create network: a network named n1 exists (x): name taken"},
		{"create secret", "s1", "create secret s1: 600000 bytes, at most 512000 allowed", "create secret s1: 600000 bytes, at most 512000 allowed"},
		{"create secret", "s1", "create secrets-store: x", "create secret s1: create secrets-store: x"},
		{"create config", "c-1_a", "Post \"http://shoal/v1/configs\": EOF", "create config c-1_a: Post \"http://shoal/v1/configs\": EOF"},
	} {
		if got := WrapOp(tc.op, tc.name, errors.New(tc.err)).Error(); got != tc.want {
			t.Errorf("WrapOp(%q, %q, %q) = %q, want %q", tc.op, tc.name, tc.err, got, tc.want)
		}
	}
	if WrapOp("x", "y", nil) != nil {
		t.Error("WrapOp of nil is not nil")
	}
	base := errors.New("base")
	if !errors.Is(WrapOp("x", "y", base), base) {
		t.Error("WrapOp does not keep the error chain")
	}
}

// TestOpenInputError: a missing file is named once ("open F: no such file
// or directory"), not "open F: open F: ...".
func TestOpenInputError(t *testing.T) {
	name := filepath.Join(t.TempDir(), "missing")
	_, err := (&Shell{}).OpenInput(name)
	if err == nil || err.Error() != "open "+name+": no such file or directory" || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("OpenInput(missing) = %v", err)
	}
}

// TestOpenInputContextFIFO: `image import ./fifo` / `image load -i ./fifo`
// with no writer returned only when killed: open(2) of a FIFO waits for a
// writer and Ctrl-C only cancels the command's context. Now it returns
// when the context ends, and a plain file still opens.
func TestOpenInputContextFIFO(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	s := &Shell{}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	done := make(chan error, 1)
	go func() {
		in, err := s.OpenInputContext(ctx, fifo)
		if in != nil {
			in.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), fifo) {
			t.Fatalf("err = %v, want context.Canceled naming %s", err, fifo)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still opening the FIFO 10s after the context was cancelled")
	}
	// Unblock the opener left behind; it closes what it opened.
	if f, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
		f.Close()
	}

	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	in, err := s.OpenInputContext(context.Background(), plain)
	if err != nil {
		t.Fatal(err)
	}
	in.Close()
	if _, err := s.OpenInputContext(context.Background(), filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: err = %v", err)
	}
}
