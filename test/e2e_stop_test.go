package test

import (
	"fmt"
	"testing"
	"time"

	"github.com/shoal-org/shoal/test/harness"
)

// TestStopDeposedLeader: SIGTERM to a leader that a partition has just
// deposed stops the agent without the harness's SIGKILL. Raft's shutdown
// used to wait on replication to the unreachable followers: a pipelined
// AppendEntries blocked on a connection whose packets were being dropped,
// until the transport's write deadline, once per follower and retry.
// stopBound is a hang bound, not a performance figure: a stop takes well
// under a second here, and the wait this test catches is the raft
// transport's 10 s timeout.
const stopBound = 6 * time.Second

func TestStopDeposedLeader(t *testing.T) {
	harness.Context(t, testTimeout)
	c := harness.New(t, 3)
	c.Form(t)
	waitVoters(t, c, 3, 3)
	for round := 0; round < 2; round++ {
		leader := c.Leader(t, electionTimeout)
		// Replication traffic in flight when the link drops, so that the
		// pipeline has unacknowledged entries to wait on.
		for i := 0; i < 5; i++ {
			leader.MustCLI(t, "node", "update", "--label-add", fmt.Sprintf("stop%d=%d", round, i), leader.NodeID(t))
		}
		if err := c.Partition(leader); err != nil {
			t.Fatal(err)
		}
		majority := hostsExcept(c.Hosts(), leader)
		harness.Eventually(t, electionTimeout, func() (bool, string) {
			st, err := leader.Status()
			if err != nil {
				return false, err.Error()
			}
			return st.RaftState != "leader", "still " + st.RaftState
		}, "%s steps down", leader.Name)
		harness.Eventually(t, electionTimeout, func() (bool, string) {
			st, err := majority[0].Status()
			if err != nil {
				return false, err.Error()
			}
			return st.Leader != "" && st.RaftState != "" && st.Leader != leader.NodeID(t), "leader " + st.Leader
		}, "majority elects")
		start := time.Now()
		if err := leader.Stop(); err != nil {
			t.Fatalf("round %d: %v\n%s", round, err, leader.LogTail(40))
		}
		took := time.Since(start)
		t.Logf("round %d: deposed leader %s stopped in %s", round, leader.Name, took.Round(time.Millisecond))
		if took > stopBound {
			t.Fatalf("round %d: deposed leader %s took %s to stop, want < %s (a wait on the unreachable followers)", round, leader.Name, took.Round(time.Millisecond), stopBound)
		}
		if err := c.Heal(); err != nil {
			t.Fatal(err)
		}
		if err := leader.Start(); err != nil {
			t.Fatal(err)
		}
		c.WaitReady(t, formTimeout, 3)
	}
}
