package node

import (
	"context"
	"encoding/json"
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

// applyLocal applies an encoded command of the leader's own on this node,
// which must lead (writes.Writer.ApplyLocal): the leader's path without
// the forwarding.
func (a *Agent) applyLocal(ctx context.Context, enc []byte) (json.RawMessage, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	return cl.Writer().ApplyLocal(ctx, enc)
}
