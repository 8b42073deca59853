package image

// Cluster image distribution: a node that lacks an image asks a peer for its
// Manifest, fetches the blobs it does not have (HasBlob / OpenBlob on the
// peer, IngestBlob here, each verified by digest) and then CommitImage builds
// the image locally, unpacking layers and checking diffIDs against the config.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/shoal-org/shoal/api"
)

// DescriptorSchema identifies the Descriptor format.
const DescriptorSchema = "shoal.image.v1"

// Descriptor is the small JSON document peers exchange to copy an image:
// everything needed to fetch its blobs and rebuild it.
type Descriptor struct {
	Schema string     `json:"schema"`
	ID     string     `json:"id"` // == Config.Digest
	Config BlobRef    `json:"config"`
	Layers []LayerRef `json:"layers"` // base first
	Tags   []string   `json:"tags,omitempty"`
	Source string     `json:"source,omitempty"`
}

// BlobRef names a blob.
type BlobRef struct {
	Digest    string `json:"digest"`
	MediaType string `json:"media_type"`
	Size      int64  `json:"size"`
}

// LayerRef names a layer blob and the diffID of its uncompressed content.
type LayerRef struct {
	BlobRef
	DiffID string `json:"diff_id"`
}

// Blobs lists every blob digest the descriptor needs, config first.
func (d Descriptor) Blobs() []string {
	out := []string{d.Config.Digest}
	for _, l := range d.Layers {
		out = append(out, l.Digest)
	}
	return out
}

// Manifest returns the JSON Descriptor of the image ref names.
func (s *Store) Manifest(ref string) ([]byte, error) {
	s.mu.Lock()
	rec, _, err := s.lookupLocked(ref)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	d := Descriptor{
		Schema: DescriptorSchema,
		ID:     rec.ID,
		Config: BlobRef{Digest: rec.ID, MediaType: rec.ConfigMediaType, Size: rec.ConfigSize},
		Tags:   append([]string{}, rec.Tags...),
		Source: rec.Source,
	}
	for _, l := range rec.Layers {
		d.Layers = append(d.Layers, LayerRef{BlobRef: BlobRef{Digest: l.Digest, MediaType: l.MediaType, Size: l.Size}, DiffID: l.DiffID})
	}
	s.mu.Unlock()
	return json.Marshal(d)
}

// ParseDescriptor decodes and validates a Descriptor.
func ParseDescriptor(raw []byte) (Descriptor, error) {
	var d Descriptor
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return d, fmt.Errorf("%w: descriptor: %v", ErrInvalidArchive, err)
	}
	if d.Schema != DescriptorSchema {
		return d, fmt.Errorf("%w: descriptor schema %q", ErrInvalidArchive, d.Schema)
	}
	if err := validDigest(d.ID); err != nil {
		return d, err
	}
	if d.Config.Digest != d.ID {
		return d, fmt.Errorf("%w: descriptor config %s is not the image ID %s", ErrInvalidArchive, d.Config.Digest, d.ID)
	}
	if err := checkConfigType(types.MediaType(d.Config.MediaType)); err != nil {
		return d, err
	}
	for _, l := range d.Layers {
		if err := validDigest(l.Digest); err != nil {
			return d, err
		}
		if err := validDigest(l.DiffID); err != nil {
			return d, err
		}
		if err := checkLayerType(types.MediaType(l.MediaType)); err != nil {
			return d, err
		}
	}
	for i, t := range d.Tags {
		nt, err := NormalizeTag(t)
		if err != nil {
			return d, err
		}
		d.Tags[i] = nt
	}
	return d, nil
}

// CommitImage builds the image a Descriptor (from a peer's Manifest) names,
// once all its blobs were ingested: it checks the config against the
// descriptor, unpacks missing layers (verifying diffIDs) and records the
// image with the descriptor's tags. A missing blob wraps ErrNotFound.
func (s *Store) CommitImage(descriptor []byte) (api.Image, error) {
	d, err := ParseDescriptor(descriptor)
	if err != nil {
		return api.Image{}, fmt.Errorf("commit image: %w", err)
	}
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	for _, b := range d.Blobs() {
		if !s.HasBlob(b) {
			return api.Image{}, fmt.Errorf("commit image %s: blob %s: %w", d.ID, b, ErrNotFound)
		}
	}
	// The config came from a peer, which chose its size: read it with a cap.
	f, err := os.Open(s.blobPath(d.ID))
	if err != nil {
		return api.Image{}, fmt.Errorf("commit image %s: %w", d.ID, err)
	}
	raw, err := io.ReadAll(io.LimitReader(f, maxMetadataSize+1))
	f.Close()
	if err != nil {
		return api.Image{}, fmt.Errorf("commit image %s: %w", d.ID, err)
	}
	if len(raw) > maxMetadataSize {
		return api.Image{}, fmt.Errorf("commit image %s: %w: config larger than %d bytes", d.ID, ErrTooLarge, maxMetadataSize)
	}
	cf, err := parseConfig(raw)
	if err != nil {
		return api.Image{}, fmt.Errorf("commit image %s: %w", d.ID, err)
	}
	if len(cf.RootFS.DiffIDs) != len(d.Layers) {
		return api.Image{}, fmt.Errorf("commit image %s: %w: %d layers but config has %d diff_ids", d.ID, ErrInvalidArchive, len(d.Layers), len(cf.RootFS.DiffIDs))
	}
	infos := make([]layerInfo, 0, len(d.Layers))
	for i, l := range d.Layers {
		if cf.RootFS.DiffIDs[i].String() != l.DiffID {
			return api.Image{}, fmt.Errorf("commit image %s: layer %d diff_id %s, config says %s: %w", d.ID, i, l.DiffID, cf.RootFS.DiffIDs[i], ErrDigestMismatch)
		}
		li := layerInfo{Digest: l.Digest, MediaType: l.MediaType, DiffID: l.DiffID}
		missing := func() (io.ReadCloser, error) { return nil, ErrNotFound }
		li, err = s.ensureLayer(context.Background(), li, missing, nil)
		if err != nil {
			return api.Image{}, fmt.Errorf("commit image %s: %w", d.ID, err)
		}
		infos = append(infos, li)
	}
	rec := newRecord(d.ID, types.MediaType(d.Config.MediaType), int64(len(raw)), cf, infos, d.Source, s.cfg.Now())
	return s.commitRecord(rec, d.Tags)
}
