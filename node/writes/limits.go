package writes

// What bounds a node's writes about itself. A node's certificate lets it
// report its own tasks, images and record (node/authz), and each report the
// leader accepts is a log entry that every node replicates and keeps on
// disk until Raft compacts it, and whose text lands in the task records of
// every replica and snapshot. So the leader bounds, before it proposes:
//
//   - how big a report's free text may be (capStatusText). It trims rather
//     than refuses, as the other trims of a node's report do
//     (taskaddrs.go): a refused batch would stop the node's other reports,
//     which it retries as they are.
//   - how fast a node may write (nodeWrites, a token bucket per node:
//     NodeWriteBurst tokens at once, NodeWriteRate a second after that; a
//     write costs a token per started WriteCostUnit of its encoded
//     command, so a node's writes add at most ~800 KiB a second to the
//     log, however it packs them). A write beyond it is refused with
//     CodeThrottled, which the writer retries (Retryable) as it retries a
//     leader change. An honest agent stays far
//     below: its reconciler sends one batch of task statuses at a time and
//     waits for the answer (coalescing what changed meanwhile into the
//     next), its image records follow what a user imports or removes, and
//     its WireGuard key is published once a rotation; certificate renewals
//     do not come this way (node/keyring bounds them).
//
// The FSM is not the place for either: it must stay a pure function of the
// log that every version applies alike.

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/wire"
)

// MaxStatusText bounds, in bytes, the Message and the Error of each task
// status a node reports. What the agent says there is a line or two (a
// state change, a runtime's error); a container's own output goes to its
// log files, never to the state.
const MaxStatusText = 4 << 10

// truncatedMark ends a text CapText cut.
const truncatedMark = " …[truncated]"

