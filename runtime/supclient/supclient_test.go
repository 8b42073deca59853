package supclient

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

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

// fakeSupervisor answers every connection's first line with reply(req).
func fakeSupervisor(t *testing.T, reply func(supervisor.Request) supervisor.Reply) string {
	t.Helper()
	root := t.TempDir()
	ln, err := net.Listen("unix", supervisor.ShortSockPath(filepath.Join(root, supervisor.SockFile)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			br := bufio.NewReader(conn)
			line, err := supervisor.ReadLine(br, supervisor.MaxRequest)
			var req supervisor.Request
			if err == nil && json.Unmarshal(line, &req) == nil {
				_ = supervisor.WriteLine(conn, reply(req))
			}
			conn.Close()
		}
	}()
	return root
}

// The lease ops against supervisors of three releases: the current one
// takes "leases" (refusals by ID), the one before takes "fence" only, and
// an older one knows neither: ErrNoLease, whose message says what it
// means and how to replace the supervisor.
func TestLeaseOps(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	current := fakeSupervisor(t, func(req supervisor.Request) supervisor.Reply {
		if req.Op != "leases" {
			return supervisor.Reply{Error: "unexpected op " + req.Op}
		}
		failed := map[string]string{}
		for _, l := range req.Leases {
			if l.ID == "gone" {
				failed[l.ID] = "container gone is not supervised"
			}
		}
		return supervisor.Reply{Failed: failed}
	})
	old := fakeSupervisor(t, func(req supervisor.Request) supervisor.Reply {
		return supervisor.Reply{Error: fmt.Sprintf("unknown op %q", req.Op)}
	})
	c := New(current, "/nonexistent", log)
	failed, err := c.Leases(context.Background(), []supervisor.Lease{{ID: "a", FenceAfterMs: 5000}, {ID: "gone", FenceAfterMs: 5000}})
	if err != nil || len(failed) != 1 || failed["gone"] == nil {
		t.Fatalf("Leases = %v, %v; want only gone refused", failed, err)
	}
	o := New(old, "/nonexistent", log)
	if err := o.Fence(context.Background(), "a", time.Second, 0, 15); !errors.Is(err, ErrNoLease) {
		t.Fatalf("Fence to a supervisor without leases = %v, want ErrNoLease", err)
	}
	if _, err := o.Leases(context.Background(), []supervisor.Lease{{ID: "a"}}); err == nil {
		t.Fatal("Leases to a supervisor without them succeeded")
	}
}
