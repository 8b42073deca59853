package test

import (
	"fmt"
	"testing"
	"time"

	"github.com/shoal-org/shoal/test/harness"
)

// BenchmarkRevokeRunningNode: `node rm --force` of a running node that
// keeps its old certificate and gossip key and cannot ask whether it was
// removed (TestRevokeRunningNodeCutOff), until it is cut off from every
// path (goal ≤ 2 s): its certificate refused for Raft, RPC and blob fetch
// on every survivor, the connection it held open closed, no established
// cluster-port connection with it left, and its gossip ignored (every
// survivor counts one member less, after the key rotation). Each run
// removes one more node of a cluster of 3 + runs nodes.
func BenchmarkRevokeRunningNode(b *testing.B) {
	n := max(b.N, 3)
	harness.Context(b, time.Duration(n+2)*3*time.Minute)
	c := harness.New(b, 3+n)
	c.Form(b)
	leader := c.Leader(b, electionTimeout)
	left := c.Hosts()
	var handshake, held, conns, gossip, all []time.Duration
	for i := 0; i < n; i++ {
		var victim *harness.Host
		var survivors []*harness.Host
		for _, h := range left {
			if h != leader && victim == nil {
				victim = h
				continue
			}
			survivors = append(survivors, h)
		}
		r := removeRunningNode(b, leader, victim, survivors)
		handshake = append(handshake, r.handshake)
		held = append(held, r.held)
		conns = append(conns, r.conns)
		gossip = append(gossip, r.gossip)
		all = append(all, max(r.handshake, r.held, r.conns, r.gossip))
		left = survivors
		c.WaitReady(b, 60*time.Second, len(survivors), survivors...)
	}
	reportDurations(b, "revoke-handshake", handshake)
	reportDurations(b, "revoke-held-conn", held)
	reportDurations(b, "revoke-conns-gone", conns)
	reportDurations(b, "revoke-gossip", gossip)
	reportDurations(b, "revoke-cut-off", all)
	printRow(b, "revoke goal", len(all), "", "", "", fmt.Sprintf("node rm → cut off from every path, goal ≤ 2 s (%d-node cluster)", 3+n))
}
