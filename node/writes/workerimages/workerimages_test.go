package workerimages

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

// digest is a valid image ID made of one repeated hex digit.
func digest(c string) string { return "sha256:" + strings.Repeat(c, 64) }

var (
	idA, idB, idC = digest("a"), digest("b"), digest("c")
)

// needing is the rule for worker "w" over images, with w's tasks needing
// the records of needed and naming unknown references.
func needing(images []*api.Image, needed []string, unknown ...string) Rule {
	r := Rule{Node: "w", Images: images, Needed: map[string]bool{}, Pulls: map[string]bool{}}
	for _, id := range needed {
		r.Needed[id] = true
	}
	for _, ref := range unknown {
		r.Pulls[ref] = true
	}
	return r
}

func TestWorkerImageRecord(t *testing.T) {
	held := []*api.Image{
		{ID: idA, Tags: []string{"web:latest", "web:1"}, Layers: []string{"l1"}, Source: "import", Nodes: []string{"m"}},
		{ID: idB, Tags: []string{"db:1"}, Nodes: []string{"m"}},
	}
	rule := needing(held, []string{idA, idB}, "app:1", "registry.corp/app:2")
	cases := []struct {
		name        string
		img         api.Image
		wantDropped []string
		wantLayers  []string
		wantSource  string
	}{
		{name: "new image, free tags", img: api.Image{ID: idC, Tags: []string{"app:1"}, Layers: []string{"x"}, Source: "pull app:1", Nodes: []string{"w"}},
			wantDropped: []string{"app:1"}, wantLayers: []string{"x"}},
		{name: "new image taking a held tag", img: api.Image{ID: idC, Tags: []string{"web:latest", "app:1"}, Source: "pull app:1", Nodes: []string{"w"}},
			wantDropped: []string{"web:latest", "app:1"}},
		{name: "held image, its own tags", img: api.Image{ID: idA, Tags: []string{"web:1"}, Layers: []string{"forged"}, Source: "pull x", Nodes: []string{"w"}},
			wantLayers: []string{"l1"}, wantSource: "import"},
		{name: "held image, a free tag", img: api.Image{ID: idA, Tags: []string{"web:1", "app:1"}, Nodes: []string{"w"}},
			wantDropped: []string{"app:1"}, wantLayers: []string{"l1"}, wantSource: "import"},
		{name: "held image taking another's tag", img: api.Image{ID: idA, Tags: []string{"db:1"}, Nodes: []string{"w"}},
			wantDropped: []string{"db:1"}, wantLayers: []string{"l1"}, wantSource: "import"},
	}
	for _, c := range cases {
		got, dropped, why := rule.Record(c.img)
		// No tags: the state machine merges an announcement's tags into
		// the record, so the record keeps its own.
		if why != "" || len(got.Tags) != 0 || !slices.Equal(dropped, c.wantDropped) || !slices.Equal(got.Layers, c.wantLayers) ||
			got.Source != c.wantSource || !slices.Equal(got.Nodes, c.img.Nodes) || got.ID != c.img.ID || got.Config != nil {
			t.Errorf("%s: got %+v dropped %v why %q", c.name, got, dropped, why)
		}
	}
}

// TestWorkerNamesNoImage: a worker announces what it holds, never what an
// image is called cluster-wide nor where it comes from. A worker kept any
// tag no other image held, with a record of its choosing (its source
// included): it could take registry.corp/app:2 before any node pulled it,
// and every node fetched the worker's image for a service naming it, or
// pulled the worker's `pull attacker.example/...` with the service's
// registry credentials when no holder was ready.
func TestWorkerNamesNoImage(t *testing.T) {
	held := []*api.Image{{ID: idA, Tags: []string{"web:1"}, Source: "import", Nodes: []string{"m"}}}
	rule := needing(held, []string{idA}, "registry.corp/app:2")
	squat := api.Image{ID: idC, Tags: []string{"registry.corp/app:2"}, Source: "pull registry.corp/app:2", Nodes: []string{"w"}}
	if got, _, why := rule.Record(squat); why != "" || len(got.Tags) != 0 || got.Source != "" {
		t.Errorf("a worker's new record: tags %v source %q (%s); want neither", got.Tags, got.Source, why)
	}
	tagOnto := api.Image{ID: idA, Tags: []string{"web:1", "registry.corp/app:2"}, Nodes: []string{"w"}}
	if got, _, why := rule.Record(tagOnto); why != "" || len(got.Tags) != 0 || got.Source != "import" {
		t.Errorf("a worker's claim on a held image: tags %v source %q (%s); want no tags and the record's source", got.Tags, got.Source, why)
	}
}

