// Package diskhealth decides whether this node can persist what the
// cluster gives it, and reports it to the leader through gossip.
//
// Why: a node whose disk is full cannot store raft's entries (the
// follower refuses every append, so it never sees the tasks the leader
// assigned it) nor fetch an image (runtime/image keeps FreeReserve free);
// hashicorp/raft only logs the failure, so the node stayed ready, its
// tasks stayed assigned for ever, and autopilot even made it a voter. The
// node checks itself on the resync tick and gossips a short reason
// (membership.Meta.Unfit); the leader places nothing new on it, re-places
// its tasks stuck assigned, keeps it from voting, and `node ls`/`node
// inspect` show the reason. Once space comes back the reason clears.
package diskhealth

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/sys/unix"
)

// Reading is one look at the node's disk: free bytes on its data dir's
// file system (FreeErr when that could not be read) and the last raft log
// write's error (nil when it succeeded).
type Reading struct {
	Free    int64
	FreeErr error
	LogErr  error
}

// Assess is the decision (pure): "" when the node can persist, else a
// short reason for gossip and `node ls` ("disk full: ..."). A failing
// raft log write wins: it means the node is already losing entries. A
// free space it could not read says nothing (a transient statfs error must
// not take a node out of placement).
func Assess(r Reading, reserve int64) string {
	switch {
	case r.LogErr != nil:
		return "disk full: raft log writes fail"
	case r.FreeErr == nil && r.Free < reserve:
		return fmt.Sprintf("disk full: %d MiB free, below the %d MiB reserve", r.Free>>20, reserve>>20)
	}
	return ""
}

// FreeBytes is the space an unprivileged writer may still use on dir's
// file system.
func FreeBytes(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("free space of %s: %w", dir, err)
	}
	return int64(st.Bavail) * st.Bsize, nil
}

// Loop checks the node on every tick and publishes each change of the
// assessment (publish("") once fit again). Read gathers a Reading.
type Loop struct {
	Ticks   <-chan time.Time
	Reserve int64
	Read    func() Reading
	Publish func(reason string)
	Log     *slog.Logger
}

// Run checks at once, then on every tick, until ctx ends.
func (l *Loop) Run(ctx context.Context) {
	last := ""
	for {
		r := l.Read()
		if reason := Assess(r, l.Reserve); reason != last {
			if reason != "" {
				l.Log.Error("this node cannot persist its state: it takes no new tasks and does not vote until it can",
					"reason", reason, "free_bytes", r.Free, "log_error", errString(r.LogErr))
			} else {
				l.Log.Info("this node can persist its state again", "was", last)
			}
			last = reason
			l.Publish(reason)
		}
		select {
		case <-ctx.Done():
			return
		case <-l.Ticks:
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
