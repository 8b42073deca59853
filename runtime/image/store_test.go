package image_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/image"
	"github.com/shoal-org/shoal/runtime/image/imagetest"
)

func newStore(t *testing.T, root string, inUse func(string) bool) *image.Store {
	t.Helper()
	cfg := image.DefaultConfig(root)
	cfg.InUse = inUse
	cfg.Now = func() time.Time { return time.Date(2025, 5, 6, 7, 8, 9, 0, time.UTC) }
	s, err := image.Open(cfg)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	return s
}

func countDir(t *testing.T, d string) int {
	t.Helper()
	ents, err := os.ReadDir(d)
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

var webCfg = api.ImageConfig{
	Entrypoint:   []string{"/bin/httpd"},
	Cmd:          []string{"-f", "-p", "8080", "-h", "/www"},
	Env:          []string{"PATH=/bin", "GREETING=hi"},
	WorkingDir:   "/www",
	User:         "nobody",
	ExposedPorts: []string{"8080/tcp"},
	Healthcheck:  &api.HealthConfig{Test: []string{"CMD", "wget", "-q", "-O-", "http://127.0.0.1:8080/"}, Interval: time.Second, Retries: 3},
}

func TestImportResolveRemove(t *testing.T) {
	tmp := t.TempDir()
	rootfs := imagetest.BusyboxRootfsTar(t, tmp)
	s := newStore(t, filepath.Join(tmp, "store"), nil)
	ctx := context.Background()

	raw, err := os.ReadFile(rootfs)
	if err != nil {
		t.Fatal(err)
	}
	// A name docker would refuse is refused before anything is stored.
	if _, err := s.Import(ctx, bytes.NewReader(raw), "Bad:Name"); !errors.Is(err, image.ErrInvalidRef) {
		t.Fatalf("import as Bad:Name: %v, want ErrInvalidRef", err)
	}
	if ims := s.List(); len(ims) != 0 {
		t.Fatalf("a refused import left images %+v", ims)
	}
	img, err := s.Import(ctx, bytes.NewReader(raw), "bb")
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	if len(img.Tags) != 1 || img.Tags[0] != "bb:latest" || len(img.Layers) != 1 || img.Size <= 0 {
		t.Fatalf("import result %+v", img)
	}
	if img.Config == nil || len(img.Config.Cmd) != 0 || img.Source != "import" {
		t.Fatalf("import config %+v source %q", img.Config, img.Source)
	}
	// gzip of the same rootfs: same diffID, so the layer is shared.
	var gzbuf bytes.Buffer
	zw := gzip.NewWriter(&gzbuf)
	_, _ = zw.Write(raw)
	_ = zw.Close()
	img2, err := s.Import(ctx, &gzbuf, "bb:gz")
	if err != nil {
		t.Fatalf("import gz: %v", err)
	}
	if img2.DiffIDs[0] != img.DiffIDs[0] || img2.Layers[0] == img.Layers[0] {
		t.Fatalf("gz import: diffIDs %v vs %v, layers %v vs %v", img2.DiffIDs, img.DiffIDs, img2.Layers, img.Layers)
	}
	if n := countDir(t, filepath.Join(tmp, "store", "layers")); n != 1 {
		t.Fatalf("%d layer dirs, want 1", n)
	}

	for _, ref := range []string{"bb", "bb:latest", "docker.io/library/bb:latest", img.ID, strings.TrimPrefix(img.ID, "sha256:")[:12], img.ID[:20]} {
		got, err := s.Get(ref)
		if err != nil || got.ID != img.ID {
			t.Errorf("Get(%q) = %s, %v", ref, got.ID, err)
		}
	}
	if _, err := s.Get("nope"); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("Get(nope) err = %v", err)
	}

	_, cfg, dirs, err := s.Resolve("bb")
	if err != nil {
		t.Fatalf("resolve: %v", err)
	}
	if len(dirs) != 1 || !filepath.IsAbs(dirs[0]) {
		t.Fatalf("dirs %v", dirs)
	}
	if b, err := os.ReadFile(filepath.Join(dirs[0], "www/index.html")); err != nil || string(b) != imagetest.IndexHTML {
		t.Fatalf("index.html = %q, %v", b, err)
	}
	if l, _ := os.Readlink(filepath.Join(dirs[0], "bin/sh")); l != "busybox" {
		t.Fatalf("bin/sh -> %q", l)
	}
	if len(cfg.Env) == 0 || !strings.HasPrefix(cfg.Env[0], "PATH=") {
		t.Fatalf("imported config env %v", cfg.Env)
	}
	if len(s.List()) != 2 {
		t.Fatalf("list %v", s.List())
	}
	if err := s.Remove("bb"); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if _, err := s.Get("bb"); !errors.Is(err, image.ErrNotFound) {
		t.Fatalf("after remove: %v", err)
	}
}

