package logstore

// Why: a node whose raft log cannot be read must neither crash-loop nor
// simply start over with an empty log as the voter it was. An empty log
// "forgets" entries this node acknowledged — entries that may be committed
// only because of its acknowledgement — so if it then granted its vote to a
// candidate missing them, a leader without committed entries could be
// elected. It may also have lost the term it voted in and vote twice.
//
// So New, on an unreadable log (open fails, an entry does not decode or does
// not read back, or the raft-wal it migrates from is broken):
//
//  1. writes DATA/raft-rejoin.json (the reason and where the old state went);
//  2. renames DATA/raft to DATA/raft.broken-<time> (log, stable store and
//     snapshots are kept for forensics, never deleted);
//  3. starts raft on an empty log with its vote withheld: the stable store
//     refuses to read LastVoteTerm, and raft refuses every vote request it
//     cannot check against that value.
//
// The node keeps its ID, certificate and data dir. The leader still sends it
// heartbeats (it is in the configuration), so node learns who leads and asks
// it over the cluster port to demote this node to a non-voter. Once that
// demotion is committed, every majority of the new configuration holds every
// committed entry, so this node's vote no longer matters until autopilot
// promotes it again (by then raft has installed the leader's snapshot on it).
// node then calls RejoinDone, which opens the vote gate and removes the
// marker. A crash anywhere in between leaves the marker: the next start
// withholds the vote again and repeats the (idempotent) request.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/shoal-org/shoal/api/atomicfile"
)

// RejoinMarkerFile is the marker under Config.DataDir.
const RejoinMarkerFile = "raft-rejoin.json"

// errVoteWithheld is what raft logs when it refuses a vote while the gate is closed.
var errVoteWithheld = errors.New("vote withheld: this node lost its raft log and waits for the leader to make it a non-voter")

// rejoinMarker is the content of DATA/raft-rejoin.json.
type rejoinMarker struct {
	Reason    string    `json:"reason"`
	BrokenDir string    `json:"broken_dir"`
	At        time.Time `json:"at"`
}

// RejoinPending reports whether dataDir holds a rejoin marker.
func RejoinPending(dataDir string) (bool, error) {
	_, err := os.Stat(filepath.Join(dataDir, RejoinMarkerFile))
	switch {
	case err == nil:
		return true, nil
	case os.IsNotExist(err):
		return false, nil
	default:
		return false, fmt.Errorf("check raft rejoin marker: %w", err)
	}
}

// QuarantineRaftDir records a rejoin marker, then renames dataDir/raft to
// dataDir/raft.broken-<now> and returns the new name. The marker comes
// first: a crash between the two steps still rejoins.
func QuarantineRaftDir(dataDir string, now time.Time, reason error) (string, error) {
	base := filepath.Join(dataDir, "raft")
	broken := base + ".broken-" + now.UTC().Format("20060102T150405.000000000Z")
	m, _ := json.MarshalIndent(rejoinMarker{Reason: reason.Error(), BrokenDir: broken, At: now.UTC()}, "", "  ")
	if err := atomicfile.WriteFile(filepath.Join(dataDir, RejoinMarkerFile), m, 0o600); err != nil {
		return "", fmt.Errorf("write raft rejoin marker: %w", err)
	}
	if err := os.Rename(base, broken); err != nil && !os.IsNotExist(err) {
		return "", fmt.Errorf("move unreadable raft state aside: %w", err)
	}
	if err := syncDir(dataDir); err != nil {
		return "", err
	}
	return broken, nil
}

// ClearRejoin removes the marker (the leader has demoted this node).
func ClearRejoin(dataDir string) error {
	if err := os.Remove(filepath.Join(dataDir, RejoinMarkerFile)); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove raft rejoin marker: %w", err)
	}
	return syncDir(dataDir)
}

// probeLogStore reads the stored entries and the stable values raft.NewRaft
// will read (NewRaft panics on a failed read): the last entry and every one
// after snapshotIndex, the newest snapshot on disk. Entries up to it may be
// missing: a follower that installed a leader's snapshot keeps its older
// log and appends after the snapshot, leaving a hole raft never reads. Any
// failure or panic comes back wrapping ErrLogUnreadable.
func probeLogStore(s *LogStore, snapshotIndex uint64) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("read raft log: panic: %v: %w", r, ErrLogUnreadable)
		}
	}()
	unreadable := func(what string, e error) error {
		if errors.Is(e, ErrLogUnreadable) {
			return fmt.Errorf("read raft log: %s: %w", what, e)
		}
		return fmt.Errorf("read raft log: %s: %w: %w", what, ErrLogUnreadable, e)
	}
	for _, k := range [][]byte{keyCurrentTerm, keyLastVoteTerm} {
		if _, err := s.GetUint64(k); err != nil && !errors.Is(err, errKeyNotFound) {
			return unreadable(string(k), err)
		}
	}
	first, err := s.FirstIndex()
	if err != nil {
		return unreadable("first index", err)
	}
	last, err := s.LastIndex()
	if err != nil {
		return unreadable("last index", err)
	}
	if first == 0 {
		return nil
	}
	var l raft.Log
	if err := s.GetLog(last, &l); err != nil {
		return unreadable(fmt.Sprintf("last entry %d", last), err)
	}
	for i := max(first, snapshotIndex+1); i <= last; i++ {
		if err := s.GetLog(i, &l); err != nil {
			// A hole after the snapshot counts too: raft reads every
			// index from the snapshot to the last one.
			return unreadable(fmt.Sprintf("entry %d of %d..%d (snapshot at %d)", i, first, last, snapshotIndex), err)
		}
	}
	return nil
}

// VoteGate is the stable store raft sees. While closed it fails reads of
// LastVoteTerm, which raft reads only to decide on a vote request, and raft
// refuses the vote when that read fails (raft.go requestVote). Everything
// else passes through.
type VoteGate struct {
	raft.StableStore
	Closed atomic.Bool
}

// GetUint64 implements raft.StableStore.
func (g *VoteGate) GetUint64(key []byte) (uint64, error) {
	if g.Closed.Load() && bytes.Equal(key, keyLastVoteTerm) {
		return 0, errVoteWithheld
	}
	return g.StableStore.GetUint64(key)
}

// OpenDir opens DATA/raft/raft.db, migrating DATA/raft/wal first when it
// exists, and reads back once what raft will read on start given the newest
// snapshot's index (0: none). Unreadable state wraps ErrLogUnreadable; the
// caller quarantines it.
func OpenDir(base string, snapshotIndex uint64, logger hclog.Logger) (*LogStore, error) {
	if err := os.MkdirAll(base, 0o700); err != nil {
		return nil, fmt.Errorf("create raft dir %s: %w", base, err)
	}
	dbPath := filepath.Join(base, logStoreFile)
	walDir := filepath.Join(base, "wal")
	if _, err := os.Stat(walDir); err == nil {
		if _, err := migrateWAL(walDir, dbPath, logger, time.Now()); err != nil {
			return nil, err
		}
	}
	s, err := OpenLogStore(dbPath)
	if err != nil {
		return nil, err
	}
	if err := probeLogStore(s, snapshotIndex); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// logStoreFile is the bolt file under DATA/raft.
const logStoreFile = "raft.db"
