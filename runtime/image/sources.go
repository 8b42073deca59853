package image

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/image/unpack"
)

// DefaultPlatform is the platform picked from multi-platform images.
var DefaultPlatform = v1.Platform{OS: "linux", Architecture: "amd64"}

// defaultPath is given to imported images, which have no config of their own.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// maxMetadataSize bounds each manifest, index and image config that is read
// whole into memory. Real ones are kilobytes; a hostile archive could carry
// gigabytes of JSON whitespace (which compress to almost nothing) and make
// the agent read them all.
const maxMetadataSize = 16 << 20

// Import stores a plain rootfs tarball (gzip, zstd or uncompressed) as a
// one-layer image, like `docker import`: the config has no Entrypoint or Cmd
// and only a default PATH. ref (NAME[:TAG]) may be empty for an untagged
// image. The tarball is stored as-is as the layer blob.
func (s *Store) Import(ctx context.Context, r io.Reader, ref string) (api.Image, error) {
	var tags []string
	if ref != "" {
		t, err := NewTagName(ref)
		if err != nil {
			return api.Image{}, fmt.Errorf("import %s: %w", ref, err)
		}
		tags = []string{t}
	}
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	w, err := s.newBlobWriter()
	if err != nil {
		return api.Image{}, fmt.Errorf("import %s: %w", ref, err)
	}
	defer w.abort()
	src := io.TeeReader(r, w)
	tmp, err := s.layerTemp()
	if err != nil {
		return api.Image{}, fmt.Errorf("import %s: %w", ref, err)
	}
	diffID, size, err := unpack.Unpack(ctx, src, tmp, s.cfg.Limits)
	if err != nil {
		return api.Image{}, fmt.Errorf("import %s: %w", ref, err)
	}
	if _, err := io.Copy(io.Discard, src); err != nil {
		_ = os.RemoveAll(tmp)
		return api.Image{}, fmt.Errorf("import %s: %w", ref, err)
	}
	mt := types.OCIUncompressedLayer
	switch {
	case bytes.HasPrefix(w.head, []byte{0x1f, 0x8b}):
		mt = types.OCILayer
	case bytes.HasPrefix(w.head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		mt = types.OCILayerZStd
	}
	digest, blobSize, err := w.commit("")
	if err != nil {
		_ = os.RemoveAll(tmp)
		return api.Image{}, fmt.Errorf("import %s: %w", ref, err)
	}
	if err := s.installLayer(tmp, diffID); err != nil {
		return api.Image{}, fmt.Errorf("import %s: %w", ref, err)
	}
	now := s.cfg.Now().UTC().Truncate(time.Second)
	h, _ := v1.NewHash(diffID)
	cf := v1.ConfigFile{
		Created:      v1.Time{Time: now},
		Architecture: DefaultPlatform.Architecture,
		OS:           DefaultPlatform.OS,
		RootFS:       v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{h}},
		Config:       v1.Config{Env: []string{defaultPath}},
		History:      []v1.History{{Created: v1.Time{Time: now}, CreatedBy: "shoal image import", Comment: ref}},
	}
	raw, err := json.Marshal(cf)
	if err != nil {
		return api.Image{}, fmt.Errorf("import %s: %w", ref, err)
	}
	id, _, err := s.writeBlob(bytes.NewReader(raw), "")
	if err != nil {
		return api.Image{}, fmt.Errorf("import %s: %w", ref, err)
	}
	li := layerInfo{Digest: digest, MediaType: string(mt), Size: blobSize, DiffID: diffID, UnpackedSize: size}
	rec := newRecord(id, types.OCIConfigJSON, int64(len(raw)), &cf, []layerInfo{li}, "import", now)
	return s.commitRecord(rec, tags)
}

