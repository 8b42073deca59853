package runtime

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/runtime/image"
	"github.com/shoal-org/shoal/runtime/image/imagetest"
)

var _ ImageResolver = (*image.Store)(nil)

// TestWithImageStore runs a container from an image imported into the real
// image store (one layer unpacked by the store, used as the overlay lowerdir).
func TestWithImageStore(t *testing.T) {
	cfg := testConfig(t)
	dir := t.TempDir()
	store, err := image.Open(image.DefaultConfig(filepath.Join(dir, "images")))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(imagetest.BusyboxRootfsTar(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := store.Import(context.Background(), f, "bb:1")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Images = store
	h := startHarness(t, cfg)
	c, logs := h.runToExit(t, Spec{Image: "bb:1", Command: []string{"cat", "/www/index.html"}})
	if c.ExitCode != 0 || !strings.Contains(logs, "hello from shoal") || c.ImageID != img.ID {
		t.Errorf("exit %d image %s logs %q", c.ExitCode, c.ImageID, logs)
	}
	if !h.rt.ImageInUse(img.ID) {
		t.Error("image of an existing container not reported in use")
	}
}