func TestLoadDockerSaveAndOCI(t *testing.T) {
	tmp := t.TempDir()
	rootfs := imagetest.BusyboxRootfsTar(t, tmp)
	storeDir := filepath.Join(tmp, "store")
	s := newStore(t, storeDir, nil)
	ctx := context.Background()

	shCfg := api.ImageConfig{Cmd: []string{"/bin/sh"}, Env: []string{"PATH=/bin"}}
	for _, tc := range []struct {
		name, archive, tag string
		cfg                api.ImageConfig
	}{
		{"docker-save", imagetest.DockerSaveArchive(t, rootfs, "web:1", webCfg), "web:1", webCfg},
		{"oci", imagetest.OCILayoutArchive(t, rootfs, "shell:oci", shCfg), "shell:oci", shCfg},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := os.Open(tc.archive)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			imgs, err := s.Load(ctx, f)
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			if len(imgs) != 1 || len(imgs[0].Tags) != 1 || imgs[0].Tags[0] != tc.tag {
				t.Fatalf("loaded %+v", imgs)
			}
			_, cfg, dirs, err := s.Resolve(tc.tag)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.Marshal(cfg)
			want, _ := json.Marshal(tc.cfg)
			if !bytes.Equal(got, want) {
				t.Fatalf("config\n got %s\nwant %s", got, want)
			}
			if _, err := os.Stat(filepath.Join(dirs[0], "bin/busybox")); err != nil {
				t.Fatal(err)
			}
		})
	}
	// Two images, one rootfs: the layer is unpacked once.
	if n := countDir(t, filepath.Join(storeDir, "layers")); n != 1 {
		t.Fatalf("%d layer dirs, want 1", n)
	}
	// Loading the same archive again only re-tags: web:1 stays, web:2 is
	// added, and what Load returns has the archive's tag alone (it used to
	// have both, so `image load` printed "Loaded image: web:1" again).
	f, _ := os.Open(imagetest.DockerSaveArchive(t, rootfs, "web:2", webCfg))
	imgs, err := s.Load(ctx, f)
	f.Close()
	if err != nil || len(imgs) != 1 || !slices.Equal(imgs[0].Tags, []string{"web:2"}) {
		t.Fatalf("reload: %+v, %v", imgs, err)
	}
	if got, err := s.Get("web:1"); err != nil || got.ID != imgs[0].ID || len(got.Tags) != 2 {
		t.Fatalf("after the reload web:1 is %+v, %v; want image %s with both tags", got, err, imgs[0].ID)
	}

	// Persistence: a new Store on the same directory sees the same index.
	before := s.List()
	s2 := newStore(t, storeDir, nil)
	after := s2.List()
	b1, _ := json.Marshal(before)
	b2, _ := json.Marshal(after)
	if !bytes.Equal(b1, b2) {
		t.Fatalf("after reopen\n got %s\nwant %s", b2, b1)
	}
}

