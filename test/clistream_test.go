package test

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/shoal-org/shoal/test/harness"
)

// lineStream runs a CLI command on h and collects its stdout lines.
type lineStream struct {
	mu    sync.Mutex
	lines []string
	done  chan struct{}
	err   error
}

func startLineStream(t *testing.T, c *harness.Cluster, h *harness.Host, args ...string) *lineStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	argv := append([]string{"--host", "unix://" + h.Socket}, args...)
	cmd := exec.CommandContext(ctx, c.Bin, argv...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &lineStream{done: make(chan struct{})}
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			s.mu.Lock()
			s.lines = append(s.lines, sc.Text())
			s.mu.Unlock()
		}
		err := cmd.Wait()
		s.mu.Lock()
		if err != nil && ctx.Err() == nil {
			s.err = fmt.Errorf("shoal %s: %w: %s", strings.Join(args, " "), err, stderr.String())
		}
		s.mu.Unlock()
	}()
	t.Cleanup(func() { cancel(); <-s.done })
	return s
}

// snapshot returns the lines printed so far and the command's error.
func (s *lineStream) snapshot() ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lines...), s.err
}

// has reports whether a line starting with prefix was printed.
func (s *lineStream) has(prefix string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.lines {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

func (s *lineStream) ended() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}
