package writes

import (
	"slices"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

func TestWorkerImageRecord(t *testing.T) {
	held := []*api.Image{
		{ID: "sha256:a", Tags: []string{"web:latest", "web:1"}, Layers: []string{"l1"}, Source: "import", Nodes: []string{"m"}},
		{ID: "sha256:b", Tags: []string{"db:1"}, Nodes: []string{"m"}},
	}
	cases := []struct {
		name        string
		img         api.Image
		wantDropped []string
		wantLayers  []string
		wantSource  string
	}{
		{name: "new image, free tags", img: api.Image{ID: "sha256:c", Tags: []string{"app:1"}, Layers: []string{"x"}, Nodes: []string{"w"}},
			wantDropped: []string{"app:1"}, wantLayers: []string{"x"}},
		{name: "new image taking a held tag", img: api.Image{ID: "sha256:c", Tags: []string{"web:latest", "app:1"}, Nodes: []string{"w"}},
			wantDropped: []string{"web:latest", "app:1"}},
		{name: "new image with a source", img: api.Image{ID: "sha256:c", Tags: []string{"registry.corp/app:2"}, Source: "pull attacker.example/app:2", Nodes: []string{"w"}},
			wantDropped: []string{"registry.corp/app:2"}},
		{name: "held image, its own tags", img: api.Image{ID: "sha256:a", Tags: []string{"web:1"}, Layers: []string{"forged"}, Source: "pull x", Nodes: []string{"w"}},
			wantLayers: []string{"l1"}, wantSource: "import"},
		{name: "held image, a free tag", img: api.Image{ID: "sha256:a", Tags: []string{"web:1", "app:1"}, Nodes: []string{"w"}},
			wantDropped: []string{"app:1"}, wantLayers: []string{"l1"}, wantSource: "import"},
		{name: "held image taking another's tag", img: api.Image{ID: "sha256:a", Tags: []string{"db:1"}, Nodes: []string{"w"}},
			wantDropped: []string{"db:1"}, wantLayers: []string{"l1"}, wantSource: "import"},
	}
	for _, c := range cases {
		got, dropped := WorkerImageRecord(c.img, held)
		// No tags: the state machine merges an announcement's tags into
		// the record, so the record keeps its own.
		if len(got.Tags) != 0 || !slices.Equal(dropped, c.wantDropped) || !slices.Equal(got.Layers, c.wantLayers) ||
			got.Source != c.wantSource || !slices.Equal(got.Nodes, c.img.Nodes) || got.ID != c.img.ID {
			t.Errorf("%s: got %+v dropped %v", c.name, got, dropped)
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
	held := []*api.Image{{ID: "sha256:a", Tags: []string{"web:1"}, Source: "import", Nodes: []string{"m"}}}
	squat := api.Image{ID: "sha256:evil", Tags: []string{"registry.corp/app:2"}, Source: "pull attacker.example/app:2", Nodes: []string{"w"}}
	got, _ := WorkerImageRecord(squat, held)
	if len(got.Tags) != 0 || got.Source != "" {
		t.Errorf("a worker's new record: tags %v source %q; want neither", got.Tags, got.Source)
	}
	tagOnto := api.Image{ID: "sha256:a", Tags: []string{"web:1", "registry.corp/app:2"}, Nodes: []string{"w"}}
	if got, _ := WorkerImageRecord(tagOnto, held); len(got.Tags) != 0 || got.Source != "import" {
		t.Errorf("a worker's claim on a held image: tags %v source %q; want no tags and the record's source", got.Tags, got.Source)
	}
}

// TestWorkerAnnouncementsInTheState applies what the leader keeps of a
// worker's announcements to the real state machine: the worker's tag
// resolves nowhere, a held image keeps its tags, source and layers with
// the worker added as a holder, and a tag a manager moved between the
// leader's trim and the apply stays moved (the worker's announcement,
// trimmed while web:1 was still its image's, moved it back).
func TestWorkerAnnouncementsInTheState(t *testing.T) {
	store := consensus.NewStore()
	m := fsm.New(store)
	var idx uint64
	apply := func(img api.Image) {
		t.Helper()
		idx++
		if r := m.ApplyCommand(idx, command.UpsertImage{Image: img}); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	web := api.Image{ID: "sha256:a", Tags: []string{"web:1"}, Layers: []string{"l1"}, Source: "import", Nodes: []string{"m"}}
	apply(web)

	squat, _ := WorkerImageRecord(api.Image{ID: "sha256:evil", Tags: []string{"registry.corp/app:2"},
		Source: "pull attacker.example/app:2", Nodes: []string{"w"}}, store.Images())
	apply(squat)
	if img, err := store.ResolveImage("registry.corp/app:2"); err == nil {
		t.Errorf("registry.corp/app:2 resolves to the worker's %s (source %q)", img.ID, img.Source)
	}

	claim, _ := WorkerImageRecord(api.Image{ID: web.ID, Tags: []string{"web:1"}, Source: "peer", Nodes: []string{"w"}}, store.Images())
	apply(api.Image{ID: "sha256:b", Tags: []string{"web:1"}, Source: "import", Nodes: []string{"m"}}) // a manager moves web:1
	apply(claim)
	if img, err := store.ResolveImage("web:1"); err != nil || img.ID != "sha256:b" {
		t.Errorf("web:1 resolves to %v (%v), want the manager's sha256:b", img, err)
	}
	img, err := store.Image(web.ID)
	if err != nil || img.Source != "import" || !slices.Equal(img.Layers, web.Layers) || !slices.Equal(img.Nodes, []string{"m", "w"}) {
		t.Errorf("the held image after the worker's claim: %+v (%v)", img, err)
	}
}
