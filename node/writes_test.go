package node

import (
	"context"
	"errors"
	"testing"

	"github.com/shoal-org/shoal/consensus/fsm/command"
)

func TestWriteWithoutCluster(t *testing.T) {
	a := newTestAgent(t)
	_, err := a.write(context.Background(), &command.RotateToken{SecretHash: "h", Secret: "s"})
	if !errors.Is(err, ErrNoCluster) {
		t.Fatalf("write outside a cluster: %v, want ErrNoCluster", err)
	}
	if _, err := a.applyLocal(context.Background(), nil); !errors.Is(err, ErrNoCluster) {
		t.Fatalf("applyLocal outside a cluster: %v, want ErrNoCluster", err)
	}
}