// ingestImage stores every blob and layer of img and records it under tags.
// srcErr (may be nil) is wrapped around failures to read img.
func (s *Store) ingestImage(ctx context.Context, img v1.Image, tags []string, source string, srcErr error) (api.Image, error) {
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	m, err := img.Manifest()
	if err != nil {
		return api.Image{}, wrapSrc(srcErr, fmt.Errorf("read manifest: %w", err))
	}
	cfgMT := m.Config.MediaType
	if cfgMT == "" {
		cfgMT = types.DockerConfigJSON
	}
	if err := checkConfigType(cfgMT); err != nil {
		return api.Image{}, err
	}
	// A registry's config is read whole, up to the size its manifest declares.
	if m.Config.Size > maxMetadataSize {
		return api.Image{}, fmt.Errorf("%w: config of %d bytes, more than %d", ErrTooLarge, m.Config.Size, maxMetadataSize)
	}
	raw, err := img.RawConfigFile()
	if err != nil {
		return api.Image{}, wrapSrc(srcErr, fmt.Errorf("read config: %w", err))
	}
	cf, err := parseConfig(raw)
	if err != nil {
		return api.Image{}, err
	}
	layers, err := img.Layers()
	if err != nil {
		return api.Image{}, wrapSrc(srcErr, fmt.Errorf("read layers: %w", err))
	}
	if len(layers) != len(cf.RootFS.DiffIDs) {
		return api.Image{}, fmt.Errorf("%w: %d layers but %d diff_ids", ErrInvalidArchive, len(layers), len(cf.RootFS.DiffIDs))
	}
	infos := make([]layerInfo, 0, len(layers))
	for i, l := range layers {
		if err := ctx.Err(); err != nil {
			return api.Image{}, err
		}
		mt, err := l.MediaType()
		if err != nil {
			return api.Image{}, wrapSrc(srcErr, fmt.Errorf("layer %d media type: %w", i, err))
		}
		if err := checkLayerType(mt); err != nil {
			return api.Image{}, err
		}
		digest, err := l.Digest()
		if err != nil {
			return api.Image{}, wrapSrc(srcErr, fmt.Errorf("layer %d digest: %w", i, err))
		}
		li := layerInfo{Digest: digest.String(), MediaType: string(mt), DiffID: cf.RootFS.DiffIDs[i].String()}
		li, err = s.ensureLayer(ctx, li, l.Compressed, srcErr)
		if err != nil {
			return api.Image{}, err
		}
		infos = append(infos, li)
	}
	id, _, err := s.writeBlob(bytes.NewReader(raw), "")
	if err != nil {
		return api.Image{}, err
	}
	rec := newRecord(id, cfgMT, int64(len(raw)), cf, infos, source, s.cfg.Now())
	return s.commitRecord(rec, tags)
}

// Load stores every image of a `docker save` archive (manifest.json) or an
// OCI image layout archive (index.json + oci-layout), optionally gzip or zstd
// compressed, and returns them. Tags come from RepoTags or, for OCI, the
// io.containerd.image.name / org.opencontainers.image.ref.name annotations.
// Malformed archives wrap ErrInvalidArchive; an image already stored only
// gains its tags. Each image returned carries the tags the archive gave it,
// not those it held already (List and Get show them all): `image load`
// prints what was loaded, as docker does, where it used to print every tag
// of an image stored before under another name as "Loaded image".
func (s *Store) Load(ctx context.Context, r io.Reader) ([]api.Image, error) {
	spool, err := os.CreateTemp(s.path("tmp"), "load-")
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	defer os.Remove(spool.Name())
	defer spool.Close()
	dr, closeFn, err := unpack.Decompress(unpack.CtxReader{Ctx: ctx, R: r})
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	limit := s.cfg.Limits.WithDefaults().MaxTotalSize
	n, err := io.Copy(spool, io.LimitReader(dr, limit+1))
	closeFn()
	if err != nil {
		return nil, unpack.ArchiveErr(ctx, "load: spool archive", err)
	}
	if n > limit {
		return nil, fmt.Errorf("load: %w: archive larger than %d bytes", ErrTooLarge, limit)
	}
	names, ents, err := tarNames(spool.Name())
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	switch {
	case names["manifest.json"]:
		return s.loadDockerSave(ctx, spool.Name(), ents)
	case names["index.json"]:
		return s.loadOCIArchive(ctx, spool.Name())
	default:
		return nil, fmt.Errorf("load: %w: neither manifest.json nor index.json in archive", ErrInvalidArchive)
	}
}

