package consensus

import (
	"fmt"
	"slices"

	"github.com/shoal-org/shoal/api"
)

func (c UpsertImage) apply(w *writeTxn) (any, error) {
	if c.Image.ID == "" {
		return nil, fmt.Errorf("upsert image: empty ID: %w", ErrInvalid)
	}
	img := cloneImage(&c.Image)
	if old := first[api.Image](w, tableImages, indexID, img.ID); old != nil {
		img.Tags = unionSorted(old.Tags, img.Tags)
		img.Nodes = unionSorted(old.Nodes, img.Nodes)
	} else {
		img.Tags = unionSorted(nil, img.Tags)
		img.Nodes = unionSorted(nil, img.Nodes)
	}
	// A tag names one image: move it away from any other holder.
	for _, other := range all[api.Image](w, tableImages, indexID) {
		if other.ID == img.ID || !slices.ContainsFunc(other.Tags, func(t string) bool { return slices.Contains(img.Tags, t) }) {
			continue
		}
		o := cloneImage(other)
		o.Tags = slices.DeleteFunc(o.Tags, func(t string) bool { return slices.Contains(img.Tags, t) })
		if err := w.insert(tableImages, o); err != nil {
			return nil, err
		}
	}
	if err := w.insert(tableImages, img); err != nil {
		return nil, err
	}
	return cloneImage(img), nil
}

func (c SetImageNode) apply(w *writeTxn) (any, error) {
	old := first[api.Image](w, tableImages, indexID, c.ImageID)
	if old == nil {
		if !c.Present {
			return nil, nil
		}
		return nil, fmt.Errorf("set image %s on node %s: %w", c.ImageID, c.NodeID, ErrNotFound)
	}
	if c.NodeID == "" {
		return nil, fmt.Errorf("set image %s node: empty node ID: %w", c.ImageID, ErrInvalid)
	}
	img := cloneImage(old)
	if c.Present {
		img.Nodes = unionSorted(img.Nodes, []string{c.NodeID})
	} else {
		img.Nodes = slices.DeleteFunc(img.Nodes, func(id string) bool { return id == c.NodeID })
	}
	return nil, w.insert(tableImages, img)
}

func (c DeleteImage) apply(w *writeTxn) (any, error) {
	old := first[api.Image](w, tableImages, indexID, c.ID)
	if old == nil {
		return nil, fmt.Errorf("delete image %s: %w", c.ID, ErrNotFound)
	}
	return nil, w.delete(tableImages, old)
}

func unionSorted(a, b []string) []string {
	out := slices.Concat(a, b)
	out = slices.DeleteFunc(out, func(s string) bool { return s == "" })
	slices.Sort(out)
	return slices.Compact(out)
}
