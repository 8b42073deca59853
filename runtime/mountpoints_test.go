package runtime

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/runtime/layout"
	"github.com/shoal-org/shoal/runtime/mountlayer"
	"github.com/shoal-org/shoal/runtime/ocispec"
	"github.com/shoal-org/shoal/runtime/record"
	"github.com/shoal-org/shoal/runtime/rootfs"
)

// specMounts is the mount list of a container as prepare builds it.
func specMounts(t *testing.T, edit func(*ocispec.SpecInput)) []specs.Mount {
	t.Helper()
	in := ocispec.SpecInput{
		InitBinary:     "/usr/lib/shoal/shoal-init",
		HostsPath:      "/d/hosts",
		HostnamePath:   "/d/hostname",
		ResolvConfPath: "/d/resolv.conf",
		VolumesDir:     "/vols",
	}
	if edit != nil {
		edit(&in)
	}
	ms, err := ocispec.Mounts(in)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

func needRootOnly(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (whiteouts, opaque marks and owners)")
	}
}

// TestEnsureMountLayer: the layer is built once with the planned owners and
// modes, concurrent callers share it, and another plan gets another dir.
func TestEnsureMountLayer(t *testing.T) {
	needRootOnly(t)
	root := t.TempDir()
	r := &Runtime{cfg: Config{Root: root}, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		mountLayers: &mountlayer.Store{Dir: filepath.Join(root, mountLayersDir)}}
	entries := []mountlayer.Entry{
		{Path: "/.shoal", Dir: true, Mode: 0o755},
		{Path: "/.shoal/init", Mode: 0o644},
		{Path: "/etc", Dir: true, Mode: 0o2700, UID: 1000, GID: 1001},
		{Path: "/etc/hosts", Mode: 0o644},
	}
	var wg sync.WaitGroup
	dirs := make([]string, 8)
	errs := make([]error, 8)
	for i := range dirs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dirs[i], errs[i] = r.mountLayers.Ensure(entries)
		}()
	}
	wg.Wait()
	for i := range dirs {
		if errs[i] != nil || dirs[i] != dirs[0] {
			t.Fatalf("call %d: %q %v, want %q", i, dirs[i], errs[i], dirs[0])
		}
	}
	ents, _ := os.ReadDir(filepath.Join(r.cfg.Root, mountLayersDir))
	if len(ents) != 1 || ents[0].Name() != filepath.Base(dirs[0]) {
		t.Fatalf("layers dir holds %v", ents)
	}
	for _, e := range entries {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(dirs[0], e.Path), &st); err != nil {
			t.Fatal(err)
		}
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		if isDir != e.Dir || st.Mode&0o7777 != e.Mode || st.Uid != e.UID || st.Gid != e.GID || (!isDir && st.Size != 0) {
			t.Errorf("%s: mode %o uid %d gid %d size %d, want %+v", e.Path, st.Mode, st.Uid, st.Gid, st.Size, e)
		}
	}
	// Nothing else in it.
	n := 0
	filepath.Walk(dirs[0], func(string, os.FileInfo, error) error { n++; return nil })
	if n != len(entries)+1 {
		t.Errorf("layer holds %d entries, want %d", n-1, len(entries))
	}
	other, err := r.mountLayers.Ensure(entries[:2])
	if err != nil || other == dirs[0] {
		t.Fatalf("another plan: %q %v", other, err)
	}

	// pruneMountLayers keeps what a record names and removes the rest,
	// temp leftovers included, but nothing it did not make.
	os.Mkdir(filepath.Join(r.cfg.Root, mountLayersDir, ".tmp-123"), 0o700)
	os.Mkdir(filepath.Join(r.cfg.Root, mountLayersDir, "README"), 0o700)
	r.containers = map[string]*container{"a": {rec: record.Record{ID: "a", MountLayer: dirs[0]}}, "b": {rec: record.Record{ID: "b"}}}
	r.pruneMountLayers()
	var left []string
	ents, _ = os.ReadDir(filepath.Join(r.cfg.Root, mountLayersDir))
	for _, e := range ents {
		left = append(left, e.Name())
	}
	want := []string{"README", filepath.Base(dirs[0])}
	sort.Strings(want)
	if !reflect.DeepEqual(left, want) {
		t.Errorf("after prune: %v, want %v", left, want)
	}
}

// TestWithMountLayerFallsBack: a layer that would push the overlay's options
// past a page is left out (the image's layers alone still mount), and so is
// everything when there is nothing to create.
func TestWithMountLayerFallsBack(t *testing.T) {
	needRootOnly(t)
	root := t.TempDir()
	r := &Runtime{cfg: Config{Root: root}, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		mountLayers: &mountlayer.Store{Dir: filepath.Join(root, mountLayersDir)}}
	p := layout.For(r.cfg.Root, record.NewID(), "")
	ms := specMounts(t, nil)
	base := []string{filepath.Join(t.TempDir(), "missing-layer")} // an empty image: every mountpoint is new
	ml, err := r.mountLayers.For(base, ms)
	if err != nil || ml == "" {
		t.Fatalf("layer %q %v", ml, err)
	}
	got, gotML := r.withMountLayer("x", base, ms, p)
	if gotML != ml || !reflect.DeepEqual(got, append(cloneStrings(base), ml)) {
		t.Fatalf("short stack: %v %q", got, gotML)
	}
	// Pad the image's layers until they fit a page alone but not with ml.
	long := cloneStrings(base)
	for {
		opts, err := rootfs.Options(long, p.Upper, p.Work)
		if err != nil {
			t.Fatal(err)
		}
		room := os.Getpagesize() - 1 - len(opts) // bytes left
		if room <= len(ml) {
			break
		}
		n := min(room-1, 200) // ":" + the name
		long = append([]string{"/" + strings.Repeat("l", n-1)}, long...)
	}
	if _, err := rootfs.Options(long, p.Upper, p.Work); err != nil {
		t.Fatalf("padded stack does not fit alone: %v", err)
	}
	got, gotML = r.withMountLayer("x", long, ms, p)
	if gotML != "" || !reflect.DeepEqual(got, long) {
		t.Fatalf("long stack: %d layers, layer %q", len(got), gotML)
	}
	// Nothing to create: no layer.
	if got, gotML := r.withMountLayer("x", base, nil, p); gotML != "" || !reflect.DeepEqual(got, base) {
		t.Fatalf("no mounts: %v %q", got, gotML)
	}
}

func cloneStrings(s []string) []string { return append([]string(nil), s...) }
