package test

import (
	"testing"
	"time"
)

// TestReadOnlyServicePlaced: the leader places a task whose spec uses
// level-3 fields (read_only, cap_drop) only on nodes whose agent
// advertises that level in gossip; on a cluster of one release every
// node, the leader itself included, qualifies, so the service spreads
// over both nodes as any other.
func TestReadOnlyServicePlaced(t *testing.T) {
	c, _ := svcCluster(t, 2)
	h1 := c.Host(1)
	h1.MustCLI(t, "service", "create", "-d", "--name", "ro", "--replicas", "2", "--read-only", "--cap-drop", "ALL",
		"bb:1", "sh", "-c", "sleep 100000")
	per := waitSlots(t, h1, "ro", 2, "bb:1", 90*time.Second)
	for _, h := range c.Hosts() {
		if per[hostname(h)] != 1 {
			t.Fatalf("spread %v, want one task per node", per)
		}
	}
}
