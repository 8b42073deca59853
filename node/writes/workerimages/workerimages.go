// Package workerimages is the leader's rule for what a worker node may
// announce about the images it holds: no tags and no source (a worker's
// word never names an image cluster-wide), claims only on records its
// tasks need, new records only for images it pulled for a task, bounded in
// number and layers. Pure: node/writes reads the state and applies it.
package workerimages

import (
	"fmt"
	"slices"
	"strings"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

// Limits on what a worker's image announcements may add to the state.
const (
	// MaxWorkerImages bounds the image records a worker is the only
	// holder of: the records it created (an image it pulled for a task
	// with registry credentials, which the cluster did not know) — each
	// new one is refused past it, and the image stays the worker's own
	// (every other node pulls it itself, as it does anyway: such a record
	// carries no tag).
	MaxWorkerImages = 64
	// MaxImageLayers bounds the layers a worker's new record lists
	// (Docker's limit is 127).
	MaxImageLayers = 128
)

// ValidImageID reports whether id is an image ID as the image store makes
// them: "sha256:" and 64 lowercase hex digits (the digest of the config).
func ValidImageID(id string) bool {
	h, ok := strings.CutPrefix(id, "sha256:")
	if !ok || len(h) != 64 {
		return false
	}
	for _, c := range h {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Rule is what a worker may say of its images, for one worker: the pure
// part of the leader's check of a worker's image announcements
// (node/writes, workerImageRecords, says why).
type Rule struct {
	Node   string
	Images []*api.Image // the state's records
	// Needed holds the IDs of the records the image references of the
	// node's tasks resolve to (handlers.FindClusterImage).
	Needed map[string]bool
	// Pulls holds the references the node pulls from a registry for its
	// tasks (imagedist.Ensure): those that resolve to no record, and the
	// `pull REF` sources of the records its tasks need (the registry may
	// have moved REF to another image since).
	Pulls map[string]bool
}

// Record returns the record a worker may announce for img (no tags; the
// recorded fields of a held image; no source and no config for a new one),
// the tags it asked for that the record did not carry, and why the
// announcement is dropped ("" when it is not).
func (r Rule) Record(img api.Image) (api.Image, []string, string) {
	var out api.Image
	var had []string
	if i := slices.IndexFunc(r.Images, func(o *api.Image) bool { return o.ID == img.ID }); i >= 0 {
		if len(img.Nodes) > 0 && !r.Needed[img.ID] {
			return api.Image{}, nil, "no task of the node runs it"
		}
		out = *consensus.CloneImage(r.Images[i])
		had = r.Images[i].Tags
	} else {
		if why := r.newRecord(img); why != "" {
			return api.Image{}, nil, why
		}
		out = *consensus.CloneImage(&img)
		out.Source = ""
		out.Config = nil
	}
	out.Nodes = slices.Clone(img.Nodes)
	out.Tags = nil
	var dropped []string
	for _, t := range img.Tags {
		if !slices.Contains(had, t) {
			dropped = append(dropped, t)
		}
	}
	return out, dropped, ""
}

// newRecord says why a worker may not create img's record ("" when it may).
func (r Rule) newRecord(img api.Image) string {
	ref, pulled := strings.CutPrefix(img.Source, "pull ")
	switch {
	case !pulled || !r.Pulls[ref]:
		return "the cluster has no record of it, and the node pulled it for none of its tasks"
	case len(img.Layers) > MaxImageLayers || len(img.DiffIDs) > MaxImageLayers:
		return fmt.Sprintf("more than %d layers", MaxImageLayers)
	}
	sole := 0
	for _, o := range r.Images {
		if len(o.Nodes) == 1 && o.Nodes[0] == r.Node {
			sole++
		}
	}
	if sole >= MaxWorkerImages {
		return fmt.Sprintf("the node already holds %d images no other node holds (at most %d)", sole, MaxWorkerImages)
	}
	return ""
}

// Claim says why a worker's SetImageNode is dropped ("" when it is not):
// a node forgets its own images freely, and holds only what a task of it
// runs.
func (r Rule) Claim(c command.SetImageNode) string {
	if !c.Present || r.Needed[c.ImageID] {
		return ""
	}
	return "no task of the node runs it"
}
