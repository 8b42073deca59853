package supervisor

import "time"

// A container's output costs the node supervisor a JSON encoding per line,
// outside the container's own CPU limit: a container printing empty lines
// (`yes` with an empty argument) at 5 % of a CPU kept the supervisor's core busy, under the
// lock every other container's start, exit and output wait on. So each
// container gets a line budget: past it the supervisor stops reading that
// container's pipes for a while, the pipe fills, and the container blocks
// in write(2) until the budget refills, as behind any slow reader. Nothing
// is dropped; a container within the budget never notices.
const (
	// LineRate is the lines per second a container's output is read at
	// once past its burst: ~15 ms of the supervisor's CPU a second.
	LineRate = 50_000
	// LineBurst is how many lines a container may print at once.
	LineBurst = 100_000
	// RotationOpLines is what one file operation of a log rotation (a
	// remove, a rename, an open) costs the container's budget, in lines:
	// some 20 µs of the supervisor's time against a line's 0.3. A service's
	// log options may make the log rotate every few lines (max-size 4k)
	// over up to 100 files, 100 operations a rotation: charged as lines,
	// the budget bounds that work as it bounds the encoding, to about 5
	// such rotations a second.
	RotationOpLines = 100
)

// lineBudget is a token bucket of lines.
type lineBudget struct {
	tokens float64
	at     time.Time // when tokens was last brought up to date
}

// refill brings the bucket up to now.
func (b *lineBudget) refill(now time.Time) {
	if b.at.IsZero() {
		b.tokens, b.at = LineBurst, now
		return
	}
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(LineBurst, b.tokens+d.Seconds()*LineRate)
		b.at = now
	}
}

// wait is how long reading must pause before the bucket has a line again
// (0: read now).
func (b *lineBudget) wait(now time.Time) time.Duration {
	b.refill(now)
	if b.tokens >= 1 {
		return 0
	}
	return time.Duration((1 - b.tokens) / LineRate * float64(time.Second))
}

// take spends n lines (the bucket may go below zero: one read's lines
// are all stored, and the debt is paid by waiting).
func (b *lineBudget) take(n int, now time.Time) {
	b.refill(now)
	b.tokens -= float64(n)
}
