package reconciler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/runtime"
	"github.com/shoal-org/shoal/runtime/ocispec"
)

// fencingRuntime records the leases the reconciler sets: one string per
// lease (calls) and one per FenceAll call (batches); err fails every
// lease of a call.
type fencingRuntime struct {
	Runtime // unused: renewLeases calls FenceAll only
	calls   []string
	batches []string
	err     error
}

func (f *fencingRuntime) FenceAll(ctx context.Context, ls []runtime.Lease) map[string]error {
	var one []string
	failed := map[string]error{}
	for _, l := range ls {
		s := fmt.Sprintf("%s %s", l.ID, l.After)
		f.calls = append(f.calls, s)
		one = append(one, s)
		if f.err != nil {
			failed[l.ID] = f.err
		}
	}
	f.batches = append(f.batches, strings.Join(one, ", "))
	return failed
}

// The supervisor's lease is renewed when it would run out before the wanted
// deadline by leaseSlack or more, or later than it, retried after an
// error, and disarmed for a running container that no longer needs one.
func TestRenewLeases(t *testing.T) {
	rt := &fencingRuntime{}
	r := &Reconciler{cfg: Config{Runtime: rt}, log: slog.New(slog.DiscardHandler)}
	t0 := time.Now()
	running := []api.Container{{ID: "c1", State: api.ContainerRunning}}
	steps := []struct {
		name  string
		at    time.Duration
		want  map[string]time.Duration
		err   error
		calls []string
	}{
		{"first pass arms", 0, map[string]time.Duration{"c1": 30 * time.Second}, nil, []string{"c1 30s"}},
		{"a burst of passes: within the slack", 500 * time.Millisecond, map[string]time.Duration{"c1": 30 * time.Second}, nil, nil},
		{"the next timed pass renews", 2 * time.Second, map[string]time.Duration{"c1": 30 * time.Second}, nil, []string{"c1 30s"}},
		{"an earlier deadline (quiet) renews at once", 2100 * time.Millisecond, map[string]time.Duration{"c1": 10 * time.Second}, nil, []string{"c1 10s"}},
		{"a failed renewal", 4 * time.Second, map[string]time.Duration{"c1": 30 * time.Second}, errors.New("unknown op"), []string{"c1 30s"}},
		{"is retried on the next pass", 4100 * time.Millisecond, map[string]time.Duration{"c1": 30 * time.Second}, nil, []string{"c1 30s"}},
		{"no longer at most once: disarmed", 5 * time.Second, nil, nil, []string{"c1 0s"}},
		{"and forgotten", 6 * time.Second, nil, nil, nil},
	}
	for _, st := range steps {
		rt.calls, rt.err = nil, st.err
		r.renewLeases(context.Background(), t0.Add(st.at), st.want, running)
		if !slices.Equal(rt.calls, st.calls) {
			t.Fatalf("%s: Fence calls %q, want %q", st.name, rt.calls, st.calls)
		}
		if len(rt.batches) > 1 {
			t.Fatalf("%s: %d FenceAll calls in one pass, want at most 1", st.name, len(rt.batches))
		}
		rt.batches = nil
	}
	// A lease of a container that has ended is dropped without a call.
	rt.calls = nil
	r.renewLeases(context.Background(), t0.Add(7*time.Second), map[string]time.Duration{"c1": 30 * time.Second}, running)
	r.renewLeases(context.Background(), t0.Add(8*time.Second), nil, []api.Container{{ID: "c1", State: api.ContainerExited}})
	if want := []string{"c1 30s"}; !slices.Equal(rt.calls, want) || len(r.leases) != 0 {
		t.Fatalf("ended container: calls %q, leases %v; want %q and none", rt.calls, r.leases, want)
	}
}

// Many at-most-once containers cost one supervisor call per pass, not one
// each: every lease of the pass goes in one FenceAll.
func TestRenewLeasesOneCallPerPass(t *testing.T) {
	rt := &fencingRuntime{}
	r := &Reconciler{cfg: Config{Runtime: rt}, log: slog.New(slog.DiscardHandler)}
	t0 := time.Now()
	want := map[string]time.Duration{}
	var running []api.Container
	for i := 0; i < 50; i++ {
		id := fmt.Sprintf("c%02d", i)
		want[id] = 15 * time.Second
		running = append(running, api.Container{ID: id, State: api.ContainerRunning})
	}
	for pass := 0; pass < 5; pass++ {
		rt.calls, rt.batches = nil, nil
		r.renewLeases(context.Background(), t0.Add(time.Duration(pass)*2*time.Second), want, running)
		if len(rt.batches) != 1 || len(rt.calls) != 50 {
			t.Fatalf("pass %d: %d FenceAll calls carrying %d leases, want 1 carrying 50", pass, len(rt.batches), len(rt.calls))
		}
	}
}

