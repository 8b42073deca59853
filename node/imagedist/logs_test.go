package imagedist

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/authz"
	"github.com/shoal-org/shoal/node/clusterport"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/wire"
	"github.com/shoal-org/shoal/runtime"
)

// startLogHolder serves logs over the real cluster port with limits;
// without multi it is an agent that predates MethodLogsMulti.
func startLogHolder(t *testing.T, logs Logs, multi bool, limits clusterport.Limits) *holder {
	t.Helper()
	h := &holder{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	methods := func(method string) clusterport.Handler {
		if method != wire.MethodLogs && (method != wire.MethodLogsMulti || !multi) {
			return nil
		}
		return func(ctx context.Context, call *clusterport.Call) {
			h.mu.Lock()
			h.calls = append(h.calls, method)
			h.mu.Unlock()
			if method == wire.MethodLogs {
				ServeLogs(ctx, logs, call)
				return
			}
			ServeLogsMulti(ctx, logs, call)
		}
	}
	m := clusterport.NewMux(clusterport.MuxConfig{
		Listener: ln, TLS: pki.ServerTLS(certFor(t, "holder"), ca(t).Pool(), nil),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		RPC: func(c *tls.Conn) { clusterport.Serve(ctx, c, methods) },
	})
	m.SetLimits(limits)
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return h
}

// followLogs is a runtime that has one line per container ("line of ID")
// and then follows until ctx ends; "gone" cannot be read.
func followLogs(ctx context.Context, id string, _ runtime.LogOptions) (<-chan api.LogLine, error) {
	if id == "gone" {
		return nil, errors.New("no such container")
	}
	ch := make(chan api.LogLine, 1)
	ch <- api.LogLine{Stream: "stdout", Line: "line of " + id}
	go func() { <-ctx.Done(); close(ch) }()
	return ch, nil
}

// collectAll follows ids on the node at addr until every container but
// "gone" has sent its line, and returns the lines by index.
func collectAll(t *testing.T, addr string, ids []string) map[int]string {
	t.Helper()
	want := 0
	for _, id := range ids {
		if id != "gone" {
			want++
		}
	}
	var mu sync.Mutex
	got := map[int]string{}
	err := RemoteLogsMulti(ctx(t), caller(t), addr, ids, runtime.LogOptions{Follow: true}, func(i int, l api.LogLine) bool {
		mu.Lock()
		defer mu.Unlock()
		got[i] = l.Line
		return len(got) < want
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestLogsMultiFollowsMoreContainersThanPeerConnections: following 600
// containers of one node takes one connection per 512 of them, so it works
// where a peer may open two connections only; one container gone does not
// end the others' lines.
func TestLogsMultiFollowsMoreContainersThanPeerConnections(t *testing.T) {
	h := startLogHolder(t, followLogs, true, clusterport.Limits{MaxConns: 100, MaxAnon: 10, MaxAnonPerIP: 10, MaxPerPeer: 2})
	ids := make([]string, 600)
	for i := range ids {
		ids[i] = fmt.Sprintf("c%03d", i)
	}
	ids[7] = "gone"
	got := collectAll(t, h.addr, ids)
	for i, id := range ids {
		if id == "gone" {
			if _, ok := got[i]; ok {
				t.Errorf("a line for the gone container")
			}
			continue
		}
		if got[i] != "line of "+id {
			t.Fatalf("container %d: got %q, want %q", i, got[i], "line of "+id)
		}
	}
	if calls := h.served(); len(calls) != 2 || calls[0] != wire.MethodLogsMulti {
		t.Errorf("served %v, want two %s calls", calls, wire.MethodLogsMulti)
	}
}

// TestLogsMultiFallsBackToPerContainer: an agent that predates
// MethodLogsMulti is asked one connection per container, as before.
func TestLogsMultiFallsBackToPerContainer(t *testing.T) {
	h := startLogHolder(t, followLogs, false, clusterport.DefaultLimits())
	ids := []string{"a", "b", "c"}
	got := collectAll(t, h.addr, ids)
	for i, id := range ids {
		if got[i] != "line of "+id {
			t.Errorf("container %d: got %q", i, got[i])
		}
	}
	n := 0
	for _, m := range h.served() {
		if m == wire.MethodLogs {
			n++
		}
	}
	if n != len(ids) {
		t.Errorf("served %v, want %d %s calls", h.served(), len(ids), wire.MethodLogs)
	}
}

// TestGuardLogsMulti: a MethodLogsMulti request names 1 to
// MaxLogsContainers containers, and only a task's container is read.
func TestGuardLogsMulti(t *testing.T) {
	g := Guard{Container: func(id string) (api.Container, error) {
		switch id {
		case "task":
			return api.Container{ID: id, TaskID: "t1"}, nil
		case "run":
			return api.Container{ID: id}, nil
		}
		return api.Container{}, errors.New("no such container")
	}}
	for _, n := range []int{0, wire.MaxLogsContainers + 1} {
		body := fmt.Sprintf(`{"container_ids":[%s]}`, repeatID(n))
		if err := g.Check(wire.Request{Method: wire.MethodLogsMulti, Body: []byte(body)}); err == nil {
			t.Errorf("%d containers: accepted", n)
		}
	}
	if err := g.Check(wire.Request{Method: wire.MethodLogsMulti, Body: []byte(`{"container_ids":["task","run"]}`)}); err != nil {
		t.Errorf("shape refused: %v", err)
	}
	logs := g.TaskOnly(followLogs)
	if _, err := logs(ctx(t), "run", runtime.LogOptions{}); !errors.Is(err, authz.ErrForbidden) {
		t.Errorf("a run container's logs: %v, want forbidden", err)
	}
	if _, err := logs(ctx(t), "task", runtime.LogOptions{}); err != nil {
		t.Errorf("a task container's logs: %v", err)
	}
}

func repeatID(n int) string {
	s := ""
	for i := range n {
		if i > 0 {
			s += ","
		}
		s += `"x"`
	}
	return s
}
