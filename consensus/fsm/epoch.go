package fsm

// The cluster epoch that fences the configuration --force-new-cluster
// abandoned: why, and the verdicts, are in consensus/epoch.go.

import (
	"fmt"

	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

func applySetClusterEpoch(w *consensus.WriteTxn, c command.SetClusterEpoch) (any, error) {
	cl, err := w.Cluster()
	if err != nil {
		return nil, fmt.Errorf("set cluster epoch: %w", err)
	}
	if c.Epoch == 0 {
		return nil, fmt.Errorf("set cluster epoch: epoch 0: %w", consensus.ErrInvalid)
	}
	if c.Epoch <= cl.Epoch {
		return nil, nil
	}
	cl.Epoch = c.Epoch
	return nil, w.PutCluster(cl)
}
