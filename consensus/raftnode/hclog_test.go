package raftnode

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestHclogAdapter(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug - 4}))
	h := newHclog(logger, "raft", hclog.Info).Named("net").With("peer", "n2")
	h.Debug("hidden")
	h.Info("entering follower state", "term", 3)
	h.StandardLogger(nil).Print("[WARN] from std logger")
	out := buf.String()
	if strings.Contains(out, "hidden") {
		t.Fatalf("debug line passed the Info level: %s", out)
	}
	for _, want := range []string{"entering follower state", "component=raft.net", "peer=n2", "term=3", "level=WARN", "from std logger"} {
		if !strings.Contains(out, want) {
			t.Fatalf("missing %q in %s", want, out)
		}
	}
	h.SetLevel(hclog.Trace)
	if !h.IsTrace() || h.Name() != "raft.net" {
		t.Fatal("level or name not applied")
	}
}
