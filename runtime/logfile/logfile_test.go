package logfile

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/containerinit"
)

// openFDsTo counts this process's file descriptors open on path.
func openFDsTo(t *testing.T, path string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && l == path {
			n++
		}
	}
	return n
}

// drain runs Send to its end and returns the messages it sent.
func drain(s *Stream, running func() bool) []string {
	ch := make(chan api.LogLine, 64)
	done := make(chan struct{})
	var got []string
	go func() {
		defer close(done)
		for l := range ch {
			got = append(got, l.Line)
		}
	}()
	s.Send(context.Background(), nil, running, ch)
	close(ch)
	<-done
	return got
}

func writeLines(t *testing.T, path string, msgs ...string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, m := range msgs {
		if _, err := f.WriteString(`{"time":"2026-12-01T00:00:00Z","stream":"stdout","line":"` + m + `"}` + "\n"); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFollowClosesLaterFile: a follower started before the container wrote
// anything opens the log file once it appears, and closes it when it ends
// (it used to keep it open for the agent's lifetime, one descriptor per
// such `logs -f`).
func TestFollowClosesLaterFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, containerinit.LogFile)
	s, err := Open(dir, 3, Options{Follow: true}, func(err error) { t.Error(err) })
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	running := func() bool {
		calls++
		if calls == 2 {
			writeLines(t, path, "hello")
		}
		return calls < 4
	}
	got := drain(s, running)
	if strings.Join(got, ",") != "hello" {
		t.Fatalf("sent %q, want [hello]", got)
	}
	if n := openFDsTo(t, path); n != 0 {
		t.Fatalf("%d descriptors still open on %s after Send returned", n, path)
	}
}

// TestFollowRotationToUnopenableFile: after a rotation the new current file
// cannot be opened (here a symlink, which is never followed) and the
// container has exited: Send returns with what it read. It used to close
// the nil reader on its way out, a panic that took the agent down.
func TestFollowRotationToUnopenableFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, containerinit.LogFile)
	writeLines(t, path, "a")
	s, err := Open(dir, 3, Options{Follow: true}, func(err error) { t.Error(err) })
	if err != nil {
		t.Fatal(err)
	}
	writeLines(t, path, "b")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", path); err != nil {
		t.Fatal(err)
	}
	got := drain(s, func() bool { return false })
	if strings.Join(got, ",") != "a,b" {
		t.Fatalf("sent %q, want [a b]", got)
	}
	if n := openFDsTo(t, path+".1"); n != 0 {
		t.Fatalf("%d descriptors still open on the rotated file", n)
	}
}