func TestRemoveInUseAndGC(t *testing.T) {
	tmp := t.TempDir()
	rootfs := imagetest.BusyboxRootfsTar(t, tmp)
	storeDir := filepath.Join(tmp, "store")
	var mu sync.Mutex
	inUse := map[string]bool{}
	s := newStore(t, storeDir, func(id string) bool { mu.Lock(); defer mu.Unlock(); return inUse[id] })
	ctx := context.Background()

	load := func(ref string, cfg api.ImageConfig) api.Image {
		f, err := os.Open(imagetest.DockerSaveArchive(t, rootfs, ref, cfg))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		imgs, err := s.Load(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		return imgs[0]
	}
	a := load("a:1", api.ImageConfig{Cmd: []string{"a"}})
	b := load("b:1", api.ImageConfig{Cmd: []string{"b"}})
	if err := s.Tag("a:1", "a:2"); err != nil {
		t.Fatal(err)
	}
	blobs := filepath.Join(storeDir, "blobs", "sha256")
	if n := countDir(t, blobs); n != 3 {
		t.Fatalf("%d blobs, want 3 (1 layer + 2 configs)", n)
	}

	mu.Lock()
	inUse[a.ID] = true
	mu.Unlock()
	if err := s.Remove("a:1"); err != nil {
		t.Fatalf("untag while other tag remains: %v", err)
	}
	if err := s.Remove("a:2"); !errors.Is(err, image.ErrInUse) {
		t.Fatalf("remove in-use: %v", err)
	}
	mu.Lock()
	inUse[a.ID] = false
	mu.Unlock()
	if err := s.Remove(a.ID[:15]); err != nil {
		t.Fatal(err)
	}
	freed, err := s.GC()
	if err != nil || freed <= 0 {
		t.Fatalf("gc: %d, %v", freed, err)
	}
	if n := countDir(t, blobs); n != 2 {
		t.Fatalf("%d blobs after first gc, want 2", n)
	}
	if _, _, _, err := s.Resolve("b:1"); err != nil {
		t.Fatalf("b broken by gc: %v", err)
	}
	if err := s.Remove(b.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GC(); err != nil {
		t.Fatal(err)
	}
	if countDir(t, blobs) != 0 || countDir(t, filepath.Join(storeDir, "layers")) != 0 {
		t.Fatal("gc left blobs or layers")
	}
}

// archive builds a tar from name -> content.
func archive(t *testing.T, files map[string][]byte) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for n, b := range files {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write(b)
	}
	_ = tw.Close()
	return buf.Bytes()
}

func TestLoadHostile(t *testing.T) {
	tmp := t.TempDir()
	rootfs := imagetest.BusyboxRootfsTar(t, tmp)
	good, err := os.ReadFile(imagetest.DockerSaveArchive(t, rootfs, "x:1", webCfg))
	if err != nil {
		t.Fatal(err)
	}
	// Rewrite a docker-save archive's files.
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(good))
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = b
	}
	var layerName, cfgName string
	for n := range files {
		switch {
		case strings.HasSuffix(n, ".tar.gz"):
			layerName = n
		case strings.HasPrefix(n, "sha256:"):
			cfgName = n
		}
	}
	if layerName == "" || cfgName == "" {
		t.Fatalf("unexpected docker-save layout: %v", files)
	}
	with := func(mod func(map[string][]byte)) []byte {
		c := map[string][]byte{}
		for k, v := range files {
			c[k] = v
		}
		mod(c)
		return archive(t, c)
	}
	ociUnknown := func() []byte {
		// An OCI layout whose manifest has a layer of an unknown media type.
		blob := func(b []byte) (string, []byte) {
			s := fmt.Sprintf("%x", sha256sum(b))
			return "sha256:" + s, b
		}
		layerD, layer := blob([]byte("whatever"))
		cfgD, cfg := blob([]byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["` + layerD + `"]}}`))
		man := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[{"mediaType":"application/x-weird","digest":%q,"size":%d}]}`, cfgD, len(cfg), layerD, len(layer))
		manD, manB := blob([]byte(man))
		idx := fmt.Sprintf(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":%d}]}`, manD, len(manB))
		return archive(t, map[string][]byte{
			"oci-layout": []byte(`{"imageLayoutVersion":"1.0.0"}`), "index.json": []byte(idx),
			"blobs/sha256/" + manD[7:]: manB, "blobs/sha256/" + cfgD[7:]: cfg, "blobs/sha256/" + layerD[7:]: layer,
		})
	}
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"missing layer blob", with(func(m map[string][]byte) { delete(m, layerName) }), image.ErrInvalidArchive},
		{"missing config", with(func(m map[string][]byte) { delete(m, cfgName) }), image.ErrInvalidArchive},
		{"wrong diff_id", with(func(m map[string][]byte) {
			m[cfgName] = bytes.Replace(m[cfgName], []byte(`"diff_ids":["sha256:`), []byte(`"diff_ids":["sha256:0`), 1)
			m[cfgName] = bytes.Replace(m[cfgName], []byte(`"]}`), []byte(`"]}`), 1)
		}), image.ErrInvalidArchive},
		{"corrupt layer", with(func(m map[string][]byte) { m[layerName] = m[layerName][:len(m[layerName])/2] }), image.ErrInvalidArchive},
		{"bad manifest.json", with(func(m map[string][]byte) { m["manifest.json"] = []byte("{") }), image.ErrInvalidArchive},
		{"neither", archive(t, map[string][]byte{"hello": []byte("x")}), image.ErrInvalidArchive},
		{"truncated", good[:len(good)/3], image.ErrInvalidArchive},
		{"oci unknown media type", ociUnknown(), image.ErrUnknownMediaType},
	} {
		t.Run(tc.name, func(t *testing.T) {
			storeDir := filepath.Join(t.TempDir(), "store")
			s := newStore(t, storeDir, nil)
			_, err := s.Load(context.Background(), bytes.NewReader(tc.data))
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			for _, d := range []string{"layers", "blobs/sha256", "images", "tmp"} {
				if n := countDir(t, filepath.Join(storeDir, d)); n != 0 {
					t.Errorf("%s has %d entries left", d, n)
				}
			}
		})
	}
}

