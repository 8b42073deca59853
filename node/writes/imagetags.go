package writes

import (
	"slices"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

// workerImageRecords returns cmd, a command worker node id proposes about
// itself, with every image record it announces (command.UpsertImage) cut to
// what a node may say about its own holdings: that it holds the image.
//
// A worker names no image cluster-wide: its announcements carry no tags,
// and a record the state lacks gets no source. Tags name images for the
// whole cluster (a service's `web:latest` resolves through them, and every
// node then fetches that image), and a source is the registry a node pulls
// from when no holder is ready, with the service's registry credentials.
// A worker's root may not change the cluster: with a tag no other image
// held it could take a name before an admin's pull or import
// (`registry.corp/app:2` for a service created with --with-registry-auth)
// and have every node run its image under it, or with a `pull
// attacker.example/...` source of its choice have them send the service's
// credentials there. So the rule is simple: a worker's word never names.
// The honest cost is small: a worker's socket is read-only, so what a
// worker imports, loads or pulls on it stays its own (`shoal run` there);
// images it fetched from a peer are already recorded (it joins their
// holders); an image it pulled for a task with registry credentials is
// recorded by ID alone, and the other nodes pull it themselves. An image
// for the cluster is imported or pulled on a manager, whose announcements
// stand as made (its root is an admin).
//
// For an image the state already records, the record's other fields stay
// as they are; the state machine merges an announcement's tags into the
// record, so none here leaves the record's tags as they are when it
// applies (a tag a manager moved meanwhile stays moved). The report itself
// is kept, as in ownTaskAddrs: refusing the batch would stop the node's
// other reports.
func (w *Writer) workerImageRecords(id string, cmd command.Command) command.Command {
	return eachOf(cmd, func(c command.UpsertImage) command.UpsertImage { return w.workerImageRecord(id, c) })
}

func (w *Writer) workerImageRecord(id string, c command.UpsertImage) command.UpsertImage {
	img, dropped := WorkerImageRecord(c.Image, w.cfg.Store.Images())
	if len(dropped) > 0 {
		w.log.Info("a worker names no image: dropped the tags it announced", "node_id", api.ShortID(id),
			"image", c.Image.ID, "tags", dropped, "source", c.Image.Source)
	}
	c.Image = img
	return c
}

// WorkerImageRecord is the pure half of workerImageRecords: the record a
// worker may announce for img given the images the state holds (no tags;
// the recorded fields of a held image, no source for a new one), and the
// tags it asked for that the record did not carry.
func WorkerImageRecord(img api.Image, images []*api.Image) (api.Image, []string) {
	var out api.Image
	var had []string
	if i := slices.IndexFunc(images, func(o *api.Image) bool { return o.ID == img.ID }); i >= 0 {
		out = *consensus.CloneImage(images[i])
		had = images[i].Tags
	} else {
		out = *consensus.CloneImage(&img)
		out.Source = ""
	}
	out.Nodes = slices.Clone(img.Nodes)
	out.Tags = nil
	var dropped []string
	for _, t := range img.Tags {
		if !slices.Contains(had, t) {
			dropped = append(dropped, t)
		}
	}
	return out, dropped
}
