package volume

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/runtime/rmtree/rmtreetest"
)

// TestRemoveDeepTree: a volume whose data holds a chain of directories
// deeper than the agent may open files is removed whole, and a link to
// outside the volume in it is removed, not followed; so is what a crash
// left of such a remove, when the store is opened again.
func TestRemoveDeepTree(t *testing.T) {
	v, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Create("deep", func(string) []string { return nil }); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(v.Dir, "deep", "_data")
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "keep"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(data, "out")); err != nil {
		t.Fatal(err)
	}
	rmtreetest.DeepChain(t, data, 3000, 0)
	rmtreetest.WithNofile(t, 1024, func() {
		err = v.Remove("deep", func(string) []string { return nil })
	})
	if err != nil {
		if len(err.Error()) > 500 {
			err = fmt.Errorf("%s… (%d bytes)", err.Error()[:500], len(err.Error()))
		}
		t.Errorf("a 3000-deep tree cannot be removed with 1024 descriptors: %v", err)
	}
	ents, _ := os.ReadDir(v.Dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), TrashPrefix) || e.Name() == "deep" {
			t.Errorf("%s left in the volumes dir", e.Name())
		}
	}
	if _, err := os.Stat(filepath.Join(outside, "keep")); err != nil {
		t.Errorf("the link's target: %v", err)
	}

	// What a crash in the middle of such a remove left goes at the next
	// start.
	left := filepath.Join(v.Dir, TrashPrefix+"deep-0123")
	if err := os.MkdirAll(left, 0o700); err != nil {
		t.Fatal(err)
	}
	rmtreetest.DeepChain(t, left, 3000, 0)
	rmtreetest.WithNofile(t, 1024, func() {
		_, err = New(v.Dir)
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(left); err == nil {
		t.Errorf("%s left after New", left)
	}
}
