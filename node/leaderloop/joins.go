package leaderloop

import (
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/membership"
)

// joinGrace is how long the leader waits, after a node's record appears
// in the state during its term, for gossip to see the node alive before
// it may mark the node down, given how long a join waits for its raft
// admission (Config.AdmitWait). The joiner joins gossip only once it has
// the leader's answer, and the answer comes up to admitWait after the
// record committed (a storm of joins queues behind raft's configuration
// changes); from then on, the same trust statusGrace gives a new
// leader's view. With the grace counted from the record alone, every node
// of a 100-agent join storm whose admission waited was marked down as it
// got its answer, and kept down until a later pass saw its gossip.
func joinGrace(admitWait time.Duration) time.Duration { return admitWait + statusGrace }

// joins remembers, for one term, when each node's record appeared in the
// state (a join, or a join again under the same ID after a leave or a
// node rm) until gossip first counts it alive.
//
// Why: a join commits the node's record (ready) before the joiner hears
// the answer and joins gossip, and the leader's next pass, woken by that
// very record, found it missing from gossip and raft silent on it, so it
// marked it down a few ms after `joined`, and ready again 100 ms later:
// a `node down` event for every node joining an established cluster, and
// a status flap the scheduler acts on. The grace a new leader gives nodes
// gossip never saw did not cover it (it lasts the first 3 s of a term), nor
// a node seen before it left.
type joins struct {
	// admitWait is Config.AdmitWait.
	admitWait time.Duration
	started   bool
	known     map[string]bool
	since     map[string]time.Time
	// appeared: when each record that appeared during the term did, kept
	// after gossip saw the node (admitting).
	appeared map[string]time.Time
}

func newJoins(admitWait time.Duration) *joins {
	return &joins{admitWait: admitWait, known: map[string]bool{}, since: map[string]time.Time{}, appeared: map[string]time.Time{}}
}

// observe takes one pass's view: the nodes of the state and gossip's alive
// set. The nodes present at the term's first pass are not joining.
func (j *joins) observe(nodes []*api.Node, alive map[string]membership.Meta, now time.Time) {
	inState := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		inState[n.ID] = true
		if !j.known[n.ID] {
			j.known[n.ID] = true
			if j.started {
				j.since[n.ID] = now
				j.appeared[n.ID] = now
			}
		}
		if _, ok := alive[n.ID]; ok {
			delete(j.since, n.ID)
		}
	}
	for id := range j.known {
		if !inState[id] {
			delete(j.known, id)
			delete(j.since, id)
			delete(j.appeared, id)
		}
	}
	j.started = true
}

// joining reports whether id's record appeared less than joinGrace ago and
// gossip has not counted it alive since.
func (j *joins) joining(id string, now time.Time) bool {
	at, ok := j.since[id]
	return ok && now.Sub(at) < joinGrace(j.admitWait)
}

// admitting reports whether id's record appeared less than
// admitWait ago: the join that made it is still adding the node to raft
// (node/joining's Leader.Admit), and the leader loop adding it too would only
// queue a second configuration change behind the first.
func (j *joins) admitting(id string, now time.Time) bool {
	at, ok := j.appeared[id]
	return ok && now.Sub(at) < j.admitWait
}
