package supervisor

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestOrphanExitsAreOrderedByFork: an exit reaped before its pid was known
// is handed to the start or exec whose runc reports that pid only when it
// was reaped after that runc's fork; an older exit of a process that once
// had the same pid (pids are reused) is dropped, not taken for a new
// container's init, which the agent would then clean up as exited.
func TestOrphanExitsAreOrderedByFork(t *testing.T) {
	s := &supervisor{orphans: map[int]orphanExit{}}
	const pid = 4242
	stale, fresh := unix.WaitStatus(1<<8), unix.WaitStatus(7<<8)

	s.childExited(pid, stale) // a process nobody claimed, long ago
	forkedAt := s.reaps       // a start forks its runc
	if _, ok := s.takeOrphanLocked(pid, forkedAt); ok {
		t.Fatal("a stale exit of a reused pid was taken for the new process")
	}
	if _, ok := s.orphans[pid]; ok {
		t.Fatal("the stale exit was kept")
	}

	forkedAt = s.reaps
	s.childExited(999, 0)     // other exits in between
	s.childExited(pid, fresh) // the new init ends before its pid is read
	if ws, ok := s.takeOrphanLocked(pid, forkedAt); !ok || ws != fresh {
		t.Fatalf("the init's own early exit: got %v %v, want %v", ws, ok, fresh)
	}
	if _, ok := s.takeOrphanLocked(pid, forkedAt); ok {
		t.Fatal("an exit was taken twice")
	}
}
