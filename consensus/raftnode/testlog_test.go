package raftnode

import (
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// testLogWriter passes raft's lines to t.Log, which prints them only when
// the test fails (or with -v): a flake in CI then shows raft's own account
// of the elections. Lines after the test ended are dropped (t.Log would
// panic), which is what stop is for.
type testLogWriter struct {
	mu      sync.Mutex
	t       *testing.T
	stopped bool
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testLogWriter) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
}

// testLogger returns a logger for node id's raft that writes through t.Log
// at Debug (raft's elections, pre-votes and terms), silenced once the test
// and its cleanups have ended. Register it before the cluster's shutdown
// cleanup, so that it is silenced after raft stopped.
func testLogger(w *testLogWriter, id string) (*slog.Logger, hclog.Level) {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", id), hclog.Debug
}
