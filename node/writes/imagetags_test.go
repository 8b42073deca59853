package writes

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/authz"
)

// digest is a valid image ID made of one repeated hex digit.
func digest(c string) string { return "sha256:" + strings.Repeat(c, 64) }

var (
	idA, idB, idC = digest("a"), digest("b"), digest("c")
)

// needing is the rule for worker "w" over images, with w's tasks needing
// the records of needed and naming unknown references.
func needing(images []*api.Image, needed []string, unknown ...string) WorkerImages {
	r := WorkerImages{Node: "w", Images: images, Needed: map[string]bool{}, Pulls: map[string]bool{}}
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

// TestImageIDsAreDigests: a node's announcement of an image under an ID
// no store makes is refused, whoever sends it. A worker's record with the
// ID `registry.corp/app:2` resolved that reference for every service (an
// ID prefix), ahead of the image that carries the tag.
func TestImageIDsAreDigests(t *testing.T) {
	for _, c := range []struct {
		cmd command.Command
		ok  bool
	}{
		{command.UpsertImage{Image: api.Image{ID: idA}}, true},
		{&command.SetImageNode{ImageID: idA, Present: true}, true},
		{command.SetImageNode{ImageID: "whatever", Present: false}, true},
		{command.UpsertImage{Image: api.Image{ID: "registry.corp/app:2"}}, false},
		{command.UpsertImage{Image: api.Image{ID: strings.ToUpper(idA)}}, false},
		{command.UpsertImage{Image: api.Image{ID: idA + "0"}}, false},
		{command.Batch{Commands: []command.Command{command.TaskStatus{}, &command.SetImageNode{ImageID: "sha256:ab", Present: true}}}, false},
	} {
		if err := checkImageIDs(c.cmd); (err == nil) != c.ok || (err != nil && !errors.Is(err, consensus.ErrInvalid)) {
			t.Errorf("%+v: %v, want ok %v", c.cmd, err, c.ok)
		}
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
	web := api.Image{ID: idA, Tags: []string{"web:1"}, Layers: []string{"l1"}, Source: "import", Nodes: []string{"m"}}
	apply(web)

	squat, _, why := needing(store.Images(), []string{idA}, "registry.corp/app:2").Record(api.Image{ID: digest("e"), Tags: []string{"registry.corp/app:2"},
		Source: "pull registry.corp/app:2", Nodes: []string{"w"}})
	if why != "" {
		t.Fatal(why)
	}
	apply(squat)
	if img, err := store.ResolveImage("registry.corp/app:2"); err == nil {
		t.Errorf("registry.corp/app:2 resolves to the worker's %s (source %q)", img.ID, img.Source)
	}

	claim, _, why := needing(store.Images(), []string{idA}).Record(api.Image{ID: web.ID, Tags: []string{"web:1"}, Source: "peer", Nodes: []string{"w"}})
	if why != "" {
		t.Fatal(why)
	}
	apply(api.Image{ID: idB, Tags: []string{"web:1"}, Source: "import", Nodes: []string{"m"}}) // a manager moves web:1
	apply(claim)
	if img, err := store.ResolveImage("web:1"); err != nil || img.ID != idB {
		t.Errorf("web:1 resolves to %v (%v), want the manager's %s", img, err, idB)
	}
	img, err := store.Image(web.ID)
	if err != nil || img.Source != "import" || !slices.Equal(img.Layers, web.Layers) || !slices.Equal(img.Nodes, []string{"m", "w"}) {
		t.Errorf("the held image after the worker's claim: %+v (%v)", img, err)
	}
}

// TestWorkerImageClaimsThroughTheLeader: the leader applies a worker's
// claim on the image its task runs, leaves out its claim on another image
// and its made-up record while applying the rest of its report, refuses a
// report of nothing else, and leaves a manager's announcements as made.
func TestWorkerImageClaimsThroughTheLeader(t *testing.T) {
	l := newTestLeader(t)
	ctx := context.Background()
	now := time.Now().UTC()
	l.must(t, command.UpsertImage{Image: api.Image{ID: idA, Tags: []string{"web:1"}, Nodes: []string{"m"}}})
	l.must(t, command.UpsertImage{Image: api.Image{ID: idB, Tags: []string{"db:1"}, Nodes: []string{"m"}}})
	l.must(t, command.CreateService{Service: api.Service{ID: "s1", Name: "web", Spec: api.ServiceSpec{Name: "web", Image: "web:1", Replicas: 1}}})
	l.must(t, command.UpsertTasks{Tasks: []api.Task{{ID: "t1", ServiceID: "s1", Slot: 1, NodeID: "w", DesiredState: api.TaskRunning,
		State: api.TaskAssigned, Spec: api.ServiceSpec{Name: "web", Image: "web:1"}, CreatedAt: now}}})

	report := command.Batch{Commands: []command.Command{
		&command.TaskStatus{NodeID: "w", Statuses: []api.TaskStatus{{TaskID: "t1", State: api.TaskStarting, Timestamp: now}}},
		&command.UpsertImage{Image: api.Image{ID: idA, Nodes: []string{"w"}}},
		&command.SetImageNode{ImageID: idB, NodeID: "w", Present: true},
		&command.UpsertImage{Image: api.Image{ID: idC, Source: "pull x:1", Nodes: []string{"w"}}},
	}}
	if _, err := l.ApplyNodeCommand(ctx, "w", encode(t, report)); err != nil {
		t.Fatal(err)
	}
	if tk, _ := l.store.Task("t1"); tk.State != api.TaskStarting {
		t.Errorf("the rest of the report: task state %s", tk.State)
	}
	if img, _ := l.store.Image(idA); !slices.Equal(img.Nodes, []string{"m", "w"}) {
		t.Errorf("the image its task runs: holders %v", img.Nodes)
	}
	if img, _ := l.store.Image(idB); !slices.Equal(img.Nodes, []string{"m"}) {
		t.Errorf("an image no task of it runs: holders %v", img.Nodes)
	}
	if _, err := l.store.Image(idC); err == nil {
		t.Error("a made-up record entered the state")
	}
	// The registry moved a record's source to another image: the worker
	// pulled that one for its task, and records it.
	l.must(t, command.UpsertImage{Image: api.Image{ID: digest("d"), Tags: []string{"api:1"}, Source: "pull reg.example/api:1", Nodes: []string{"m"}}})
	l.must(t, command.UpsertTasks{Tasks: []api.Task{{ID: "t2", ServiceID: "s1", Slot: 2, NodeID: "w", DesiredState: api.TaskRunning,
		State: api.TaskAssigned, Spec: api.ServiceSpec{Name: "web", Image: "api:1"}, CreatedAt: now}}})
	moved := &command.UpsertImage{Image: api.Image{ID: digest("f"), Tags: []string{"reg.example/api:1"}, Source: "pull reg.example/api:1", Nodes: []string{"w"}}}
	if _, err := l.ApplyNodeCommand(ctx, "w", encode(t, moved)); err != nil {
		t.Fatalf("the image pulled from a needed record's source: %v", err)
	}
	if img, err := l.store.Image(digest("f")); err != nil || !slices.Equal(img.Nodes, []string{"w"}) || len(img.Tags) != 0 || img.Source != "" {
		t.Errorf("the pulled image's record: %+v (%v)", img, err)
	}
	if _, err := l.ApplyNodeCommand(ctx, "w", encode(t, &command.SetImageNode{ImageID: idB, NodeID: "w", Present: true})); !errors.Is(err, authz.ErrForbidden) {
		t.Errorf("a claim alone on an image no task of it runs: %v, want ErrForbidden", err)
	}
	if _, err := l.ApplyNodeCommand(ctx, "w", encode(t, &command.UpsertImage{Image: api.Image{ID: "web:1", Nodes: []string{"w"}}})); !errors.Is(err, consensus.ErrInvalid) {
		t.Errorf("a record named like a tag: %v, want ErrInvalid", err)
	}
	if _, err := l.ApplyNodeCommand(ctx, "m", encode(t, &command.SetImageNode{ImageID: idB, NodeID: "m", Present: true})); err != nil {
		t.Errorf("a manager's claim: %v", err)
	}
	if _, err := l.ApplyNodeCommand(ctx, "m", encode(t, &command.UpsertImage{Image: api.Image{ID: idC, Tags: []string{"new:1"}, Source: "import", Nodes: []string{"m"}}})); err != nil {
		t.Errorf("a manager's import: %v", err)
	}
}
