package runtime

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/runtime/containerinit"
)

// TestContainerLogOptions: a container's own log rotation (a service's
// --log-opt max-size, max-file) reaches the supervisor in place of the
// node's, and LogNone keeps no log and makes Logs say so.
func TestContainerLogOptions(t *testing.T) {
	cfg := testConfig(t) // the node's rotation: 10 MiB × 3
	h := startHarness(t, cfg)

	c, _ := h.runToExit(t, Spec{Command: []string{"sh", "-c", "seq 1 5000"}, LogMaxSize: 4096, LogMaxFiles: 2})
	files, err := filepath.Glob(filepath.Join(cfg.Root, "containers", c.ID, "log", containerinit.LogFile+"*"))
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		total += fi.Size()
	}
	// 5000 lines are ~300 KB of JSON lines: with the node's rotation all
	// of it stays in one file.
	if len(files) != 2 || total > 2*4096 {
		t.Errorf("log files %v, %d bytes; want 2 files of at most 4096 bytes each", files, total)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ch, err := h.rt.Logs(ctx, c.ID, LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var last string
	for l := range ch {
		last = l.Line
	}
	if last != "5000" {
		t.Errorf("last line read %q, want 5000", last)
	}

	noneID, _ := h.runToExitNoLogs(t, Spec{Image: "busybox", Command: []string{"sh", "-c", "seq 1 100"}, LogNone: true})
	files, _ = filepath.Glob(filepath.Join(cfg.Root, "containers", noneID, "log", "*"))
	if len(files) != 0 {
		t.Errorf("log driver none left log files %v", files)
	}
	if _, err := h.rt.Logs(ctx, noneID, LogOptions{}); !errors.Is(err, ErrLogsDisabled) ||
		!strings.Contains(err.Error(), "configured logging driver does not support reading") {
		t.Errorf("Logs of a container without a log: %v, want ErrLogsDisabled", err)
	}
}

// runToExitNoLogs runs spec to its end without reading its logs.
func (h *harness) runToExitNoLogs(t *testing.T, spec Spec) (string, error) {
	t.Helper()
	c := h.run(t, spec)
	return h.wait(t, c.ID).ID, nil
}
