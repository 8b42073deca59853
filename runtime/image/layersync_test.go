package image

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestLayerSyncedBeforeInstall: a layer's unpacked files are flushed while
// the layer is still under its temporary name, so a layer dir found under
// its real name after a power loss is whole; a failed flush installs
// nothing and leaves no temporary dir.
func TestLayerSyncedBeforeInstall(t *testing.T) {
	s, err := Open(DefaultConfig(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	const diffID = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	dst := s.layerPath(diffID)
	saved := syncLayer
	defer func() { syncLayer = saved }()

	for _, fail := range []bool{false, true} {
		tmp, err := s.layerTemp()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(tmp, "bin"), 0o755); err != nil {
			t.Fatal(err)
		}
		var synced []string
		syncLayer = func(dir string) error {
			if _, err := os.Stat(dst); err == nil {
				t.Errorf("layer installed before its files were flushed")
			}
			synced = append(synced, dir)
			if fail {
				return errors.New("EIO")
			}
			return nil
		}
		err = s.installLayer(tmp, diffID)
		if len(synced) != 1 || synced[0] != tmp {
			t.Fatalf("fail=%v: synced %q, want the temporary dir %q once", fail, synced, tmp)
		}
		_, dstErr := os.Stat(dst)
		_, tmpErr := os.Stat(tmp)
		switch {
		case !fail && (err != nil || dstErr != nil):
			t.Fatalf("install: %v, layer dir: %v", err, dstErr)
		case fail && (err == nil || dstErr == nil || tmpErr == nil):
			t.Fatalf("failed flush: err %v, layer dir %v, temporary dir %v: want an error and neither dir", err, dstErr, tmpErr)
		}
		if !fail {
			if err := os.RemoveAll(dst); err != nil {
				t.Fatal(err)
			}
		}
	}
}
