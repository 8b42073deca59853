// Package imagetest builds image fixtures for tests in any package: a busybox
// rootfs tarball from the host's static /bin/busybox, and docker-save or OCI
// layout archives of it made with go-containerregistry. Helpers fail the test
// on error and skip it when /bin/busybox is missing.
package imagetest

import (
	"archive/tar"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/shoal-org/shoal/api"
)

// BusyboxPath is the static busybox the fixtures are built from.
const BusyboxPath = "/bin/busybox"

// IndexHTML is the content of /www/index.html in the busybox rootfs.
const IndexHTML = "<h1>hello from shoal</h1>\n"

var fixtureTime = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// BusyboxRootfsTar writes dir/busybox-rootfs.tar: /bin/busybox with a symlink
// per applet, /etc/passwd and /etc/group (root, nobody), /tmp (1777),
// /www/index.html, and empty /root, /dev, /proc, /sys, /var. It returns the
// tarball's path.
func BusyboxRootfsTar(t testing.TB, dir string) string {
	t.Helper()
	bb, err := os.ReadFile(BusyboxPath)
	if err != nil {
		t.Skipf("busybox fixture needs %s: %v", BusyboxPath, err)
	}
	out, err := exec.Command(BusyboxPath, "--list").Output()
	if err != nil {
		t.Fatalf("busybox --list: %v", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, body []byte) {
		h.ModTime = fixtureTime
		h.Format = tar.FormatPAX
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("tar header %s: %v", h.Name, err)
		}
		if len(body) > 0 {
			if _, err := tw.Write(body); err != nil {
				t.Fatalf("tar body %s: %v", h.Name, err)
			}
		}
	}
	for _, d := range []string{"bin", "dev", "etc", "proc", "root", "sys", "var", "www"} {
		add(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	}
	add(&tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777}, nil)
	add(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755}, bb)
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" || strings.Contains(applet, "/") {
			continue // a self-loop would overwrite the binary
		}
		add(&tar.Header{Name: "bin/" + applet, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777}, nil)
	}
	add(&tar.Header{Name: "etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644},
		[]byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"))
	add(&tar.Header{Name: "etc/group", Typeflag: tar.TypeReg, Mode: 0o644}, []byte("root:x:0:\nnogroup:x:65534:\n"))
	add(&tar.Header{Name: "www/index.html", Typeflag: tar.TypeReg, Mode: 0o644}, []byte(IndexHTML))
	if err := tw.Close(); err != nil {
		t.Fatalf("tar close: %v", err)
	}
	p := filepath.Join(dir, "busybox-rootfs.tar")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatalf("write %s: %v", p, err)
	}
	return p
}

// V1Config converts the runtime's view of a config to go-containerregistry's.
func V1Config(cfg api.ImageConfig) v1.Config {
	c := v1.Config{
		Entrypoint: cfg.Entrypoint,
		Cmd:        cfg.Cmd,
		Env:        cfg.Env,
		WorkingDir: cfg.WorkingDir,
		User:       cfg.User,
	}
	if len(cfg.ExposedPorts) > 0 {
		c.ExposedPorts = map[string]struct{}{}
		for _, p := range cfg.ExposedPorts {
			c.ExposedPorts[p] = struct{}{}
		}
	}
	if h := cfg.Healthcheck; h != nil {
		c.Healthcheck = &v1.HealthConfig{Test: h.Test, Interval: h.Interval, Timeout: h.Timeout, StartPeriod: h.StartPeriod, Retries: h.Retries}
	}
	return c
}

// Image builds a linux/amd64 image whose layers are the given tarballs (base
// first) and whose config is cfg. oci selects OCI media types instead of
// Docker's.
func Image(t testing.TB, cfg api.ImageConfig, oci bool, layerTars ...string) v1.Image {
	t.Helper()
	var img v1.Image = empty.Image
	if oci {
		img = mutate.MediaType(img, types.OCIManifestSchema1)
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	}
	for _, lt := range layerTars {
		var opts []tarball.LayerOption
		if oci {
			opts = append(opts, tarball.WithMediaType(types.OCILayer))
		}
		l, err := tarball.LayerFromFile(lt, opts...)
		if err != nil {
			t.Fatalf("layer %s: %v", lt, err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatalf("append layer: %v", err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Created = v1.Time{Time: fixtureTime}
	cf.Config = V1Config(cfg)
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatalf("set config: %v", err)
	}
	return img
}

// DockerSaveArchive writes a `docker save` archive (manifest.json, one
// image tagged ref) whose single layer is rootfsTar, beside rootfsTar, and
// returns its path.
func DockerSaveArchive(t testing.TB, rootfsTar, ref string, cfg api.ImageConfig) string {
	t.Helper()
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatalf("tag %s: %v", ref, err)
	}
	p := archivePath(t, rootfsTar, "docker-save")
	if err := tarball.WriteToFile(p, tag, Image(t, cfg, false, rootfsTar)); err != nil {
		t.Fatalf("docker save archive: %v", err)
	}
	return p
}

// OCILayoutArchive writes an OCI image layout as one tar (oci-layout,
// index.json with the image annotated org.opencontainers.image.ref.name=ref,
// blobs/) beside rootfsTar and returns its path.
func OCILayoutArchive(t testing.TB, rootfsTar, ref string, cfg api.ImageConfig) string {
	t.Helper()
	dir := t.TempDir()
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatalf("layout: %v", err)
	}
	img := Image(t, cfg, true, rootfsTar)
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": ref})); err != nil {
		t.Fatalf("layout append: %v", err)
	}
	p := archivePath(t, rootfsTar, "oci")
	TarDir(t, dir, p)
	return p
}

func archivePath(t testing.TB, rootfsTar, kind string) string {
	f, err := os.CreateTemp(filepath.Dir(rootfsTar), kind+"-*.tar")
	if err != nil {
		t.Fatalf("archive: %v", err)
	}
	_ = f.Close()
	return f.Name()
}

// TarDir writes the regular files and directories under dir into the tar
// file out, with paths relative to dir.
func TarDir(t testing.TB, dir, out string) {
	t.Helper()
	f, err := os.Create(out)
	if err != nil {
		t.Fatalf("create %s: %v", out, err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	err = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		h, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			body, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = tw.Write(body)
			return err
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		t.Fatalf("tar %s: %v", dir, err)
	}
}
