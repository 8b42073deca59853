// Package image is Shoal's content-addressed image store.
//
// Layout under Config.Root:
//
//	blobs/sha256/<hex>     compressed layer blobs and config blobs, verified on write
//	layers/<diffid-hex>/   each layer unpacked once (overlayfs whiteouts), shared by images
//	images/<id-hex>.json   one record per image (config digest = image ID)
//	tags.json              tag -> image ID
//	tmp/                   spooled archives (emptied at Open)
//
// Every write goes to a temporary name and is renamed into place, so a crash
// or an error leaves nothing half-written under a real name. Images come from
// plain rootfs tarballs (Import), docker-save or OCI layout archives (Load), a
// registry (Pull) or a peer (IngestBlob + CommitImage). The container side
// calls Resolve to get the layer directories to stack with overlayfs.
package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/api/atomicfile"
	"github.com/shoal-org/shoal/runtime/image/unpack"
)

// Limits is the unpacker's: one set of bounds for a layer, a blob and a
// loaded archive. The alias keeps image.Limits for the store's callers.
type Limits = unpack.Limits

// Config configures a Store. It is not changed after Open.
type Config struct {
	// Root is the store directory (e.g. DATA/runtime/images); created if missing.
	Root string
	// InUse reports whether a container uses the image with this ID; Remove
	// refuses such an image with ErrInUse. It is called with the store's lock
	// held and must not call back into the Store. Nil means never in use.
	InUse func(imageID string) bool
	// Limits bound each unpacked layer.
	Limits Limits
	// Now stamps imported images; defaults to time.Now.
	Now func() time.Time
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns a Config rooted at root with default limits.
func DefaultConfig(root string) Config {
	return Config{Root: root, Limits: unpack.DefaultLimits(), Now: time.Now, Logger: slog.Default()}
}

// Validate reports a Config that Open cannot use.
func (c Config) Validate() error {
	if c.Root == "" {
		return errors.New("image store: Root is empty")
	}
	if c.Limits.MaxFileSize < 0 || c.Limits.MaxTotalSize < 0 || c.Limits.MaxEntries < 0 {
		return errors.New("image store: negative limit")
	}
	return nil
}

// Store is a content-addressed image store. All methods are safe for
// concurrent use.
type Store struct {
	cfg  Config
	root string
	log  *slog.Logger

	// gcMu is held for reading by every ingest from its first write to its
	// commit, and for writing by GC, so GC never removes a blob or layer that
	// an image being built is about to reference.
	gcMu sync.RWMutex

	mu     sync.Mutex
	images map[string]*record // image ID -> record
	tags   map[string]string  // normalized tag -> image ID
}

// record is the persisted metadata of one image.
type record struct {
	ID              string          `json:"id"` // config blob digest
	ConfigMediaType string          `json:"config_media_type"`
	ConfigSize      int64           `json:"config_size"`
	Layers          []layerInfo     `json:"layers"`
	Tags            []string        `json:"tags"`
	Size            int64           `json:"size"`
	Created         time.Time       `json:"created"`
	Source          string          `json:"source,omitempty"`
	Config          api.ImageConfig `json:"config"`
}

type layerInfo struct {
	Digest       string `json:"digest"`
	MediaType    string `json:"media_type"`
	Size         int64  `json:"size"` // blob size
	DiffID       string `json:"diff_id"`
	UnpackedSize int64  `json:"unpacked_size"`
}

// Open opens (creating if needed) the store rooted at cfg.Root and loads its
// index. Leftover temporary files from an earlier crash are removed.
func Open(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	root, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("open image store %s: %w", cfg.Root, err)
	}
	s := &Store{cfg: cfg, root: root, log: cfg.Logger.With("component", "image"), images: map[string]*record{}, tags: map[string]string{}}
	_ = os.RemoveAll(s.path("tmp"))
	for _, d := range []string{"blobs/sha256", "layers", "images", "tmp"} {
		if err := os.MkdirAll(s.path(d), 0o700); err != nil {
			return nil, fmt.Errorf("open image store %s: %w", root, err)
		}
	}
	if err := s.cleanTemps(); err != nil {
		return nil, fmt.Errorf("open image store %s: %w", root, err)
	}
	if err := s.loadIndex(); err != nil {
		return nil, fmt.Errorf("open image store %s: %w", root, err)
	}
	return s, nil
}

