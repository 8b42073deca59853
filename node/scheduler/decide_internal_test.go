package scheduler

// Table tests of the planner's pure decisions (unexported); the behaviour
// tests, which drive a simcluster.Cluster, are in package scheduler_test.

import (
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func TestStateHelpersMatchAPI(t *testing.T) {
	for state, order := range api.TaskStateOrder {
		if rank(state) != order || terminal(state) != api.TaskTerminal(state) {
			t.Errorf("state %s: rank %d terminal %v, api says %d %v", state, rank(state), terminal(state), order, api.TaskTerminal(state))
		}
	}
}