// tarNames lists the cleaned entry names of a tar file, and the first
// header of each name as go-containerregistry's tarball package matches it.
func tarNames(p string) (map[string]bool, tarIndex, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	names := map[string]bool{}
	ents := tarIndex{}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %v", ErrInvalidArchive, err)
		}
		if rel, err := unpack.CleanPath(hdr.Name); err == nil {
			names[rel] = true
		}
		if k := path.Clean(hdr.Name); ents[k] == nil {
			ents[k] = hdr
		}
	}
	if len(names) == 0 {
		return nil, nil, fmt.Errorf("%w: empty archive", ErrInvalidArchive)
	}
	return names, ents, nil
}

// tarIndex maps path.Clean of an entry name to its first header.
type tarIndex map[string]*tar.Header

// checkMetadata refuses name if the entry go-containerregistry's tarball
// package would read for it (following links its way) is larger than
// maxMetadataSize: that package reads manifest.json and configs whole.
// A missing entry or a link cycle is left for that package to report.
func (ents tarIndex) checkMetadata(name string) error {
	seen := map[string]bool{}
	for p := name; !seen[p]; {
		seen[p] = true
		hdr := ents[path.Clean(p)]
		if hdr == nil {
			return nil
		}
		if hdr.Typeflag == tar.TypeSymlink || hdr.Typeflag == tar.TypeLink {
			p = path.Join(path.Dir(p), path.Clean(hdr.Linkname))
			continue
		}
		if hdr.Size > maxMetadataSize {
			return fmt.Errorf("%w: %s is %d bytes, more than %d", ErrTooLarge, name, hdr.Size, maxMetadataSize)
		}
		return nil
	}
	return nil
}

func (s *Store) loadDockerSave(ctx context.Context, p string, ents tarIndex) ([]api.Image, error) {
	opener := func() (io.ReadCloser, error) { return os.Open(p) }
	if err := ents.checkMetadata("manifest.json"); err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	m, err := tarball.LoadManifest(opener)
	if err != nil {
		return nil, fmt.Errorf("load: %w: manifest.json: %v", ErrInvalidArchive, err)
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("load: %w: manifest.json lists no image", ErrInvalidArchive)
	}
	for i, d := range m {
		if err := ents.checkMetadata(d.Config); err != nil {
			return nil, fmt.Errorf("load: image %d config: %w", i, err)
		}
	}
	var out []api.Image
	for i, d := range m {
		var tags []string
		for _, t := range d.RepoTags {
			nt, err := NormalizeTag(t)
			if err != nil {
				return out, fmt.Errorf("load: %w: RepoTag %q", ErrInvalidArchive, t)
			}
			tags = append(tags, nt)
		}
		var sel *name.Tag
		if len(m) > 1 {
			if len(d.RepoTags) == 0 {
				return out, fmt.Errorf("load: %w: untagged image %d in a multi-image archive", ErrInvalidArchive, i)
			}
			t, err := name.NewTag(d.RepoTags[0])
			if err != nil {
				return out, fmt.Errorf("load: %w: RepoTag %q: %v", ErrInvalidArchive, d.RepoTags[0], err)
			}
			sel = &t
		}
		img, err := tarball.Image(opener, sel)
		if err != nil {
			return out, fmt.Errorf("load: %w: image %d: %v", ErrInvalidArchive, i, err)
		}
		ai, err := s.ingestImage(ctx, img, tags, "load", ErrInvalidArchive)
		if err != nil {
			return out, fmt.Errorf("load image %d %v: %w", i, d.RepoTags, err)
		}
		ai.Tags = append([]string{}, tags...)
		out = append(out, ai)
	}
	return out, nil
}