func (s *Store) path(elem ...string) string {
	return filepath.Join(append([]string{s.root}, elem...)...)
}

func (s *Store) blobPath(digest string) string {
	return s.path("blobs", "sha256", strings.TrimPrefix(digest, "sha256:"))
}

func (s *Store) layerPath(diffID string) string {
	return s.path("layers", strings.TrimPrefix(diffID, "sha256:"))
}

func (s *Store) cleanTemps() error {
	for _, d := range []string{"blobs/sha256", "layers"} {
		ents, err := os.ReadDir(s.path(d))
		if err != nil {
			return err
		}
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".") {
				if err := os.RemoveAll(s.path(d, e.Name())); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (s *Store) loadIndex() error {
	ents, err := os.ReadDir(s.path("images"))
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		data, err := os.ReadFile(s.path("images", e.Name()))
		if err != nil {
			return err
		}
		var rec record
		if err := json.Unmarshal(data, &rec); err != nil || validDigest(rec.ID) != nil {
			s.log.Warn("skipping corrupt image record", "file", e.Name(), "err", err)
			continue
		}
		rec.Tags = nil
		s.images[rec.ID] = &rec
	}
	data, err := os.ReadFile(s.path("tags.json"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if len(data) > 0 {
		tags := map[string]string{}
		if err := json.Unmarshal(data, &tags); err != nil {
			return fmt.Errorf("tags.json: %w", err)
		}
		for tag, id := range tags {
			if rec, ok := s.images[id]; ok {
				s.tags[tag] = id
				rec.Tags = append(rec.Tags, tag)
			}
		}
	}
	for _, rec := range s.images {
		sort.Strings(rec.Tags)
	}
	return nil
}

func (s *Store) saveRecordLocked(rec *record) error {
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(s.path("images", strings.TrimPrefix(rec.ID, "sha256:")+".json"), data, 0o600)
}

func (s *Store) saveTagsLocked() error {
	data, err := json.MarshalIndent(s.tags, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(s.path("tags.json"), data, 0o600)
}

// validDigest checks "sha256:<64 lowercase hex>".
func validDigest(d string) error {
	h, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(h) != 64 || !isHex(h) {
		return fmt.Errorf("%w: digest %q", ErrInvalidRef, d)
	}
	return nil
}

func isHex(s string) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// NormalizeTag turns a user reference into the tag the store keys on:
// NAME gets ":latest", Docker Hub prefixes are dropped ("docker.io/library/x"
// == "x"), and digest references (NAME@sha256:...) are kept verbatim.
func NormalizeTag(ref string) (string, error) {
	if ref == "" || strings.ContainsAny(ref, " \t\r\n\x00") {
		return "", fmt.Errorf("%w: %q", ErrInvalidRef, ref)
	}
	for _, p := range []string{"docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/"} {
		if rest, ok := strings.CutPrefix(ref, p); ok {
			ref = rest
			break
		}
	}
	if strings.Contains(ref, "@") {
		return ref, nil
	}
	slash := strings.LastIndex(ref, "/")
	last := ref[slash+1:]
	if i := strings.LastIndex(last, ":"); i >= 0 {
		if i == 0 || i == len(last)-1 {
			return "", fmt.Errorf("%w: %q", ErrInvalidRef, ref)
		}
		if slash < 0 && last[:i] == "sha256" {
			return "", fmt.Errorf("%w: %q looks like an image ID", ErrInvalidRef, ref)
		}
		return ref, nil
	}
	if last == "" {
		return "", fmt.Errorf("%w: %q", ErrInvalidRef, ref)
	}
	return ref + ":latest", nil
}

// tagNameRE is docker's grammar (distribution/reference) for the
// NAME:TAG a tag is made of: an optional registry host (with a port), then
// lowercase path components joined by '/', each letters and digits joined
// by one '.', one or two '_' or any number of '-'; a tag of up to 128 word
// characters, '.' and '-', not starting with '.' or '-'.
var tagNameRE = regexp.MustCompile(`^` +
	`(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]+)?/)?` +
	`[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*` +
	`:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// NewTagName checks a name the user gives to a new image (`image import
// ROOTFS NAME[:TAG]`, Tag) and returns it normalized as NormalizeTag
// does. NormalizeTag only has to find images, so it takes any string
// without blanks; a new tag must be one docker and registries take: before,
// "Bad:Name", "x/../y", "a:b:c" and "a@b" (stored untagged) were all
// accepted, and an image named so could not be pushed, pulled or
// referenced from a compose file.
func NewTagName(ref string) (string, error) {
	t, err := NormalizeTag(ref)
	if err != nil {
		return "", err
	}
	name := t
	if i := strings.LastIndex(t, ":"); i >= 0 {
		name = t[:i]
	}
	if !tagNameRE.MatchString(t) || len(name) > 255 {
		return "", fmt.Errorf("%w: %q: want NAME[:TAG], NAME of lowercase letters, digits and separators ('.', '_', '-', '/'; a registry host may lead), TAG of up to 128 letters, digits, '_', '.' and '-'", ErrInvalidRef, ref)
	}
	return t, nil
}

func (s *Store) toAPI(rec *record) api.Image {
	cfg := rec.Config
	img := api.Image{
		ID:      rec.ID,
		Tags:    append([]string{}, rec.Tags...),
		Size:    rec.Size,
		Created: rec.Created,
		Source:  rec.Source,
		Config:  &cfg,
	}
	for _, l := range rec.Layers {
		img.Layers = append(img.Layers, l.Digest)
		img.DiffIDs = append(img.DiffIDs, l.DiffID)
	}
	return img
}

// lookupLocked resolves a tag, an image ID or a unique ID prefix (4+ hex
// digits, with or without "sha256:"). byTag is the tag matched, if any.
func (s *Store) lookupLocked(ref string) (rec *record, byTag string, err error) {
	if ref == "" {
		return nil, "", fmt.Errorf("%w: empty reference", ErrInvalidRef)
	}
	if tag, err := NormalizeTag(ref); err == nil {
		if id, ok := s.tags[tag]; ok {
			return s.images[id], tag, nil
		}
	}
	h := strings.TrimPrefix(ref, "sha256:")
	if len(h) >= 4 && len(h) <= 64 && isHex(h) {
		var found *record
		for id, r := range s.images {
			if strings.HasPrefix(id, "sha256:"+h) {
				if found != nil {
					return nil, "", fmt.Errorf("image %s: %w", ref, ErrAmbiguous)
				}
				found = r
			}
		}
		if found != nil {
			return found, "", nil
		}
	}
	return nil, "", fmt.Errorf("image %s: %w", ref, ErrNotFound)
}

// List returns every image, newest first.
func (s *Store) List() []api.Image {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]api.Image, 0, len(s.images))
	for _, rec := range s.images {
		out = append(out, s.toAPI(rec))
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.After(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Get returns the image named by ref: a tag (NAME[:TAG], default latest), an
// image ID or a unique ID prefix. Errors wrap ErrNotFound or ErrAmbiguous.
func (s *Store) Get(ref string) (api.Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, _, err := s.lookupLocked(ref)
	if err != nil {
		return api.Image{}, err
	}
	return s.toAPI(rec), nil
}

// Resolve returns what the container side needs to run ref: the image, its
// config, and the absolute directories of its unpacked layers, BASE FIRST
// (reverse them for overlayfs lowerdir). The directories must not be
// modified.
func (s *Store) Resolve(ref string) (api.Image, api.ImageConfig, []string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, _, err := s.lookupLocked(ref)
	if err != nil {
		return api.Image{}, api.ImageConfig{}, nil, err
	}
	dirs := make([]string, 0, len(rec.Layers))
	for _, l := range rec.Layers {
		d := s.layerPath(l.DiffID)
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			return api.Image{}, api.ImageConfig{}, nil, fmt.Errorf("resolve %s: layer %s: %w", ref, l.DiffID, ErrNotFound)
		}
		dirs = append(dirs, d)
	}
	img := s.toAPI(rec)
	return img, *img.Config, dirs, nil
}

// Tag points tag at the image ref resolves to, moving it from any other
// image.
func (s *Store) Tag(ref, tag string) error {
	t, err := NewTagName(tag)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, _, err := s.lookupLocked(ref)
	if err != nil {
		return err
	}
	return s.tagLocked(rec, []string{t})
}

// tagLocked points tags at rec and persists every touched record.
func (s *Store) tagLocked(rec *record, tags []string) error {
	touched := map[string]*record{rec.ID: rec}
	for _, t := range tags {
		if old, ok := s.tags[t]; ok && old != rec.ID {
			if o := s.images[old]; o != nil {
				o.Tags = removeString(o.Tags, t)
				touched[o.ID] = o
			}
		}
		s.tags[t] = rec.ID
		if !containsString(rec.Tags, t) {
			rec.Tags = append(rec.Tags, t)
		}
	}
	sort.Strings(rec.Tags)
	var errs []error
	for _, r := range touched {
		errs = append(errs, s.saveRecordLocked(r))
	}
	errs = append(errs, s.saveTagsLocked())
	return errors.Join(errs...)
}

func removeString(list []string, v string) []string {
	out := list[:0]
	for _, x := range list {
		if x != v {
			out = append(out, x)
		}
	}
	return out
}

func containsString(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// Remove untags ref when it is one of several tags of its image; otherwise
// (last tag, or an image ID) it removes the image, unless Config.InUse says
// a container uses it (ErrInUse). Layers and blobs stay until GC.
func (s *Store) Remove(ref string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, tag, err := s.lookupLocked(ref)
	if err != nil {
		return err
	}
	if tag != "" && len(rec.Tags) > 1 {
		delete(s.tags, tag)
		rec.Tags = removeString(rec.Tags, tag)
		return errors.Join(s.saveRecordLocked(rec), s.saveTagsLocked())
	}
	if s.cfg.InUse != nil && s.cfg.InUse(rec.ID) {
		return fmt.Errorf("remove image %s: %w", ref, ErrInUse)
	}
	for _, t := range rec.Tags {
		delete(s.tags, t)
	}
	delete(s.images, rec.ID)
	err = os.Remove(s.path("images", strings.TrimPrefix(rec.ID, "sha256:")+".json"))
	if errors.Is(err, fs.ErrNotExist) {
		err = nil
	}
	if err := errors.Join(err, s.saveTagsLocked()); err != nil {
		return fmt.Errorf("remove image %s: %w", ref, err)
	}
	s.log.Info("image removed", "id", rec.ID, "ref", ref)
	return nil
}

// GC deletes blobs and unpacked layers that no image references, and any
// leftover temporaries, and returns the bytes freed. It waits for ingests in
// progress. Blobs ingested for a CommitImage that has not happened yet are
// removed too.
func (s *Store) GC() (freed int64, err error) {
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	keepBlobs, keepLayers := map[string]bool{}, map[string]bool{}
	s.mu.Lock()
	for _, rec := range s.images {
		keepBlobs[strings.TrimPrefix(rec.ID, "sha256:")] = true
		for _, l := range rec.Layers {
			keepBlobs[strings.TrimPrefix(l.Digest, "sha256:")] = true
			keepLayers[strings.TrimPrefix(l.DiffID, "sha256:")] = true
		}
	}
	s.mu.Unlock()
	var errs []error
	sweep := func(dir string, keep map[string]bool) {
		ents, err := os.ReadDir(dir)
		if err != nil {
			errs = append(errs, err)
			return
		}
		for _, e := range ents {
			if keep[e.Name()] {
				continue
			}
			p := filepath.Join(dir, e.Name())
			n := diskUsage(p)
			if err := os.RemoveAll(p); err != nil {
				errs = append(errs, err)
				continue
			}
			freed += n
		}
	}
	sweep(s.path("blobs", "sha256"), keepBlobs)
	sweep(s.path("layers"), keepLayers)
	if err := errors.Join(errs...); err != nil {
		return freed, fmt.Errorf("image gc: %w", err)
	}
	if freed > 0 {
		s.log.Info("image gc", "freed_bytes", freed)
	}
	return freed, nil
}

// diskUsage sums the sizes of the regular files under p (p itself included).
func diskUsage(p string) int64 {
	var n int64
	_ = filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

// blobWriter stages a blob in a temporary file, hashing while it writes.
type blobWriter struct {
	s    *Store
	f    *os.File
	h    hash.Hash
	n    int64
	head []byte // first bytes, to sniff compression
	done bool
}

func (s *Store) newBlobWriter() (*blobWriter, error) {
	f, err := os.CreateTemp(s.path("blobs", "sha256"), ".tmp-")
	if err != nil {
		return nil, fmt.Errorf("stage blob: %w", err)
	}
	return &blobWriter{s: s, f: f, h: sha256.New()}, nil
}

func (w *blobWriter) Write(p []byte) (int, error) {
	if len(w.head) < 4 {
		w.head = append(w.head, p[:min(len(p), 4-len(w.head))]...)
	}
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	return n, err
}

// commit verifies the digest (when want is set) and renames the blob into
// place. On mismatch nothing is kept.
func (w *blobWriter) commit(want string) (string, int64, error) {
	defer w.abort()
	got := "sha256:" + hex.EncodeToString(w.h.Sum(nil))
	if want != "" && got != want {
		return "", 0, fmt.Errorf("blob %s: got %s: %w", want, got, ErrDigestMismatch)
	}
	if err := w.f.Sync(); err != nil {
		return "", 0, fmt.Errorf("stage blob: %w", err)
	}
	if err := w.f.Close(); err != nil {
		return "", 0, fmt.Errorf("stage blob: %w", err)
	}
	if err := os.Rename(w.f.Name(), w.s.blobPath(got)); err != nil {
		return "", 0, fmt.Errorf("store blob %s: %w", got, err)
	}
	w.done = true
	return got, w.n, nil
}

// abort discards the staged blob unless it was committed; safe to repeat.
func (w *blobWriter) abort() {
	if w.done {
		return
	}
	w.done = true
	_ = w.f.Close()
	_ = os.Remove(w.f.Name())
}

// writeBlob stores r as a blob, verifying it against want when set.
func (s *Store) writeBlob(r io.Reader, want string) (string, int64, error) {
	w, err := s.newBlobWriter()
	if err != nil {
		return "", 0, err
	}
	defer w.abort()
	if _, err := io.Copy(w, r); err != nil {
		return "", 0, fmt.Errorf("write blob %s: %w", want, err)
	}
	return w.commit(want)
}

// HasBlob reports whether the blob with this digest is stored.
func (s *Store) HasBlob(digest string) bool {
	if validDigest(digest) != nil {
		return false
	}
	st, err := os.Stat(s.blobPath(digest))
	return err == nil && st.Mode().IsRegular()
}

// OpenBlob opens a stored blob for reading (to serve it to a peer) and
// returns its size. The caller closes it.
func (s *Store) OpenBlob(digest string) (io.ReadCloser, int64, error) {
	if err := validDigest(digest); err != nil {
		return nil, 0, err
	}
	f, err := os.Open(s.blobPath(digest))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, fmt.Errorf("blob %s: %w", digest, ErrNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("blob %s: %w", digest, err)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, 0, fmt.Errorf("blob %s: %w", digest, err)
	}
	return f, st.Size(), nil
}

// IngestBlob stores r as the blob digest, verifying its hash: a mismatch
// returns ErrDigestMismatch and stores nothing. Idempotent.
//
// size is the blob's size as the image's descriptor gives it (0: not
// given). The sender is a peer that chose both the descriptor and the
// stream, and a digest is only checked once the last byte is in, so what
// is written is bounded first: at most size bytes (a longer or shorter
// stream is refused), never more than Limits.MaxTotalSize, and a known size
// must leave minFreeAfterIngest of the store's file system free. Without
// that bound a peer that streamed garbage for a made-up digest filled the
// disk (and the Raft log on it) before the mismatch was found.
func (s *Store) IngestBlob(digest string, size int64, r io.Reader) error {
	if err := validDigest(digest); err != nil {
		return err
	}
	limit := s.cfg.Limits.WithDefaults().MaxTotalSize
	if size > limit {
		return fmt.Errorf("ingest blob %s: %w: %d bytes, more than %d", digest, ErrTooLarge, size, limit)
	}
	if size > 0 {
		if err := s.roomFor(size); err != nil {
			return fmt.Errorf("ingest blob %s: %w", digest, err)
		}
		limit = size
	}
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	w, err := s.newBlobWriter()
	if err != nil {
		return fmt.Errorf("ingest blob: %w", err)
	}
	defer w.abort()
	n, err := io.Copy(w, io.LimitReader(r, limit+1))
	if err != nil {
		return fmt.Errorf("ingest blob: write blob %s: %w", digest, err)
	}
	switch {
	case n > limit:
		return fmt.Errorf("ingest blob %s: %w: more than %d bytes", digest, ErrTooLarge, limit)
	case size > 0 && n != size:
		return fmt.Errorf("ingest blob %s: %d bytes, the descriptor says %d: %w", digest, n, size, ErrDigestMismatch)
	}
	if _, _, err := w.commit(digest); err != nil {
		return fmt.Errorf("ingest blob: %w", err)
	}
	return nil
}

// minFreeAfterIngest is what a blob of known size must leave free on the
// store's file system: the agent's Raft log and container records share it.
const minFreeAfterIngest = 256 << 20

// FreeReserve is the free space (bytes) the node keeps on its data dir's
// file system: a blob that would leave less is refused. The node's disk
// health check (node/diskhealth) reports a node below it as unfit for new
// tasks, since every image fetch there would be refused.
const FreeReserve = minFreeAfterIngest

// roomFor refuses a blob of size bytes that would leave less than
// minFreeAfterIngest free where blobs are staged.
func (s *Store) roomFor(size int64) error {
	var st unix.Statfs_t
	if err := unix.Statfs(s.path("blobs", "sha256"), &st); err != nil {
		return fmt.Errorf("free space: %w", err)
	}
	return checkRoom(size, int64(st.Bavail)*st.Bsize, s.path("blobs", "sha256"))
}

// checkRoom refuses a blob of size bytes when free bytes (of the file
// system holding dir) would drop below minFreeAfterIngest. Its error names
// the reserve: "371 bytes with 41689088 free" read as a bug on a small
// disk, where a tiny blob was refused with tens of MiB free.
func checkRoom(size, free int64, dir string) error {
	if size <= free-minFreeAfterIngest {
		return nil
	}
	return fmt.Errorf("%w: a blob of %d bytes would leave %.1f MiB free on the file system of %s, less than the %d MiB the node keeps free for its Raft log and containers",
		ErrNoSpace, size, float64(max(free-size, 0))/(1<<20), dir, minFreeAfterIngest>>20)
}

var knownLayerTypes = map[types.MediaType]bool{
	types.DockerLayer:                    true,
	types.DockerForeignLayer:             true,
	types.DockerUncompressedLayer:        true,
	types.OCILayer:                       true,
	types.OCILayerZStd:                   true,
	types.OCIRestrictedLayer:             true,
	types.OCIUncompressedLayer:           true,
	types.OCIUncompressedRestrictedLayer: true,
}

func checkLayerType(mt types.MediaType) error {
	if !knownLayerTypes[mt] {
		return fmt.Errorf("layer media type %q: %w", mt, ErrUnknownMediaType)
	}
	return nil
}

func checkConfigType(mt types.MediaType) error {
	if mt != types.DockerConfigJSON && mt != types.OCIConfigJSON {
		return fmt.Errorf("config media type %q: %w", mt, ErrUnknownMediaType)
	}
	return nil
}

// installLayer renames an unpacked temporary directory to the layer's place;
// if another ingest got there first, ours is discarded.
func (s *Store) installLayer(tmp, diffID string) error {
	dst := s.layerPath(diffID)
	// The unpacked files reach the disk before the layer's name does: a
	// layer dir is taken as complete by its name alone, and after a power
	// loss a renamed dir of empty or torn files would have been run from
	// without an error. One syncfs per layer, not an fsync per file (an
	// image of many small files would take minutes).
	if err := syncLayer(tmp); err != nil {
		_ = os.RemoveAll(tmp)
		return fmt.Errorf("install layer %s: sync: %w", diffID, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		_ = os.RemoveAll(tmp)
		if st, serr := os.Stat(dst); serr == nil && st.IsDir() {
			return nil
		}
		return fmt.Errorf("install layer %s: %w", diffID, err)
	}
	return nil
}

// syncLayer flushes the file system that holds dir (tests replace it).
var syncLayer = func(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

func (s *Store) layerTemp() (string, error) {
	d, err := os.MkdirTemp(s.path("layers"), ".new-")
	if err != nil {
		return "", err
	}
	// Unpack wants a name that does not exist yet.
	if err := os.Remove(d); err != nil {
		return "", err
	}
	return d, nil
}

// unpackedSize finds the unpacked size of a layer already on disk.
func (s *Store) unpackedSize(diffID string) int64 {
	s.mu.Lock()
	for _, rec := range s.images {
		for _, l := range rec.Layers {
			if l.DiffID == diffID {
				s.mu.Unlock()
				return l.UnpackedSize
			}
		}
	}
	s.mu.Unlock()
	return diskUsage(s.layerPath(diffID))
}

// ensureLayer makes sure the blob digest and the unpacked layer diffID are
// both present. open yields the compressed blob when it is not stored yet;
// srcErr (may be nil) is wrapped around failures to read the source. The
// caller holds gcMu for reading.
func (s *Store) ensureLayer(ctx context.Context, li layerInfo, open func() (io.ReadCloser, error), srcErr error) (layerInfo, error) {
	if err := validDigest(li.Digest); err != nil {
		return li, err
	}
	if err := validDigest(li.DiffID); err != nil {
		return li, err
	}
	haveBlob := s.HasBlob(li.Digest)
	_, lerr := os.Stat(s.layerPath(li.DiffID))
	haveLayer := lerr == nil
	switch {
	case haveBlob && haveLayer:
		st, err := os.Stat(s.blobPath(li.Digest))
		if err != nil {
			return li, err
		}
		li.Size = st.Size()
		li.UnpackedSize = s.unpackedSize(li.DiffID)
		return li, nil
	case haveBlob:
		f, err := os.Open(s.blobPath(li.Digest))
		if err != nil {
			return li, err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return li, err
		}
		li.Size = st.Size()
		tmp, err := s.layerTemp()
		if err != nil {
			return li, err
		}
		size, err := s.unpackVerified(ctx, f, tmp, li.DiffID)
		if err != nil {
			return li, err
		}
		li.UnpackedSize = size
		return li, s.installLayer(tmp, li.DiffID)
	}
	rc, err := open()
	if err != nil {
		return li, wrapSrc(srcErr, fmt.Errorf("open layer %s: %w", li.Digest, err))
	}
	defer rc.Close()
	w, err := s.newBlobWriter()
	if err != nil {
		return li, err
	}
	defer w.abort()
	src := io.TeeReader(rc, w)
	var tmp string
	if !haveLayer {
		if tmp, err = s.layerTemp(); err != nil {
			return li, err
		}
		size, err := s.unpackVerified(ctx, src, tmp, li.DiffID)
		if err != nil {
			return li, wrapSrc(srcErr, err)
		}
		li.UnpackedSize = size
	}
	if _, err := io.Copy(io.Discard, src); err != nil {
		_ = os.RemoveAll(tmp)
		return li, wrapSrc(srcErr, fmt.Errorf("read layer %s: %w", li.Digest, err))
	}
	_, n, err := w.commit(li.Digest)
	if err != nil {
		_ = os.RemoveAll(tmp)
		return li, err
	}
	li.Size = n
	if haveLayer {
		li.UnpackedSize = s.unpackedSize(li.DiffID)
		return li, nil
	}
	return li, s.installLayer(tmp, li.DiffID)
}

func wrapSrc(sentinel, err error) error {
	if sentinel == nil || errors.Is(err, sentinel) || errors.Is(err, ErrDigestMismatch) ||
		errors.Is(err, ErrTooLarge) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%w: %w", sentinel, err)
}

// unpackVerified unpacks r into tmp and checks the diffID; on mismatch tmp is
// removed.
func (s *Store) unpackVerified(ctx context.Context, r io.Reader, tmp, diffID string) (int64, error) {
	got, size, err := unpack.Unpack(ctx, r, tmp, s.cfg.Limits)
	if err != nil {
		return 0, fmt.Errorf("layer %s: %w", diffID, err)
	}
	if got != diffID {
		_ = os.RemoveAll(tmp)
		return 0, fmt.Errorf("layer %s: uncompressed content hashes to %s: %w", diffID, got, ErrDigestMismatch)
	}
	return size, nil
}

// commitRecord adds rec (or, if the image exists, just its tags) to the index.
func (s *Store) commitRecord(rec *record, tags []string) (api.Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.images[rec.ID]; ok {
		rec = old
	} else {
		rec.Tags = nil
		s.images[rec.ID] = rec
	}
	if err := s.tagLocked(rec, tags); err != nil {
		return api.Image{}, fmt.Errorf("commit image %s: %w", rec.ID, err)
	}
	s.log.Info("image stored", "id", rec.ID, "tags", rec.Tags, "source", rec.Source)
	return s.toAPI(rec), nil
}

func newRecord(id string, cfgMT types.MediaType, cfgSize int64, cf *v1.ConfigFile, layers []layerInfo, source string, now time.Time) *record {
	rec := &record{
		ID:              id,
		ConfigMediaType: string(cfgMT),
		ConfigSize:      cfgSize,
		Layers:          layers,
		Created:         cf.Created.Time,
		Source:          source,
		Config:          imageConfig(cf.Config),
	}
	if rec.Created.IsZero() {
		rec.Created = now
	}
	rec.Created = rec.Created.UTC()
	for _, l := range layers {
		rec.Size += l.UnpackedSize
	}
	return rec
}

// imageConfig keeps the part of an image config the runtime honours.
func imageConfig(c v1.Config) api.ImageConfig {
	out := api.ImageConfig{
		Entrypoint: c.Entrypoint,
		Cmd:        c.Cmd,
		Env:        c.Env,
		WorkingDir: c.WorkingDir,
		User:       c.User,
	}
	for p := range c.ExposedPorts {
		out.ExposedPorts = append(out.ExposedPorts, p)
	}
	sort.Strings(out.ExposedPorts)
	if h := c.Healthcheck; h != nil && len(h.Test) > 0 {
		out.Healthcheck = &api.HealthConfig{
			Test: h.Test, Interval: h.Interval, Timeout: h.Timeout,
			StartPeriod: h.StartPeriod, Retries: h.Retries,
		}
	}
	return out
}

// parseConfig parses and sanity-checks an image config blob.
func parseConfig(raw []byte) (*v1.ConfigFile, error) {
	cf, err := v1.ParseConfigFile(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%w: image config: %v", ErrInvalidArchive, err)
	}
	for _, d := range cf.RootFS.DiffIDs {
		if err := validDigest(d.String()); err != nil {
			return nil, fmt.Errorf("%w: image config diff_id: %v", ErrInvalidArchive, err)
		}
	}
	return cf, nil
}
