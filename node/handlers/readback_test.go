package handlers

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
)

// TestReadBackServiceRemovedSince: a write that took effect is answered
// with what it wrote when the service is gone from the replica by the time
// of the read-back (another client removed it): not with a 404, which told
// a client that its applied scale had found no service (the
// linearizability test's history). Without what was written (nil) the
// replica's answer stands.
func TestReadBackServiceRemovedSince(t *testing.T) {
	store := consensus.NewStore() // holds no service: removed since the write
	written := &api.Service{ID: "s1", Name: "web", Spec: api.ServiceSpec{Name: "web", Mode: api.ModeReplicated, Replicas: 2, Image: "bb:1"}, Version: 7}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond) // the read-back's wait ends with it
	defer cancel()
	got, err := readBackService(ctx, store, "s1", 6, written)
	if err != nil {
		t.Fatalf("read-back of an applied write: %v", err)
	}
	if got.ID != "s1" || got.Spec.Replicas != 2 {
		t.Fatalf("read-back = %+v, want what was written", got)
	}
	if _, err := readBackService(ctx, store, "s1", 6, nil); !errors.Is(err, consensus.ErrNotFound) {
		t.Fatalf("without what was written: %v, want ErrNotFound", err)
	}
}
