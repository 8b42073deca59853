package writes

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/authz"
	"github.com/shoal-org/shoal/node/writes/workerimages"
)

// digest is a valid image ID made of one repeated hex digit.
func digest(c string) string { return "sha256:" + strings.Repeat(c, 64) }

var (
	idA, idB, idC = digest("a"), digest("b"), digest("c")
)

// needing is the rule for worker "w" over images, with w's tasks needing
// the records of needed and naming unknown references.
func needing(images []*api.Image, needed []string, unknown ...string) workerimages.Rule {
	r := workerimages.Rule{Node: "w", Images: images, Needed: map[string]bool{}, Pulls: map[string]bool{}}
	for _, id := range needed {
		r.Needed[id] = true
	}
	for _, ref := range unknown {
		r.Pulls[ref] = true
	}
	return r
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