// CapText returns s cut to at most max bytes of valid UTF-8, ending in a
// mark when it was cut; s as it is when it fits and is valid. Bytes that
// are not UTF-8 become U+FFFD (as they would in the JSON of the log).
func CapText(s string, max int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if len(s) <= max {
		return s
	}
	if max < len(truncatedMark) {
		return ""
	}
	cut := max - len(truncatedMark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + truncatedMark
}

// MaxContainerID bounds the container ID a task status carries: the
// runtime's are 64 hex digits.
const MaxContainerID = 128

// capStatusText returns cmd with the Message and Error of every task
// status in it (batches too) cut to MaxStatusText, a container ID longer
// than MaxContainerID dropped (the task keeps the one it had) and a
// health other than the runtime's three (api.HealthStarting, Healthy,
// Unhealthy) or none read as none. The state machine stores both as
// reported, replacing them at every report: a node's word of 1 MiB in each
// of its tasks' records stayed in the state every node keeps.
func capStatusText(cmd command.Command) command.Command {
	return eachOf(cmd, func(c command.TaskStatus) command.TaskStatus {
		statuses := c.Statuses
		cloned := false
		for i, st := range c.Statuses {
			msg, errText := CapText(st.Message, MaxStatusText), CapText(st.Error, MaxStatusText)
			cid, health := st.ContainerID, st.Health
			if len(cid) > MaxContainerID {
				cid = ""
			}
			switch health {
			case "", api.HealthStarting, api.HealthHealthy, api.HealthUnhealthy:
			default:
				health = ""
			}
			if msg == st.Message && errText == st.Error && cid == st.ContainerID && health == st.Health {
				continue
			}
			if !cloned {
				statuses, cloned = slices.Clone(c.Statuses), true // never write to the caller's slice
			}
			statuses[i].Message, statuses[i].Error = msg, errText
			statuses[i].ContainerID, statuses[i].Health = cid, health
		}
		c.Statuses = statuses
		return c
	})
}

// A node's forwarded writes about itself (ApplyNodeCommand): up to
// NodeWriteBurst tokens at once, then NodeWriteRate a second; a write costs
// one token per started WriteCostUnit of its encoded command (WriteCost).
const (
	NodeWriteBurst = 200
	NodeWriteRate  = 50
	WriteCostUnit  = 16 << 10
)

// WriteCost is the tokens a node's write of size encoded bytes takes: one
// per started WriteCostUnit (a report of a few tasks costs one; the
// largest request line, 1 MiB, 64), never more than a full bucket.
func WriteCost(size int) float64 {
	return min(float64(1+max(size-1, 0)/WriteCostUnit), NodeWriteBurst)
}

// CodeThrottled is the code of the leader's refusal of a node's write
// beyond its rate (ThrottledError) on the cluster port; Retryable retries
// it.
const CodeThrottled = "throttled"

// ThrottledError is the leader's refusal of a write from node NodeID
// beyond its rate; RetryIn is when its next write is due.
func ThrottledError(nodeID string, retryIn time.Duration) error {
	return &wire.Error{Code: CodeThrottled, Msg: fmt.Sprintf(
		"node %s is writing faster than the leader accepts from one node (%d small writes at once, then %d a second; fewer large ones): the write was not applied; retry in %s",
		api.ShortID(nodeID), NodeWriteBurst, NodeWriteRate, retryIn.Round(time.Millisecond))}
}

// Throttled reports whether err is a leader's refusal for the rate
// (ThrottledError), here or forwarded.
func Throttled(err error) bool {
	var re *wire.Error
	return errors.As(err, &re) && re.Code == CodeThrottled
}

// nodeWrites bounds each node's forwarded writes on this leader. A Writer
// holds no state (node builds one per call), so the buckets are one table
// per process, keyed by cluster and node ID (nodeKey).
var nodeWrites = &TokenBuckets{Burst: NodeWriteBurst, Rate: NodeWriteRate}

// nodeKey names node id of cluster clusterID in nodeWrites.
func nodeKey(clusterID, id string) string { return clusterID + "\x00" + id }

// TokenBuckets is a token bucket per key: each holds up to Burst tokens,
// refills at Rate tokens a second, and starts full. Safe for concurrent
// use; Burst and Rate are set before the first Take and not changed
// after. A bucket that has refilled is forgotten (a new one starts full
// too), so the table holds only the keys that took a token lately.
type TokenBuckets struct {
	Burst float64
	Rate  float64 // tokens a second

	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	tokens  float64
	at      time.Time // when tokens was counted
	refused bool      // the last Take was refused
}

// Take takes cost tokens (at most Burst) of key's bucket at now. ok is
// false when the bucket holds fewer; retryIn is then how long until it
// holds them, and first whether this is the first refusal since key's last
// accepted take (log that one, not every retry).
func (b *TokenBuckets) Take(key string, now time.Time, cost float64) (ok bool, retryIn time.Duration, first bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buckets == nil {
		b.buckets = map[string]*bucket{}
	}
	if now.Sub(b.swept) >= time.Second {
		b.sweepLocked(now)
	}
	k := b.buckets[key]
	if k == nil {
		k = &bucket{tokens: b.Burst, at: now}
		b.buckets[key] = k
	}
	k.tokens = b.levelLocked(k, now)
	if now.After(k.at) {
		k.at = now
	}
	cost = min(cost, b.Burst)
	if k.tokens >= cost {
		k.tokens -= cost
		k.refused = false
		return true, 0, false
	}
	first = !k.refused
	k.refused = true
	return false, time.Duration((cost - k.tokens) / b.Rate * float64(time.Second)), first
}

// levelLocked is how many tokens k holds at now.
func (b *TokenBuckets) levelLocked(k *bucket, now time.Time) float64 {
	elapsed := now.Sub(k.at).Seconds()
	if elapsed < 0 {
		elapsed = 0 // a clock that went back refills nothing
	}
	return min(b.Burst, k.tokens+elapsed*b.Rate)
}

// sweepLocked forgets the buckets that are full at now.
func (b *TokenBuckets) sweepLocked(now time.Time) {
	b.swept = now
	for key, k := range b.buckets {
		if b.levelLocked(k, now) >= b.Burst {
			delete(b.buckets, key)
		}
	}
}
