package writes

import (
	"fmt"
	"strings"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/authz"
	"github.com/shoal-org/shoal/node/handlers"
	"github.com/shoal-org/shoal/node/writes/workerimages"
)

// checkImageIDs refuses a node's command that announces an image under an
// ID the image store cannot have made. The cluster resolves a reference
// by tag or by ID prefix (handlers.FindClusterImage, records in ID order):
// a record whose ID was `registry.corp/app:2` took that name for every
// service naming it, ahead of the image that carries the tag — every node
// then asked a holder for an image no store can hold and the service never
// ran. An honest agent announces only its store's IDs, so the whole
// command is refused (consensus.ErrInvalid).
func checkImageIDs(cmd command.Command) error {
	var bad string
	eachCommand(cmd, func(c command.Command) command.Command {
		switch x := c.(type) {
		case command.UpsertImage:
			if !workerimages.ValidImageID(x.Image.ID) {
				bad = x.Image.ID
			}
		case *command.UpsertImage:
			if !workerimages.ValidImageID(x.Image.ID) {
				bad = x.Image.ID
			}
		case command.SetImageNode:
			if x.Present && !workerimages.ValidImageID(x.ImageID) {
				bad = x.ImageID
			}
		case *command.SetImageNode:
			if x.Present && !workerimages.ValidImageID(x.ImageID) {
				bad = x.ImageID
			}
		}
		return c
	})
	if bad != "" {
		return fmt.Errorf("%w: image ID %q is not a digest (sha256:<64 hex>)", consensus.ErrInvalid, bad)
	}
	return nil
}

// workerImageRecords returns cmd, a command worker node id proposes about
// itself, with every image record it announces (command.UpsertImage,
// command.SetImageNode) cut to what a node may say about its own holdings
// and what the leader can check of it, and the claims that fail that left
// out. An error means nothing of cmd is left to propose.
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
//
// Nor does it hold what none of its tasks runs. A worker fetches or pulls
// an image for a task assigned to it (Ensure), so a claim counts only for
// the record one of its tasks' image references resolves to, as Ensure
// resolves it (handlers.FindClusterImage); and it creates a record only
// for an image it pulled for a task (its source is `pull REF`, REF a
// task's reference the cluster did not know or the source of the record
// a task's reference names), at most MaxWorkerImages
// of them, with no more than MaxImageLayers layers and no config. Before,
// a worker could list itself on every record — and every node fetching
// any image then asked it first (holders are tried in ID order), to be
// refused, sent another image or slowed — and create records by the
// thousand for images the state never had, each of them a name `service
// create --image ID` trusted. The honest cost: an image a worker fetched
// for `shoal run` is not recorded as held by it (it stays its own).
//
// For an image the state already records, the record's other fields stay
// as they are; the state machine merges an announcement's tags into the
// record, so none here leaves the record's tags as they are when it
// applies (a tag a manager moved meanwhile stays moved). The rest of the
// report is kept, as in ownTaskAddrs: refusing the batch would stop the
// node's other reports.
func (w *Writer) workerImageRecords(id string, cmd command.Command) (command.Command, error) {
	rule := w.workerImages(id)
	var refused []string
	// record applies the rule to an announced image: the image to keep,
	// or ok false when it is refused.
	record := func(in api.Image) (api.Image, bool) {
		img, dropped, why := rule.Record(in)
		if why != "" {
			refused = append(refused, fmt.Sprintf("image %s: %s", in.ID, why))
			return img, false
		}
		if len(dropped) > 0 {
			w.log.Info("a worker names no image: dropped the tags it announced", "node_id", api.ShortID(id),
				"image", in.ID, "tags", dropped, "source", in.Source)
		}
		return img, true
	}
	claim := func(x command.SetImageNode) bool {
		if why := rule.Claim(x); why != "" {
			refused = append(refused, fmt.Sprintf("image %s: %s", x.ImageID, why))
			return false
		}
		return true
	}
	out := filterCommands(cmd, func(c command.Command) command.Command {
		switch x := c.(type) {
		case command.UpsertImage:
			if img, ok := record(x.Image); ok {
				return command.UpsertImage{Image: img}
			}
			return nil
		case *command.UpsertImage:
			if img, ok := record(x.Image); ok {
				return &command.UpsertImage{Image: img}
			}
			return nil
		case command.SetImageNode:
			if !claim(x) {
				return nil
			}
		case *command.SetImageNode:
			if !claim(*x) {
				return nil
			}
		}
		return c
	})
	if len(refused) > 0 {
		w.log.Info("dropped a worker's image announcements", "node_id", api.ShortID(id), "why", refused)
	}
	if out == nil {
		return nil, fmt.Errorf("%w: node %s: %s", authz.ErrForbidden, api.ShortID(id), strings.Join(refused, "; "))
	}
	return out, nil
}

// workerImages reads what workerimages.Rule decides on from the leader's
// replica: its image records and the image references of node id's tasks.
func (w *Writer) workerImages(id string) workerimages.Rule {
	r := workerimages.Rule{Node: id, Images: w.cfg.Store.Images(), Needed: map[string]bool{}, Pulls: map[string]bool{}}
	for _, t := range w.cfg.Store.TasksByNode(id) {
		ref := t.Spec.Image
		if ref == "" {
			continue
		}
		if rec, ok := handlers.FindClusterImage(w.cfg.Store, ref); ok {
			r.Needed[rec.ID] = true
			if src, pulled := strings.CutPrefix(rec.Source, "pull "); pulled {
				r.Pulls[src] = true // no holder ready: Ensure pulls the record's source
			}
		} else {
			r.Pulls[ref] = true
		}
	}
	return r
}

// filterCommands is eachCommand where f may return nil to leave a command
// out; a batch keeps what is left, and nil comes back when nothing is.
func filterCommands(cmd command.Command, f func(command.Command) command.Command) command.Command {
	each := func(cmds []command.Command) []command.Command {
		var out []command.Command
		for _, inner := range cmds {
			if c := filterCommands(inner, f); c != nil {
				out = append(out, c)
			}
		}
		return out
	}
	switch c := cmd.(type) {
	case command.Batch:
		if out := each(c.Commands); len(out) > 0 {
			return command.Batch{Commands: out}
		}
		return nil
	case *command.Batch:
		if out := each(c.Commands); len(out) > 0 {
			return &command.Batch{Commands: out}
		}
		return nil
	}
	return f(cmd)
}