// loadOCIArchive unpacks the layout (regular files and directories only) into
// a temporary directory and reads it with go-containerregistry's layout.
func (s *Store) loadOCIArchive(ctx context.Context, p string) ([]api.Image, error) {
	dir, err := os.MkdirTemp(s.path("tmp"), "oci-")
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := extractPlain(ctx, p, dir); err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	lp, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("load: %w: %v", ErrInvalidArchive, err)
	}
	// The layout package reads index.json, manifests and configs whole.
	if err := checkBlobSize(filepath.Join(dir, "index.json"), "index.json"); err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	checkBlob := func(h v1.Hash) error {
		return checkBlobSize(filepath.Join(dir, "blobs", h.Algorithm, h.Hex), h.String())
	}
	idx, err := lp.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("load: %w: index.json: %v", ErrInvalidArchive, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("load: %w: index.json: %v", ErrInvalidArchive, err)
	}
	var out []api.Image
	for _, d := range im.Manifests {
		var tags []string
		if t := ociTag(d.Annotations); t != "" {
			nt, err := NormalizeTag(t)
			if err != nil {
				return out, fmt.Errorf("load: %w: ref %q", ErrInvalidArchive, t)
			}
			tags = []string{nt}
		}
		if err := checkBlob(d.Digest); err != nil {
			return out, fmt.Errorf("load: %w", err)
		}
		var img v1.Image
		switch {
		case d.MediaType.IsImage():
			img, err = idx.Image(d.Digest)
		case d.MediaType.IsIndex():
			img, err = pickPlatform(idx, d.Digest, checkBlob)
		default:
			return out, fmt.Errorf("load: manifest %s: %q: %w", d.Digest, d.MediaType, ErrUnknownMediaType)
		}
		if errors.Is(err, ErrTooLarge) {
			return out, fmt.Errorf("load: %w", err)
		}
		if err != nil {
			return out, fmt.Errorf("load: %w: manifest %s: %v", ErrInvalidArchive, d.Digest, err)
		}
		if m, err := img.Manifest(); err == nil {
			if err := checkBlob(m.Config.Digest); err != nil {
				return out, fmt.Errorf("load: config of %s: %w", d.Digest, err)
			}
		}
		ai, err := s.ingestImage(ctx, img, tags, "load", ErrInvalidArchive)
		if err != nil {
			return out, fmt.Errorf("load image %s: %w", d.Digest, err)
		}
		ai.Tags = append([]string{}, tags...)
		out = append(out, ai)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("load: %w: index.json lists no image", ErrInvalidArchive)
	}
	return out, nil
}

func ociTag(ann map[string]string) string {
	if t := ann["io.containerd.image.name"]; t != "" {
		return t
	}
	// ref.name is often a bare tag ("latest"): only a full reference names an image.
	if t := ann["org.opencontainers.image.ref.name"]; strings.ContainsAny(t, ":/") {
		return t
	}
	return ""
}

// pickPlatform picks the DefaultPlatform image of the index d in idx;
// checkBlob vets the size of the image's manifest before it is read.
func pickPlatform(idx v1.ImageIndex, d v1.Hash, checkBlob func(v1.Hash) error) (v1.Image, error) {
	child, err := idx.ImageIndex(d)
	if err != nil {
		return nil, err
	}
	im, err := child.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, m := range im.Manifests {
		if m.MediaType.IsImage() && (len(im.Manifests) == 1 || m.Platform != nil && m.Platform.Satisfies(DefaultPlatform)) {
			if err := checkBlob(m.Digest); err != nil {
				return nil, err
			}
			return child.Image(m.Digest)
		}
	}
	return nil, fmt.Errorf("no %s/%s image in index %s", DefaultPlatform.OS, DefaultPlatform.Architecture, d)
}

// checkBlobSize refuses the file p (named name in messages) when it is
// larger than maxMetadataSize. A missing file is left for the reader to
// report.
func checkBlobSize(p, name string) error {
	st, err := os.Lstat(p)
	if err != nil {
		return nil
	}
	if st.Size() > maxMetadataSize {
		return fmt.Errorf("%w: %s is %d bytes, more than %d", ErrTooLarge, name, st.Size(), maxMetadataSize)
	}
	return nil
}