// TestWorkerHoldsWhatItRuns: a worker's claim counts only for a record its
// tasks need, and it creates a record only for an image it pulled for a
// task whose reference the cluster lacks, up to MaxWorkerImages, with
// MaxImageLayers layers at most; it forgets freely. Before, it could list
// itself on any record (every fetch of that image asked it first) and
// create any number of records for images the state never had.
func TestWorkerHoldsWhatItRuns(t *testing.T) {
	held := []*api.Image{
		{ID: idA, Tags: []string{"web:1"}, Nodes: []string{"m"}},
		{ID: idB, Tags: []string{"db:1"}, Nodes: []string{"m"}},
	}
	rule := needing(held, []string{idA}, "private/app:1")
	many := make([]string, MaxImageLayers+1)
	for _, c := range []struct {
		name string
		img  api.Image
		keep bool
	}{
		{"a record its task needs", api.Image{ID: idA, Nodes: []string{"w"}}, true},
		{"a record no task of it needs", api.Image{ID: idB, Nodes: []string{"w"}}, false},
		{"a new record its task pulled", api.Image{ID: idC, Source: "pull private/app:1", Nodes: []string{"w"}}, true},
		{"a new record, no source", api.Image{ID: idC, Nodes: []string{"w"}}, false},
		{"a new record, pulled for no task", api.Image{ID: idC, Source: "pull other/app:1", Nodes: []string{"w"}}, false},
		{"a new record of a reference the cluster knows", api.Image{ID: idC, Source: "pull web:1", Nodes: []string{"w"}}, false},
		{"a new record, too many layers", api.Image{ID: idC, Source: "pull private/app:1", Layers: many, Nodes: []string{"w"}}, false},
	} {
		_, _, why := rule.Record(c.img)
		if (why == "") != c.keep {
			t.Errorf("%s: dropped %q, want kept %v", c.name, why, c.keep)
		}
	}
	for _, c := range []struct {
		cmd  command.SetImageNode
		keep bool
	}{
		{command.SetImageNode{ImageID: idA, NodeID: "w", Present: true}, true},
		{command.SetImageNode{ImageID: idB, NodeID: "w", Present: true}, false},
		{command.SetImageNode{ImageID: idB, NodeID: "w", Present: false}, true},
	} {
		if why := rule.Claim(c.cmd); (why == "") != c.keep {
			t.Errorf("%+v: dropped %q, want kept %v", c.cmd, why, c.keep)
		}
	}

	// The bound on records the worker alone holds.
	var full []*api.Image
	for i := range MaxWorkerImages {
		full = append(full, &api.Image{ID: fmt.Sprintf("sha256:%064x", i), Nodes: []string{"w"}})
	}
	full = append(full, &api.Image{ID: idA, Nodes: []string{"w", "m"}})
	if _, _, why := needing(full, nil, "private/app:1").Record(api.Image{ID: idC, Source: "pull private/app:1", Nodes: []string{"w"}}); why == "" {
		t.Errorf("a new record past %d held by the worker alone was kept", MaxWorkerImages)
	}
	if _, _, why := needing(full[1:], nil, "private/app:1").Record(api.Image{ID: idC, Source: "pull private/app:1", Nodes: []string{"w"}}); why != "" {
		t.Errorf("a new record below the bound: dropped %q", why)
	}
}