func TestLeaseBatch(t *testing.T) {
	t0 := time.Now()
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	for _, tc := range []struct {
		name    string
		want    map[string]time.Duration
		armed   map[string]time.Time
		running map[string]bool
		batch   []runtime.Lease
		drop    []string
	}{
		{name: "nothing"},
		{name: "new leases, sorted",
			want:  map[string]time.Duration{"b": 10 * time.Second, "a": 5 * time.Second},
			batch: []runtime.Lease{{ID: "a", After: 5 * time.Second}, {ID: "b", After: 10 * time.Second}}},
		{name: "within the slack: not resent",
			want:  map[string]time.Duration{"a": 10 * time.Second},
			armed: map[string]time.Time{"a": at(9500 * time.Millisecond)}},
		{name: "a slack or more later: renewed",
			want:  map[string]time.Duration{"a": 10 * time.Second},
			armed: map[string]time.Time{"a": at(9 * time.Second)},
			batch: []runtime.Lease{{ID: "a", After: 10 * time.Second}}},
		{name: "earlier than armed: renewed at once",
			want:  map[string]time.Duration{"a": 5 * time.Second},
			armed: map[string]time.Time{"a": at(5100 * time.Millisecond)},
			batch: []runtime.Lease{{ID: "a", After: 5 * time.Second}}},
		{name: "no longer wanted and running: disarmed and dropped",
			armed:   map[string]time.Time{"a": at(time.Second)},
			running: map[string]bool{"a": true},
			batch:   []runtime.Lease{{ID: "a"}}, drop: []string{"a"}},
		{name: "no longer wanted and ended: dropped without a call",
			armed: map[string]time.Time{"a": at(time.Second)},
			drop:  []string{"a"}},
		{name: "mixed: one batch",
			want:    map[string]time.Duration{"a": 10 * time.Second, "b": 10 * time.Second, "c": 10 * time.Second},
			armed:   map[string]time.Time{"a": at(8 * time.Second), "b": at(9800 * time.Millisecond), "d": at(time.Second), "e": at(time.Second)},
			running: map[string]bool{"d": true},
			batch:   []runtime.Lease{{ID: "a", After: 10 * time.Second}, {ID: "c", After: 10 * time.Second}, {ID: "d"}},
			drop:    []string{"d", "e"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			batch, drop := LeaseBatch(t0, tc.want, tc.armed, tc.running)
			if !reflect.DeepEqual(batch, tc.batch) || !slices.Equal(drop, tc.drop) {
				t.Fatalf("LeaseBatch = %v, drop %q; want %v, drop %q", batch, drop, tc.batch, tc.drop)
			}
		})
	}
}

// A supervisor of an older release knows no lease: one warning names the
// reason and how many containers it leaves unleased, not one per
// container, and it is not repeated on every pass.
func TestRenewLeasesNoLeaseWarnsOnce(t *testing.T) {
	rt := &fencingRuntime{err: fmt.Errorf("fence container x: %w", runtime.ErrNoLease)}
	var buf strings.Builder
	r := &Reconciler{cfg: Config{Runtime: rt}, log: slog.New(slog.NewTextHandler(&buf, nil))}
	want := map[string]time.Duration{"c1": 15 * time.Second, "c2": 15 * time.Second}
	t0 := time.Now()
	for pass := 0; pass < 3; pass++ {
		r.renewLeases(context.Background(), t0.Add(time.Duration(pass)*2*time.Second), want, nil)
	}
	if n := strings.Count(buf.String(), "level=WARN"); n != 1 {
		t.Fatalf("%d warnings, want 1:\n%s", n, buf.String())
	}
	if !strings.Contains(buf.String(), "2 at-most-once containers: the node's supervisor was started by a release without the at-most-once lease") {
		t.Fatalf("warning does not say why:\n%s", buf.String())
	}
}

// fencingFake is fakeRuntime with the supervisor's leases recorded.
type fencingFake struct {
	*fakeRuntime
	*fencingRuntime
}

func (f fencingFake) FenceAll(ctx context.Context, ls []runtime.Lease) map[string]error {
	return f.fencingRuntime.FenceAll(ctx, ls)
}

// An at-most-once container has its lease from the moment it runs, not
// from the next pass: an agent killed in between left it without one,
// running beside its replacement. Other containers get none.
func TestStartArmsAtMostOnceLease(t *testing.T) {
	rt := fencingFake{newFakeRuntime(), &fencingRuntime{}}
	r := New(Config{
		NodeID: "n1", Store: newReplica(t).store, Raft: leaderRaft{}, Members: noMembers{}, Runtime: rt, Network: upNetwork{},
		Write:        func(context.Context, command.Command) error { return nil },
		EnsureImage:  func(context.Context, *api.Task) error { return nil },
		PrepareFiles: func(context.Context, *api.Task) ([]ocispec.FileMount, error) { return nil, nil },
		GCTaskFiles:  func(map[string]bool) {},
		Logger:       slog.New(slog.DiscardHandler),
	})
	grace := 20 * time.Second
	for _, tk := range []*api.Task{
		{ID: "t1", Name: "job.1", ServiceID: "s1", NodeID: "n1", Spec: api.ServiceSpec{Name: "job", Image: "busybox", AtMostOnce: true, DisconnectGrace: grace}},
		{ID: "t2", Name: "web.1", ServiceID: "s2", NodeID: "n1", Spec: api.ServiceSpec{Name: "web", Image: "busybox"}},
	} {
		r.start(context.Background(), tk)
	}
	if want := []string{"c-t1 20s"}; !slices.Equal(rt.calls, want) {
		t.Fatalf("leases set by the starts: %q, want %q", rt.calls, want)
	}
}