// extractPlain writes the regular files and directories of the tar file p
// under dir; links and devices are refused, `..` paths too.
func extractPlain(ctx context.Context, p, dir string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(f)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrInvalidArchive, err)
		}
		rel, err := unpack.CleanPath(hdr.Name)
		if err != nil {
			return err
		}
		if rel == "" {
			continue
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(rel, 0o700); err != nil {
				return fmt.Errorf("%w: %q: %v", ErrInvalidArchive, rel, err)
			}
		case tar.TypeReg, tar.TypeRegA:
			if d := filepath.Dir(rel); d != "." {
				if err := root.MkdirAll(d, 0o700); err != nil {
					return fmt.Errorf("%w: %q: %v", ErrInvalidArchive, rel, err)
				}
			}
			out, err := root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return fmt.Errorf("%w: %q: %v", ErrInvalidArchive, rel, err)
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("%w: %q: %v", ErrInvalidArchive, rel, err)
			}
		case tar.TypeXGlobalHeader:
		default:
			return fmt.Errorf("%w: OCI layout entry %q of type %q", ErrInvalidArchive, rel, hdr.Typeflag)
		}
	}
}

// Pull fetches req.Ref from its registry (linux/amd64 of a multi-platform
// image), anonymously or with basic auth, and stores it tagged with the
// reference as given (normalized). Insecure allows plain HTTP and
// unverified TLS.
func (s *Store) Pull(ctx context.Context, req api.PullRequest) (api.Image, error) {
	var nopts []name.Option
	if req.Insecure {
		nopts = append(nopts, name.Insecure)
	}
	ref, err := name.ParseReference(req.Ref, nopts...)
	if err != nil {
		return api.Image{}, fmt.Errorf("pull %s: %w: %v", req.Ref, ErrInvalidRef, err)
	}
	tag, err := NormalizeTag(req.Ref)
	if err != nil {
		return api.Image{}, fmt.Errorf("pull %s: %w", req.Ref, err)
	}
	var auth authn.Authenticator = authn.Anonymous
	if req.Username != "" || req.Password != "" {
		auth = &authn.Basic{Username: req.Username, Password: req.Password}
	}
	ropts := []remote.Option{remote.WithContext(ctx), remote.WithAuth(auth), remote.WithPlatform(DefaultPlatform),
		remote.WithRetryPredicate(pullRetries)}
	if req.Insecure {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the user asked for --insecure
		// The transport is this pull's alone: nothing reuses its
		// connections, which would otherwise idle for 90 s.
		defer tr.CloseIdleConnections()
		ropts = append(ropts, remote.WithTransport(tr))
	}
	img, err := remote.Image(ref, ropts...)
	if err != nil {
		var te *transport.Error
		if errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden) {
			return api.Image{}, fmt.Errorf("pull %s: %w: %v", req.Ref, ErrUnauthorized, err)
		}
		if unreachable(err) {
			return api.Image{}, fmt.Errorf("pull %s: cannot reach registry %s: %w", req.Ref, ref.Context().RegistryStr(), err)
		}
		return api.Image{}, fmt.Errorf("pull %s: %w", req.Ref, err)
	}
	ai, err := s.ingestImage(ctx, img, []string{tag}, "pull "+req.Ref, nil)
	if err != nil {
		return api.Image{}, fmt.Errorf("pull %s: %w", req.Ref, err)
	}
	return ai, nil
}

// pullRetries says which errors of a registry request are tried again
// (three tries, 1 s and 3 s apart: go-containerregistry's backoff). It is
// go-containerregistry's default predicate except that a registry that
// cannot be reached at all fails at once: its name does not resolve, or
// its address does not take the connection. A DNS timeout is a temporary
// error, so with no registry or resolver in reach (an offline machine)
// `image pull busybox` used to fail after 34 s, three resolver timeouts
// and the backoff between them, instead of after one.
func pullRetries(err error) bool {
	if unreachable(err) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return false
	}
	// As go-containerregistry's retry.IsTemporary and defaultRetryPredicate.
	var temp interface{ Temporary() bool }
	if errors.As(err, &temp) && temp.Temporary() {
		return true
	}
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed)
}

// unreachable says whether err is a registry's name not resolving or its
// address not taking a connection.
func unreachable(err error) bool {
	var dnsErr *net.DNSError
	var opErr *net.OpError
	return errors.As(err, &dnsErr) || errors.As(err, &opErr) && opErr.Op == "dial"
}
