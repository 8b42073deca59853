package writes

import (
	"slices"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

// workerImageRecords returns cmd, a command worker node id proposes about
// itself, with every image record it announces (command.UpsertImage) cut to
// what a node may say about its own holdings: itself as a holder, and tags
// no other image holds. Tags name images cluster-wide (a service's
// `web:latest` resolves through them, and every node then fetches that
// image), and a worker's root may not change the cluster: a worker that
// moved a tag to an image of its own would have had the next update of
// every service using it run that image everywhere. For an image the state
// already records, the record's other fields stay as they are. Managers
// keep moving tags (their root is an admin). The report itself is kept, as
// in ownTaskAddrs: refusing the batch would stop the node's other reports.
func (w *Writer) workerImageRecords(id string, cmd command.Command) command.Command {
	return eachOf(cmd, func(c command.UpsertImage) command.UpsertImage { return w.workerImageRecord(id, c) })
}

func (w *Writer) workerImageRecord(id string, c command.UpsertImage) command.UpsertImage {
	img, dropped := WorkerImageRecord(c.Image, w.cfg.Store.Images())
	for _, t := range dropped {
		w.log.Warn("dropped a tag a worker moved to its own image", "node_id", api.ShortID(id), "image", c.Image.ID, "tag", t)
	}
	c.Image = img
	return c
}

// WorkerImageRecord is the pure half of workerImageRecords: the record a
// worker may announce for img given the images the state holds, and the
// tags it dropped.
func WorkerImageRecord(img api.Image, images []*api.Image) (api.Image, []string) {
	out := *consensus.CloneImage(&img)
	var kept, dropped []string
	for _, t := range img.Tags {
		held := slices.ContainsFunc(images, func(o *api.Image) bool {
			return o.ID != img.ID && slices.Contains(o.Tags, t)
		})
		if held {
			dropped = append(dropped, t)
		} else {
			kept = append(kept, t)
		}
	}
	if i := slices.IndexFunc(images, func(o *api.Image) bool { return o.ID == img.ID }); i >= 0 {
		out = *consensus.CloneImage(images[i])
		out.Nodes = slices.Clone(img.Nodes)
	}
	out.Tags = kept
	return out, dropped
}
