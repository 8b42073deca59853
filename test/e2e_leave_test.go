package test

// End-to-end test of `shoal leave` on the only member of a cluster.

import (
	"strings"
	"testing"
)

// TestLeaveLastMemberNeedsForce: `shoal leave` on a node alone in its
// cluster is refused (as docker swarm leave refuses the last manager) and
// changes nothing; `leave --force` then leaves. Before, a bare leave
// erased the one-node cluster and all its services at once.
func TestLeaveLastMemberNeedsForce(t *testing.T) {
	c, _ := svcCluster(t, 1)
	h1 := c.Host(1)
	h1.MustCLI(t, "service", "create", "-d", "--name", "keep", "bb:1", "sleep", "600")

	_, stderr, err := h1.CLI("leave")
	if err == nil {
		t.Fatal("leave on the only member succeeded; want a refusal that asks for --force")
	}
	if !strings.Contains(stderr, "--force") || !strings.Contains(stderr, "only member") {
		t.Errorf("leave refused with %q; want it to say the node is the only member and name --force", stderr)
	}
	st, err := h1.Status()
	if err != nil {
		t.Fatal(err)
	}
	if !st.Joined {
		t.Fatal("the refused leave dropped the cluster anyway")
	}
	h1.MustCLI(t, "service", "inspect", "keep")

	h1.MustCLI(t, "leave", "--force")
	if st, err = h1.Status(); err != nil {
		t.Fatal(err)
	}
	if st.Joined {
		t.Error("leave --force left the node in its cluster")
	}
}
