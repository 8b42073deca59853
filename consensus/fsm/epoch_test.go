package fsm

import (
	"bytes"
	"errors"
	"testing"

	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

func TestSetClusterEpoch(t *testing.T) {
	h := newHarness(t)
	if r := h.apply(command.SetClusterEpoch{Epoch: 1}); !errors.Is(r.Err, consensus.ErrNotBootstrapped) {
		t.Fatalf("before bootstrap: %v", r.Err)
	}
	h.bootstrap()
	if c := h.store.Cluster(); c.Epoch != 0 {
		t.Fatalf("epoch of a new cluster = %d", c.Epoch)
	}
	if r := h.apply(command.SetClusterEpoch{}); !errors.Is(r.Err, consensus.ErrInvalid) {
		t.Fatalf("epoch 0: %v", r.Err)
	}
	h.must(command.SetClusterEpoch{Epoch: 2})
	h.must(command.SetClusterEpoch{Epoch: 1}) // late or retried: never lowers it
	h.must(command.SetClusterEpoch{Epoch: 2})
	if c := h.store.Cluster(); c.Epoch != 2 {
		t.Fatalf("epoch = %d, want 2", c.Epoch)
	}

	// It survives a snapshot.
	snap, err := h.fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	other := newHarness(t)
	if err := other.fsm.Restore(readCloser{bytes.NewReader(sink.Bytes())}); err != nil {
		t.Fatal(err)
	}
	if c := other.store.Cluster(); c == nil || c.Epoch != 2 {
		t.Fatalf("restored cluster %+v", c)
	}
}
