package supclient

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"

	"github.com/shoal-org/shoal/runtime/supervisor"
)

// TestTakesBundle: the client learns from the answer to "watch" whether the
// supervisor runs a bundle kept apart from the container's dir; one from
// before Request.Bundle does not say so.
func TestTakesBundle(t *testing.T) {
	for _, tt := range []struct {
		name  string
		reply supervisor.Reply
		want  bool
	}{
		{"current supervisor", supervisor.Reply{Running: map[string]int{}, Bundle: true}, true},
		{"supervisor from before Request.Bundle", supervisor.Reply{Running: map[string]int{"a": 1}}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			ln, err := net.Listen("unix", supervisor.ShortSockPath(filepath.Join(root, supervisor.SockFile)))
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				defer conn.Close()
				br := bufio.NewReader(conn)
				if _, err := supervisor.ReadLine(br, supervisor.MaxRequest); err != nil {
					return
				}
				_ = supervisor.WriteLine(conn, tt.reply)
				_, _ = io.Copy(io.Discard, br)
			}()
			c := New(root, "/nonexistent", slog.New(slog.NewTextHandler(io.Discard, nil)))
			if c.TakesBundle() {
				t.Fatal("TakesBundle before any watch")
			}
			running, conn, _, err := c.Watch(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if len(running) != len(tt.reply.Running) {
				t.Errorf("running %v", running)
			}
			if got := c.TakesBundle(); got != tt.want {
				t.Errorf("TakesBundle = %v, want %v", got, tt.want)
			}
		})
	}
}
