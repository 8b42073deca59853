package runtime

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shoal-org/shoal/runtime/rmtree/rmtreetest"
)

// TestDeepTreesRemoved: a chain of directories deeper than the agent may
// open files, in the state dir a restart deletes and in the writable layer
// a remove deletes, goes whole; a link to outside in them is removed, not
// followed.
func TestDeepTreesRemoved(t *testing.T) {
	cfg := testConfig(t)
	h := startHarness(t, cfg)
	c, _ := h.runToExit(t, Spec{Command: []string{"true"}})
	p := pathsOnDisk(t, cfg, c.ID)
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "keep"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{p.State, p.Upper} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(outside, filepath.Join(d, "out")); err != nil {
			t.Fatal(err)
		}
		rmtreetest.DeepChain(t, d, 3000, 0)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	rmtreetest.WithNofile(t, 1024, func() {
		_, err = h.rt.Start(ctx, c.ID)
	})
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	if _, err := os.Lstat(p.State); err == nil {
		t.Errorf("the restart left %s", p.State)
	}
	h.wait(t, c.ID)
	rmtreetest.WithNofile(t, 1024, func() {
		err = h.rt.Remove(ctx, c.ID, false)
	})
	if err != nil {
		if s := err.Error(); len(s) > 500 {
			err = fmt.Errorf("%s… (%d bytes)", s[:500], len(s))
		}
		t.Errorf("remove: %v", err)
	}
	if _, err := os.Lstat(p.Dir); err == nil {
		t.Errorf("the remove left %s", p.Dir)
	}
	if _, err := os.Stat(filepath.Join(outside, "keep")); err != nil {
		t.Errorf("the links' target: %v", err)
	}
}
