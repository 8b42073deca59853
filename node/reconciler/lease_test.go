package reconciler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

// fencingRuntime records the leases the reconciler sets.
type fencingRuntime struct {
	Runtime // unused: renewLeases calls Fence only
	calls   []string
	err     error
}

func (f *fencingRuntime) Fence(ctx context.Context, id string, after, grace time.Duration) error {
	f.calls = append(f.calls, fmt.Sprintf("%s %s", id, after))
	return f.err
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
	}
	// A lease of a container that has ended is dropped without a call.
	rt.calls = nil
	r.renewLeases(context.Background(), t0.Add(7*time.Second), map[string]time.Duration{"c1": 30 * time.Second}, running)
	r.renewLeases(context.Background(), t0.Add(8*time.Second), nil, []api.Container{{ID: "c1", State: api.ContainerExited}})
	if want := []string{"c1 30s"}; !slices.Equal(rt.calls, want) || len(r.leases) != 0 {
		t.Fatalf("ended container: calls %q, leases %v; want %q and none", rt.calls, r.leases, want)
	}
}
