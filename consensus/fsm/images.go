package fsm

import (
	"fmt"
	"slices"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

func applyUpsertImage(w *consensus.WriteTxn, c command.UpsertImage) (any, error) {
	if c.Image.ID == "" {
		return nil, fmt.Errorf("upsert image: empty ID: %w", consensus.ErrInvalid)
	}
	img := consensus.CloneImage(&c.Image)
	if old := consensus.First[api.Image](w, consensus.TableImages, consensus.IndexID, img.ID); old != nil {
		img.Tags = unionSorted(old.Tags, img.Tags)
		img.Nodes = unionSorted(old.Nodes, img.Nodes)
	} else {
		img.Tags = unionSorted(nil, img.Tags)
		img.Nodes = unionSorted(nil, img.Nodes)
	}
	// A tag names one image: move it away from any other holder.
	for _, other := range consensus.All[api.Image](w, consensus.TableImages, consensus.IndexID) {
		if other.ID == img.ID || !slices.ContainsFunc(other.Tags, func(t string) bool { return slices.Contains(img.Tags, t) }) {
			continue
		}
		o := consensus.CloneImage(other)
		o.Tags = slices.DeleteFunc(o.Tags, func(t string) bool { return slices.Contains(img.Tags, t) })
		if err := w.Insert(consensus.TableImages, o); err != nil {
			return nil, err
		}
	}
	if err := w.Insert(consensus.TableImages, img); err != nil {
		return nil, err
	}
	return consensus.CloneImage(img), nil
}

func applySetImageNode(w *consensus.WriteTxn, c command.SetImageNode) (any, error) {
	old := consensus.First[api.Image](w, consensus.TableImages, consensus.IndexID, c.ImageID)
	if old == nil {
		if !c.Present {
			return nil, nil
		}
		return nil, fmt.Errorf("set image %s on node %s: %w", c.ImageID, c.NodeID, consensus.ErrNotFound)
	}
	if c.NodeID == "" {
		return nil, fmt.Errorf("set image %s node: empty node ID: %w", c.ImageID, consensus.ErrInvalid)
	}
	img := consensus.CloneImage(old)
	if c.Present {
		img.Nodes = unionSorted(img.Nodes, []string{c.NodeID})
	} else {
		img.Nodes = slices.DeleteFunc(img.Nodes, func(id string) bool { return id == c.NodeID })
	}
	return nil, w.Insert(consensus.TableImages, img)
}

func applyDeleteImage(w *consensus.WriteTxn, c command.DeleteImage) (any, error) {
	old := consensus.First[api.Image](w, consensus.TableImages, consensus.IndexID, c.ID)
	if old == nil {
		return nil, fmt.Errorf("delete image %s: %w", c.ID, consensus.ErrNotFound)
	}
	return nil, w.Delete(consensus.TableImages, old)
}

func unionSorted(a, b []string) []string {
	out := slices.Concat(a, b)
	out = slices.DeleteFunc(out, func(s string) bool { return s == "" })
	slices.Sort(out)
	return slices.Compact(out)
}