// TestLoadUncompressedDockerSave loads the classic `docker save` format whose
// layers are plain layer.tar files.
func TestLoadUncompressedDockerSave(t *testing.T) {
	tmp := t.TempDir()
	rootfs := imagetest.BusyboxRootfsTar(t, tmp)
	good, _ := os.ReadFile(imagetest.DockerSaveArchive(t, rootfs, "old:1", webCfg))
	plain, _ := os.ReadFile(rootfs)
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(good))
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		b, _ := io.ReadAll(tr)
		if strings.HasSuffix(h.Name, ".tar.gz") {
			files["abc/layer.tar"] = plain
			continue
		}
		files[h.Name] = b
	}
	var m []map[string]any
	if err := json.Unmarshal(files["manifest.json"], &m); err != nil {
		t.Fatal(err)
	}
	m[0]["Layers"] = []string{"abc/layer.tar"}
	files["manifest.json"], _ = json.Marshal(m)
	s := newStore(t, filepath.Join(tmp, "store"), nil)
	imgs, err := s.Load(context.Background(), bytes.NewReader(archive(t, files)))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	_, cfg, dirs, err := s.Resolve("old:1")
	if err != nil || cfg.WorkingDir != "/www" || len(dirs) != 1 || len(imgs) != 1 {
		t.Fatalf("resolve: %v %+v %v", err, cfg, dirs)
	}
	if _, err := os.Stat(filepath.Join(dirs[0], "bin/busybox")); err != nil {
		t.Fatal(err)
	}
}

func TestDiffIDMismatch(t *testing.T) {
	tmp := t.TempDir()
	rootfs := imagetest.BusyboxRootfsTar(t, tmp)
	good, _ := os.ReadFile(imagetest.DockerSaveArchive(t, rootfs, "x:1", webCfg))
	// Swap the layer for a different valid layer: the config's diff_id no
	// longer matches what unpacks.
	other := filepath.Join(tmp, "other.tar")
	if err := os.WriteFile(other, archive(t, map[string][]byte{"f": []byte("x")}), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	tr := tar.NewReader(bytes.NewReader(good))
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		b, _ := io.ReadAll(tr)
		if strings.HasSuffix(h.Name, ".tar.gz") {
			var gzb bytes.Buffer
			zw := gzip.NewWriter(&gzb)
			o, _ := os.ReadFile(other)
			_, _ = zw.Write(o)
			_ = zw.Close()
			b = gzb.Bytes()
			h.Size = int64(len(b))
		}
		_ = tw.WriteHeader(h)
		_, _ = tw.Write(b)
	}
	_ = tw.Close()
	storeDir := filepath.Join(tmp, "store")
	s := newStore(t, storeDir, nil)
	if _, err := s.Load(context.Background(), &out); !errors.Is(err, image.ErrDigestMismatch) {
		t.Fatalf("err = %v, want ErrDigestMismatch", err)
	}
	if countDir(t, filepath.Join(storeDir, "layers")) != 0 || countDir(t, filepath.Join(storeDir, "blobs/sha256")) != 0 {
		t.Fatal("mismatch left data behind")
	}
}

