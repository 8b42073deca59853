// Package raftdirtest gives raft test clusters a data dir in memory.
//
// Why: those clusters run raft with timeouts of a few hundred milliseconds
// so that tests are quick, and raft fsyncs its log and its term and vote on
// every write. On a shared disk (CI runs the runtime and image tests, which
// unpack layers, beside them) one fsync can take longer than a whole
// election timeout: a new leader then loses its lease while a follower sits
// in an fsync (seen: "failed to contact quorum of nodes, stepping down"
// during formation, and two survivors that could not elect a leader in
// 10 s). What those tests check is raft's and raftnode's logic, with state
// that survives a restart, not the disk: a directory on tmpfs keeps both
// and takes the disk's latency out. The log store's own tests keep the disk.
package raftdirtest

import (
	"os"
	"testing"
)

// shm is where the directories go when it is a writable directory.
const shm = "/dev/shm"

// Dir returns a fresh directory on tmpfs (t.TempDir when there is none),
// removed when the test ends.
func Dir(t testing.TB) string {
	t.Helper()
	if fi, err := os.Stat(shm); err != nil || !fi.IsDir() {
		return t.TempDir()
	}
	dir, err := os.MkdirTemp(shm, "shoal-raft-test-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
	})
	return dir
}
