package logstore

// Why: agents created before the bbolt log store keep raft's log and stable
// store in DATA/raft/wal (raft-wal v0.4). On start, New copies them into
// DATA/raft/raft.db and moves the WAL aside (never deletes it):
//
//  1. copy the stable values raft keeps (CurrentTerm, LastVoteTerm,
//     LastVoteCand) and every entry FirstIndex..LastIndex into
//     raft.db.migrating, a fresh bolt file (each batch fsynced on commit);
//  2. rename raft.db.migrating to raft.db (atomic) and fsync the directory;
//  3. rename wal to wal.migrated-<time> and fsync the directory.
//
// "wal exists" therefore means "migration not finished": a crash anywhere
// before step 3 leaves the WAL in place and the next start redoes the whole
// copy over whatever raft.db holds (raft never ran on that raft.db, since
// raft starts only after step 3). A WAL that cannot be read in full — the
// raft-wal#31 tail-truncation bug, or anything else — is not migrated in
// part: a log missing entries this node acknowledged would let it vote
// unsafely. It is reported as ErrLogUnreadable and New takes the rejoin path
// (rejoin.go). raft-wal's reader and raft itself panic on some of
// these errors, so the copy runs under recover.

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
)

// Stable store keys raft v1.8 uses (raft.go: keyCurrentTerm…, unexported there).
var (
	keyCurrentTerm  = []byte("CurrentTerm")
	keyLastVoteTerm = []byte("LastVoteTerm")
	keyLastVoteCand = []byte("LastVoteCand")
)

// migrateBatch is how many entries go into one bolt transaction.
const migrateBatch = 512

// migrateWAL copies the raft-wal store in walDir into a new bolt store at
// dbPath and moves walDir aside. It returns the number of entries copied. An
// unreadable WAL gives an error wrapping ErrLogUnreadable and leaves both
// walDir and dbPath untouched; other errors (disk full…) are returned as
// they are and the next start retries.
func migrateWAL(walDir, dbPath string, logger hclog.Logger, now time.Time) (n int, err error) {
	tmp := dbPath + ".migrating"
	if err := os.Remove(tmp); err != nil && !os.IsNotExist(err) {
		return 0, fmt.Errorf("remove stale %s: %w", tmp, err)
	}
	dst, err := OpenLogStore(tmp)
	if err != nil {
		return 0, fmt.Errorf("migrate raft wal: %w", err)
	}
	defer func() {
		if dst != nil {
			_ = dst.Close()
		}
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if n, err = copyWAL(walDir, dst, logger); err != nil {
		return 0, err
	}
	if err := dst.Close(); err != nil {
		return 0, fmt.Errorf("migrate raft wal: close %s: %w", tmp, err)
	}
	dst = nil
	if err := os.Rename(tmp, dbPath); err != nil {
		return 0, fmt.Errorf("migrate raft wal: %w", err)
	}
	if err := syncDir(filepath.Dir(dbPath)); err != nil {
		return 0, err
	}
	aside := walDir + ".migrated-" + now.UTC().Format("20060102T150405Z")
	if err := os.Rename(walDir, aside); err != nil {
		return 0, fmt.Errorf("migrate raft wal: move old wal aside: %w", err)
	}
	if err := syncDir(filepath.Dir(walDir)); err != nil {
		return 0, err
	}
	logger.Info("migrated raft log from raft-wal to bbolt", "entries", n, "old_wal", aside, "log", dbPath)
	return n, nil
}

// copyWAL copies stable values and entries from the WAL in walDir into dst.
// Errors and panics while reading the WAL wrap ErrLogUnreadable.
func copyWAL(walDir string, dst *LogStore, logger hclog.Logger) (n int, err error) {
	unreadable := func(what string, e any) error {
		return fmt.Errorf("read raft wal %s: %s: %v: %w", walDir, what, e, ErrLogUnreadable)
	}
	defer func() {
		if r := recover(); r != nil {
			err = unreadable("panic", r)
		}
	}()
	// raft-wal v0.4's Close leaves a meta store it opened itself open, so
	// we own it and close it after the WAL.
	meta := &metadb.BoltMetaDB{}
	wal, err := raftwal.Open(walDir, raftwal.WithLogger(logger.Named("wal")), raftwal.WithMetaStore(meta))
	if err != nil {
		_ = meta.Close()
		return 0, unreadable("open", err)
	}
	defer func() {
		_ = wal.Close()
		_ = meta.Close()
	}()
	for _, k := range [][]byte{keyCurrentTerm, keyLastVoteTerm} {
		v, err := wal.GetUint64(k)
		if err != nil {
			return 0, unreadable(string(k), err)
		}
		if v != 0 {
			if err := dst.SetUint64(k, v); err != nil {
				return 0, fmt.Errorf("migrate raft wal: %w", err)
			}
		}
	}
	cand, err := wal.Get(keyLastVoteCand)
	if err != nil {
		return 0, unreadable(string(keyLastVoteCand), err)
	}
	if len(cand) > 0 {
		if err := dst.Set(keyLastVoteCand, cand); err != nil {
			return 0, fmt.Errorf("migrate raft wal: %w", err)
		}
	}
	first, err := wal.FirstIndex()
	if err != nil {
		return 0, unreadable("first index", err)
	}
	last, err := wal.LastIndex()
	if err != nil {
		return 0, unreadable("last index", err)
	}
	if first == 0 {
		return 0, nil
	}
	batch := make([]*raft.Log, 0, migrateBatch)
	flush := func() error {
		if err := dst.StoreLogs(batch); err != nil {
			return fmt.Errorf("migrate raft wal: %w", err)
		}
		n += len(batch)
		batch = batch[:0]
		return nil
	}
	for i := first; i <= last; i++ {
		l := new(raft.Log)
		if err := wal.GetLog(i, l); err != nil {
			return 0, unreadable(fmt.Sprintf("entry %d of %d..%d", i, first, last), err)
		}
		batch = append(batch, l)
		if len(batch) == migrateBatch {
			if err := flush(); err != nil {
				return 0, err
			}
		}
	}
	if len(batch) > 0 {
		if err := flush(); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// syncDir fsyncs a directory so that renames in it survive a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}