func TestDistribution(t *testing.T) {
	tmp := t.TempDir()
	rootfs := imagetest.BusyboxRootfsTar(t, tmp)
	src := newStore(t, filepath.Join(tmp, "src"), nil)
	dst := newStore(t, filepath.Join(tmp, "dst"), nil)
	ctx := context.Background()
	f, _ := os.Open(imagetest.DockerSaveArchive(t, rootfs, "web:1", webCfg))
	imgs, err := src.Load(ctx, f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := src.Manifest("web:1")
	if err != nil {
		t.Fatal(err)
	}
	d, err := image.ParseDescriptor(raw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dst.CommitImage(raw); !errors.Is(err, image.ErrNotFound) {
		t.Fatalf("commit without blobs: %v", err)
	}
	if err := dst.IngestBlob(d.Config.Digest, 0, strings.NewReader("tampered")); !errors.Is(err, image.ErrDigestMismatch) {
		t.Fatalf("tampered ingest: %v", err)
	}
	if dst.HasBlob(d.Config.Digest) {
		t.Fatal("tampered blob stored")
	}
	for _, b := range d.Blobs() {
		if dst.HasBlob(b) {
			continue
		}
		rc, n, err := src.OpenBlob(b)
		if err != nil || n <= 0 {
			t.Fatalf("open blob %s: %d %v", b, n, err)
		}
		err = dst.IngestBlob(b, n, rc)
		rc.Close()
		if err != nil {
			t.Fatalf("ingest %s: %v", b, err)
		}
	}
	got, err := dst.CommitImage(raw)
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
	if got.ID != imgs[0].ID || len(got.Tags) != 1 || got.Tags[0] != "web:1" {
		t.Fatalf("committed %+v", got)
	}
	_, cfg, dirs, err := dst.Resolve("web:1")
	if err != nil || len(dirs) != 1 || cfg.WorkingDir != "/www" {
		t.Fatalf("resolve: %v %v %+v", err, dirs, cfg)
	}
	raw2, _ := dst.Manifest("web:1")
	if !bytes.Equal(raw, raw2) {
		t.Fatalf("manifest differs after copy:\n%s\n%s", raw, raw2)
	}
	if _, err := dst.CommitImage([]byte(`{"schema":"shoal.image.v1","id":"sha256:zz"}`)); !errors.Is(err, image.ErrInvalidRef) {
		t.Fatalf("bad descriptor: %v", err)
	}
}

func TestPull(t *testing.T) {
	tmp := t.TempDir()
	rootfs := imagetest.BusyboxRootfsTar(t, tmp)
	img := imagetest.Image(t, webCfg, true, rootfs)

	const user, pass = "shoal", "s3cret"
	open := httptest.NewServer(registry.New())
	t.Cleanup(open.Close)
	reg := registry.New()
	locked := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(locked.Close)
	host := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }
	push := func(ref string, auth authn.Authenticator) {
		r, err := name.ParseReference(ref)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(r, img, remote.WithAuth(auth)); err != nil {
			t.Fatalf("push %s: %v", ref, err)
		}
	}
	anonRef := host(open) + "/web:1"
	authRef := host(locked) + "/private/web:2"
	push(anonRef, authn.Anonymous)
	push(authRef, &authn.Basic{Username: user, Password: pass})

	s := newStore(t, filepath.Join(tmp, "store"), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, err := s.Pull(ctx, api.PullRequest{Ref: anonRef})
	if err != nil {
		t.Fatalf("anonymous pull: %v", err)
	}
	if got.Tags[0] != anonRef || got.Source != "pull "+anonRef {
		t.Fatalf("pulled %+v", got)
	}
	if _, err := s.Pull(ctx, api.PullRequest{Ref: authRef}); !errors.Is(err, image.ErrUnauthorized) {
		t.Fatalf("pull without credentials: %v, want ErrUnauthorized", err)
	}
	if _, err := s.Pull(ctx, api.PullRequest{Ref: authRef, Username: user, Password: "wrong"}); !errors.Is(err, image.ErrUnauthorized) {
		t.Fatalf("pull with a wrong password: %v, want ErrUnauthorized", err)
	}
	got2, err := s.Pull(ctx, api.PullRequest{Ref: authRef, Username: user, Password: pass, Insecure: true})
	if err != nil {
		t.Fatalf("auth pull: %v", err)
	}
	if got2.ID != got.ID {
		t.Fatalf("same image, different IDs %s %s", got.ID, got2.ID)
	}
	_, cfg, _, err := s.Resolve(authRef)
	if err != nil || cfg.User != "nobody" || len(cfg.ExposedPorts) != 1 || cfg.Healthcheck == nil {
		t.Fatalf("resolve: %v %+v", err, cfg)
	}
	if _, err := s.Pull(ctx, api.PullRequest{Ref: host(open) + "/missing:1"}); err == nil {
		t.Fatal("pull of a missing image succeeded")
	}
	// No registry there: the error says so (and it is not retried:
	// TestPullRetries).
	gone := httptest.NewServer(http.NotFoundHandler())
	goneHost := host(gone)
	gone.Close()
	if _, err := s.Pull(ctx, api.PullRequest{Ref: goneHost + "/x:1"}); err == nil || !strings.Contains(err.Error(), "cannot reach registry "+goneHost) {
		t.Fatalf("pull from no registry: %v", err)
	}
}

func TestConcurrentImport(t *testing.T) {
	tmp := t.TempDir()
	rootfs := imagetest.BusyboxRootfsTar(t, tmp)
	storeDir := filepath.Join(tmp, "store")
	s := newStore(t, storeDir, nil)
	raw, _ := os.ReadFile(rootfs)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 4 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, err := s.Import(context.Background(), bytes.NewReader(raw), fmt.Sprintf("c:%d", i))
			errs <- err
		}()
		go func() {
			defer wg.Done()
			_ = s.List()
			_, err := s.GC()
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := countDir(t, filepath.Join(storeDir, "layers")); n != 1 {
		t.Fatalf("%d layer dirs, want 1", n)
	}
	for i := range 4 {
		if _, _, _, err := s.Resolve(fmt.Sprintf("c:%d", i)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestNormalizeTag(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"busybox", "busybox:latest"},
		{"busybox:1.36", "busybox:1.36"},
		{"docker.io/library/busybox", "busybox:latest"},
		{"localhost:5000/bb", "localhost:5000/bb:latest"},
		{"127.0.0.1:5000/a/b:2", "127.0.0.1:5000/a/b:2"},
		{"bb@sha256:abc", "bb@sha256:abc"},
		{"", ""},
		{"a b", ""},
		{"bb:", ""},
		{"sha256:abcd", ""},
	} {
		got, err := image.NormalizeTag(tc.in)
		if got != tc.want || (err != nil) != (tc.want == "") {
			t.Errorf("NormalizeTag(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// TestNewTagName: a new image's name follows docker's reference grammar;
// `image import ROOTFS Bad:Name` (and x/../y, a:b:c, a@b) used to be stored.
func TestNewTagName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"busybox", "busybox:latest"},
		{"web:1", "web:1"},
		{"my-app_x.y/web__api:v1.2-rc_3", "my-app_x.y/web__api:v1.2-rc_3"},
		{"docker.io/library/busybox:1", "busybox:1"},
		{"localhost:5000/team/app", "localhost:5000/team/app:latest"},
		{"Reg.Example:5000/a:B", "Reg.Example:5000/a:B"},
		{"Bad:Name", ""},
		{"UP", ""},
		{"x/../y", ""},
		{"a:b:c", ""},
		{"a@b", ""},
		{"bb@sha256:" + strings.Repeat("a", 64), ""},
		{"web:.1", ""},
		{"web:-1", ""},
		{"web:" + strings.Repeat("t", 129), ""},
		{"-web", ""},
		{"web-", ""},
		{"a//b", ""},
		{strings.Repeat("a", 256), ""},
		{"", ""},
		{"a b", ""},
	} {
		got, err := image.NewTagName(tc.in)
		if got != tc.want || (err != nil) != (tc.want == "") {
			t.Errorf("NewTagName(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
		if err != nil && !errors.Is(err, image.ErrInvalidRef) {
			t.Errorf("NewTagName(%q): %v is no ErrInvalidRef", tc.in, err)
		}
	}
}

func sha256sum(b []byte) [32]byte { return sha256.Sum256(b) }

func TestImportHostileLeavesNothing(t *testing.T) {
	storeDir := filepath.Join(t.TempDir(), "store")
	s := newStore(t, storeDir, nil)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: "a", Typeflag: tar.TypeSymlink, Linkname: "/etc"})
	_ = tw.WriteHeader(&tar.Header{Name: "a/shoal-import-escape", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1})
	_, _ = tw.Write([]byte("x"))
	_ = tw.Close()
	if _, err := s.Import(context.Background(), &buf, "evil"); !errors.Is(err, image.ErrInvalidArchive) {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Lstat("/etc/shoal-import-escape"); err == nil {
		t.Fatal("escaped")
	}
	for _, d := range []string{"layers", "blobs/sha256", "images"} {
		if n := countDir(t, filepath.Join(storeDir, d)); n != 0 {
			t.Errorf("%s has %d entries", d, n)
		}
	}
	if len(s.List()) != 0 {
		t.Fatal("image recorded")
	}
}

// tarEntry is one entry of a test archive: a regular file, or a symlink
// when link is set.
type tarEntry struct {
	name string
	body []byte
	link string
}

func tarOf(t *testing.T, ents ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body)), Typeflag: tar.TypeReg}
		if e.link != "" {
			h = &tar.Header{Name: e.name, Mode: 0o777, Typeflag: tar.TypeSymlink, Linkname: e.link}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// metaImage is a one-layer image whose JSON documents can be padded with
// whitespace (still valid JSON, still the same image).
type metaImage struct {
	layer  []byte
	config []byte
}

func newMetaImage(t *testing.T) metaImage {
	layer := tarOf(t, tarEntry{name: "hello", body: []byte("hi\n")})
	cfg := fmt.Sprintf(`{"architecture":"amd64","os":"linux","config":{"Cmd":["/hello"]},"rootfs":{"type":"layers","diff_ids":["sha256:%x"]}}`, sha256sum(layer))
	return metaImage{layer: layer, config: []byte(cfg)}
}

func pad(b []byte, n int) []byte { return append(bytes.Clone(b), bytes.Repeat([]byte(" "), n)...) }

// dockerSave is a docker-save archive of m, manifest.json and the config
// padded by the given number of bytes; linkManifest stores manifest.json as
// a symlink to the real file.
func (m metaImage) dockerSave(t *testing.T, padManifest, padConfig int, linkManifest bool) []byte {
	man := pad([]byte(`[{"Config":"config.json","RepoTags":["meta:1"],"Layers":["layer.tar"]}]`), padManifest)
	ents := []tarEntry{{name: "config.json", body: pad(m.config, padConfig)}, {name: "layer.tar", body: m.layer}}
	if linkManifest {
		return tarOf(t, append(ents, tarEntry{name: "manifest.json", link: "real/manifest.json"}, tarEntry{name: "real/manifest.json", body: man})...)
	}
	return tarOf(t, append(ents, tarEntry{name: "manifest.json", body: man})...)
}

// ociLayout is an OCI layout archive of m, with index.json, the manifest
// and the config padded by the given number of bytes.
func (m metaImage) ociLayout(t *testing.T, padIndex, padManifest, padConfig int) []byte {
	blob := func(b []byte) (string, []byte) { return fmt.Sprintf("sha256:%x", sha256sum(b)), b }
	layerD, layer := blob(m.layer)
	cfgD, cfg := blob(pad(m.config, padConfig))
	man := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`, cfgD, len(cfg), layerD, len(layer))
	manD, manB := blob(pad([]byte(man), padManifest))
	idx := fmt.Sprintf(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":%d,"annotations":{"io.containerd.image.name":"meta:1"}}]}`, manD, len(manB))
	return tarOf(t,
		tarEntry{name: "oci-layout", body: []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		tarEntry{name: "index.json", body: pad([]byte(idx), padIndex)},
		tarEntry{name: "blobs/sha256/" + manD[7:], body: manB},
		tarEntry{name: "blobs/sha256/" + cfgD[7:], body: cfg},
		tarEntry{name: "blobs/sha256/" + layerD[7:], body: layer},
	)
}

// TestLoadOversizedMetadata: Load refuses an archive whose manifest.json,
// index.json, manifest or config is larger than any real one, before it
// reads it whole into memory; padded a little, the same archives load.
func TestLoadOversizedMetadata(t *testing.T) {
	const big = 16<<20 + 1
	m := newMetaImage(t)
	for _, tc := range []struct {
		name string
		data func() []byte
		want error
	}{
		{"docker-save fits", func() []byte { return m.dockerSave(t, 4096, 4096, true) }, nil},
		{"docker-save manifest.json", func() []byte { return m.dockerSave(t, big, 0, false) }, image.ErrTooLarge},
		{"docker-save manifest.json through a symlink", func() []byte { return m.dockerSave(t, big, 0, true) }, image.ErrTooLarge},
		{"docker-save config", func() []byte { return m.dockerSave(t, 0, big, false) }, image.ErrTooLarge},
		{"oci fits", func() []byte { return m.ociLayout(t, 4096, 4096, 4096) }, nil},
		{"oci index.json", func() []byte { return m.ociLayout(t, big, 0, 0) }, image.ErrTooLarge},
		{"oci manifest", func() []byte { return m.ociLayout(t, 0, big, 0) }, image.ErrTooLarge},
		{"oci config", func() []byte { return m.ociLayout(t, 0, 0, big) }, image.ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			storeDir := filepath.Join(t.TempDir(), "store")
			s := newStore(t, storeDir, nil)
			imgs, err := s.Load(context.Background(), bytes.NewReader(tc.data()))
			if tc.want == nil {
				if err != nil || len(imgs) != 1 || len(imgs[0].Tags) != 1 || imgs[0].Tags[0] != "meta:1" {
					t.Fatalf("load: %+v, %v", imgs, err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			for _, d := range []string{"layers", "blobs/sha256", "images", "tmp"} {
				if n := countDir(t, filepath.Join(storeDir, d)); n != 0 {
					t.Errorf("%s has %d entries left", d, n)
				}
			}
		})
	}
}

// TestPullOversizedConfig: a registry whose manifest declares a config of
// a terabyte is refused before the config is fetched (it would be read
// whole into memory, as far as the registry keeps sending).
func TestPullOversizedConfig(t *testing.T) {
	m := newMetaImage(t)
	cfgD := fmt.Sprintf("sha256:%x", sha256sum(m.config))
	layerD := fmt.Sprintf("sha256:%x", sha256sum(m.layer))
	man := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`, cfgD, int64(1)<<40, layerD, len(m.layer))
	var mu sync.Mutex
	var served int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/":
		case strings.HasPrefix(r.URL.Path, "/v2/big/manifests/"):
			w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
			w.Header().Set("Docker-Content-Digest", fmt.Sprintf("sha256:%x", sha256sum([]byte(man))))
			if r.Method != http.MethodHead {
				_, _ = io.WriteString(w, man)
			}
		case r.URL.Path == "/v2/big/blobs/"+cfgD:
			// No Content-Length: a chunked stream of 17 MiB of spaces.
			chunk := bytes.Repeat([]byte(" "), 1<<20)
			for range 17 {
				n, err := w.Write(chunk)
				mu.Lock()
				served += int64(n)
				mu.Unlock()
				if err != nil {
					return
				}
				w.(http.Flusher).Flush()
			}
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	storeDir := filepath.Join(t.TempDir(), "store")
	s := newStore(t, storeDir, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ref := strings.TrimPrefix(srv.URL, "http://") + "/big:1"
	if _, err := s.Pull(ctx, api.PullRequest{Ref: ref}); !errors.Is(err, image.ErrTooLarge) {
		t.Fatalf("pull: %v, want ErrTooLarge", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if served != 0 {
		t.Fatalf("the config was fetched (%d bytes)", served)
	}
	for _, d := range []string{"layers", "blobs/sha256", "images"} {
		if n := countDir(t, filepath.Join(storeDir, d)); n != 0 {
			t.Errorf("%s has %d entries left", d, n)
		}
	}
}

// TestCommitImageOversizedConfig: a peer that names a config blob over
// 16 MiB (it chooses the image it describes) is refused instead of having
// the blob read whole into memory.
func TestCommitImageOversizedConfig(t *testing.T) {
	m := newMetaImage(t)
	for _, tc := range []struct {
		name string
		pad  int
		want error
	}{
		{"fits", 4096, nil},
		{"oversized", 16<<20 + 1, image.ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, filepath.Join(t.TempDir(), "store"), nil)
			cfg := pad(m.config, tc.pad)
			cfgD := fmt.Sprintf("sha256:%x", sha256sum(cfg))
			layerD := fmt.Sprintf("sha256:%x", sha256sum(m.layer))
			for d, b := range map[string][]byte{cfgD: cfg, layerD: m.layer} {
				if err := s.IngestBlob(d, int64(len(b)), bytes.NewReader(b)); err != nil {
					t.Fatal(err)
				}
			}
			desc := fmt.Sprintf(`{"schema":"shoal.image.v1","id":%q,"config":{"digest":%q,"media_type":"application/vnd.oci.image.config.v1+json","size":%d},"layers":[{"digest":%q,"media_type":"application/vnd.oci.image.layer.v1.tar","size":%d,"diff_id":%q}],"tags":["meta:1"]}`,
				cfgD, cfgD, len(cfg), layerD, len(m.layer), layerD)
			_, err := s.CommitImage([]byte(desc))
			if tc.want == nil && err != nil || !errors.Is(err, tc.want) {
				t.Fatalf("commit: %v, want %v", err, tc.want)
			}
		})
	}
}

// zeros is an endless stream, cut off with an error after max bytes so
// that a reader that does not stop on its own fails instead of hanging.
type zeros struct{ n, max int64 }

func (z *zeros) Read(p []byte) (int, error) {
	if z.n >= z.max {
		return 0, errors.New("read on past the cut-off: nothing bounded the read")
	}
	n := min(int64(len(p)), z.max-z.n)
	clear(p[:n])
	z.n += n
	return int(n), nil
}

// TestIngestBlobBounded: a peer chooses both the image descriptor (and so
// the digests and sizes) and the stream it sends for each blob, and the
// digest is checked only at the end. What is written must be bounded
// before that: by the size the descriptor gives, by MaxTotalSize when it
// gives none, and by the free space a known size would leave.
func TestIngestBlobBounded(t *testing.T) {
	root := filepath.Join(t.TempDir(), "store")
	cfg := image.DefaultConfig(root)
	cfg.Limits.MaxTotalSize = 1 << 20
	s, err := image.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte("a blob of twenty-six bytes")
	dg := fmt.Sprintf("sha256:%x", sha256.Sum256(body))
	const cutoff = 64 << 20
	for _, tc := range []struct {
		name string
		size int64
		r    io.Reader
		want error
	}{
		{"endless stream, size given", int64(len(body)), &zeros{max: cutoff}, image.ErrTooLarge},
		{"endless stream, no size", 0, &zeros{max: cutoff}, image.ErrTooLarge},
		{"short stream", int64(len(body)) + 1, bytes.NewReader(body), image.ErrDigestMismatch},
		{"size past the limit", 2 << 20, bytes.NewReader(body), image.ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.IngestBlob(dg, tc.size, tc.r)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if s.HasBlob(dg) {
				t.Fatal("blob stored")
			}
			if n := countDir(t, filepath.Join(root, "blobs", "sha256")); n != 0 {
				t.Fatalf("%d files left in the blob dir", n)
			}
		})
	}
	t.Run("size past the free space", func(t *testing.T) {
		root := filepath.Join(t.TempDir(), "store")
		cfg := image.DefaultConfig(root)
		cfg.Limits.MaxTotalSize = 1 << 62
		s, err := image.Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.IngestBlob(dg, 1<<61, &zeros{max: cutoff}); !errors.Is(err, image.ErrNoSpace) {
			t.Fatalf("got %v, want ErrNoSpace", err)
		}
	})
	if err := s.IngestBlob(dg, int64(len(body)), bytes.NewReader(body)); err != nil || !s.HasBlob(dg) {
		t.Fatalf("the right blob: %v", err)
	}
}

// TestInsecurePullClosesConnections: an insecure pull's own transport
// closes its connections when the pull returns, rather than idling them.
func TestInsecurePullClosesConnections(t *testing.T) {
	tmp := t.TempDir()
	img := imagetest.Image(t, webCfg, true, imagetest.BusyboxRootfsTar(t, tmp))
	var open atomic.Int32
	srv := httptest.NewUnstartedServer(registry.New())
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	ref := strings.TrimPrefix(srv.URL, "http://") + "/web:1"
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	pushTr := http.DefaultTransport.(*http.Transport).Clone()
	if err := remote.Write(r, img, remote.WithTransport(pushTr)); err != nil {
		t.Fatal(err)
	}
	pushTr.CloseIdleConnections()
	waitOpen := func(what string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for open.Load() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d connections still open to the registry", what, open.Load())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitOpen("after the push")

	s := newStore(t, filepath.Join(tmp, "store"), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.Pull(ctx, api.PullRequest{Ref: ref, Insecure: true}); err != nil {
		t.Fatal(err)
	}
	waitOpen("after the insecure pull")
}
