package logstore

// Why: raft's log and stable store live in one bbolt file, DATA/raft/raft.db.
// Until this file existed they lived in raft-wal v0.4, whose tail truncation
// (what a follower does when a new leader overwrites entries it could not
// commit) seals the tail segment in its metadata without writing the
// segment's index block; the next start cannot read that segment ("sealed
// segment has no index block", hashicorp/raft-wal#31, fixed upstream after
// the last released version) and raft.NewRaft panics on every start.
//
// hashicorp/raft-boltdb v1 builds with raft v1.8 but uses the unmaintained
// boltdb/bolt, whose unsafe pointer casts abort under -race (checkptr:
// "converted pointer straddles multiple allocations"); raft-boltdb/v2 (on
// bbolt) does not build with raft v1.8 and memberlist v0.7. So the store is
// our own, on bbolt (go.etcd.io/bbolt), ~150 lines shaped like raft-boltdb:
//
//   - bucket "logs": key = index (8 bytes big endian, so bolt's order is the
//     log's order), value = our entry encoding below;
//   - bucket "conf": the stable store (CurrentTerm, LastVoteTerm, LastVoteCand).
//
// Every write is one bolt transaction, fsynced on commit (but a non-voter's
// entries: syncFor): a batch of entries
// is all there or not at all, and a DeleteRange (a tail truncation or a head
// compaction) never half-happens, so an entry past a truncation cannot come
// back after a crash. torture_test.go kills a writer at random
// points to hold us to that.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

var (
	bucketLogs = []byte("logs")
	bucketConf = []byte("conf")
)

// ErrLogUnreadable: the raft log (or the raft-wal it is migrated from)
// cannot be read back. raftnode.New quarantines it and rejoins (see
// rejoin.go); consensus re-exports it as consensus.ErrLogUnreadable.
var ErrLogUnreadable = errors.New("raft log unreadable")

// errKeyNotFound is what raft expects from a StableStore for a missing key:
// raft compares the message, not the value ("not found").
var errKeyNotFound = errors.New("not found")

// logEntryVersion is the first byte of every stored entry.
const logEntryVersion = 1

// logEntryHeader is version(1) term(8) type(1) appended_at(8) data_len(4) ext_len(4).
const logEntryHeader = 1 + 8 + 1 + 8 + 4 + 4

// LogStore is raft's LogStore and StableStore in one bbolt file. It is safe
// for concurrent use (bolt serialises writers, readers see committed state).
type LogStore struct {
	db *bolt.DB
	// writeErr is the error of the last write of raft's entries when it
	// failed, nil once one succeeds (WriteFailing).
	writeErr atomic.Pointer[error]
	// wmu serialises the writes (bolt does too) so that each sets
	// db.NoSync for its own commit; self and lazy belong to it.
	wmu sync.Mutex
	// self is this node's raft ID (SetSelf); lazy is true while the
	// newest configuration entry this store wrote has self as a
	// non-voter: raft entries are then written without fsync (syncFor).
	self raft.ServerID
	lazy bool
}

// SetSelf names this node's raft ID, which turns on the non-voter's
// unsynced appends (syncFor). Without it every write is synced.
func (s *LogStore) SetSelf(id string) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.self = raft.ServerID(id)
}

// syncFor reports whether the transaction storing logs must be fsynced,
// and moves s.lazy on to what the newest configuration entry among them
// says. Call with wmu held.
//
// Why a non-voter skips the fsync: a raft entry must be on disk before a
// voter acknowledges it, because the leader counts that voter in the
// quorum that commits it; a non-voter's acknowledgement counts for
// nothing, and an entry it lost in a machine crash (a process crash loses
// nothing: the kernel has the pages) is sent again by the leader. Every
// node of a Shoal cluster replicates the log (DESIGN.md), so every cluster
// write cost every node a disk flush: with 100 agents joining at once on
// one machine, 99 non-voters flushed every entry of every join, and
// goroutine dumps of the starved leader caught raft's leader loop in
// fdatasync (the machine was CPU-bound, not waiting on I/O, so what this
// saved there was not measured apart from the other changes of that
// commit). On a real node it saves each worker a disk flush per cluster
// write.
//
// Safety: a batch with a configuration entry is always synced. A
// promotion is such an entry, and fdatasync flushes the whole file: the
// batch that makes this node a voter makes every entry before it durable
// before raft acknowledges it, and every later batch is synced. Until a
// configuration entry naming self as a non-voter has been written (after
// a restart too) every batch is synced. Truncations and the stable store
// (terms, votes) are always synced.
func (s *LogStore) syncFor(logs []*raft.Log) bool {
	conf := false
	for _, l := range logs {
		if l.Type != raft.LogConfiguration {
			continue
		}
		conf = true
		if s.self == "" {
			continue
		}
		s.lazy = nonvoterIn(raft.DecodeConfiguration(l.Data), s.self)
	}
	return conf || !s.lazy
}

// nonvoterIn reports whether id is a non-voter of c.
func nonvoterIn(c raft.Configuration, id raft.ServerID) bool {
	for _, srv := range c.Servers {
		if srv.ID == id {
			return srv.Suffrage == raft.Nonvoter
		}
	}
	return false
}

// update runs fn in a write transaction, fsynced on commit unless sync is
// false.
func (s *LogStore) update(sync bool, fn func(*bolt.Tx) error) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.updateLocked(sync, fn)
}

func (s *LogStore) updateLocked(sync bool, fn func(*bolt.Tx) error) error {
	s.db.NoSync = !sync
	defer func() { s.db.NoSync = false }()
	return s.db.Update(fn)
}

// WriteFailing returns the error of the last write of raft entries when it
// failed (a full disk: ENOSPC), nil when the last one succeeded. Why: raft
// only logs such a failure and refuses the append, so a follower whose
// disk is full never sees its tasks and nothing else noticed; the node's
// health check (node/diskhealth) reports it to the leader.
func (s *LogStore) WriteFailing() error {
	if p := s.writeErr.Load(); p != nil {
		return *p
	}
	return nil
}

// noteWrite records the outcome of a write for WriteFailing.
func (s *LogStore) noteWrite(err error) error {
	if err != nil {
		s.writeErr.Store(&err)
	} else if s.writeErr.Load() != nil {
		s.writeErr.Store(nil)
	}
	return err
}

var (
	_ raft.LogStore    = (*LogStore)(nil)
	_ raft.StableStore = (*LogStore)(nil)
)

// OpenLogStore opens (or creates) the store at path. A file that another
// process holds open makes it fail after a second instead of waiting for
// ever. A file that is not a valid bolt database fails with an error
// wrapping ErrLogUnreadable.
func OpenLogStore(path string) (*LogStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open raft log %s: held by another process (is another agent running on this data dir?): %w", path, err)
		}
		return nil, fmt.Errorf("open raft log %s: %w: %w", path, ErrLogUnreadable, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketLogs, bucketConf} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open raft log %s: %w: %w", path, ErrLogUnreadable, err)
	}
	return &LogStore{db: db}, nil
}

// Close closes the file. The store is unusable afterwards.
func (s *LogStore) Close() error { return s.db.Close() }

func indexKey(i uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], i)
	return k[:]
}

// FirstIndex returns the first stored index, 0 for an empty log.
func (s *LogStore) FirstIndex() (uint64, error) {
	var idx uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		if k, _ := tx.Bucket(bucketLogs).Cursor().First(); k != nil {
			idx = binary.BigEndian.Uint64(k)
		}
		return nil
	})
	return idx, err
}

// LastIndex returns the last stored index, 0 for an empty log.
func (s *LogStore) LastIndex() (uint64, error) {
	var idx uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		if k, _ := tx.Bucket(bucketLogs).Cursor().Last(); k != nil {
			idx = binary.BigEndian.Uint64(k)
		}
		return nil
	})
	return idx, err
}

// GetLog reads entry index into log; raft.ErrLogNotFound when it is absent.
func (s *LogStore) GetLog(index uint64, log *raft.Log) error {
	return s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketLogs).Get(indexKey(index))
		if v == nil {
			return raft.ErrLogNotFound
		}
		// decodeLogEntry copies out of bolt's memory map.
		return decodeLogEntry(index, v, log)
	})
}

// StoreLog stores one entry.
func (s *LogStore) StoreLog(log *raft.Log) error { return s.StoreLogs([]*raft.Log{log}) }

// StoreLogs stores the entries in one transaction: all or none survive a crash.
// A non-voter's batch is not fsynced (syncFor says when and why).
func (s *LogStore) StoreLogs(logs []*raft.Log) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.noteWrite(s.updateLocked(s.syncFor(logs), func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketLogs)
		for _, l := range logs {
			if err := b.Put(indexKey(l.Index), encodeLogEntry(l)); err != nil {
				return fmt.Errorf("store raft log %d: %w", l.Index, err)
			}
		}
		return nil
	}))
}

// DeleteRange deletes entries min..max inclusive in one transaction.
func (s *LogStore) DeleteRange(min, max uint64) error {
	return s.update(true, func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketLogs).Cursor()
		for k, _ := c.Seek(indexKey(min)); k != nil && binary.BigEndian.Uint64(k) <= max; k, _ = c.Next() {
			if err := c.Delete(); err != nil {
				return fmt.Errorf("delete raft log %d: %w", binary.BigEndian.Uint64(k), err)
			}
		}
		return nil
	})
}

// Set stores a stable value.
func (s *LogStore) Set(key, val []byte) error {
	return s.update(true, func(tx *bolt.Tx) error { return tx.Bucket(bucketConf).Put(key, val) })
}

// Get returns a stable value, or an error saying "not found" (raft's
// contract) when it was never set.
func (s *LogStore) Get(key []byte) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketConf).Get(key)
		if v == nil {
			return errKeyNotFound
		}
		out = append([]byte(nil), v...)
		return nil
	})
	return out, err
}

// SetUint64 stores a stable number (8 bytes big endian).
func (s *LogStore) SetUint64(key []byte, val uint64) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], val)
	return s.Set(key, b[:])
}

// GetUint64 returns a stable number, or "not found".
func (s *LogStore) GetUint64(key []byte) (uint64, error) {
	v, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("stable key %q holds %d bytes, not a uint64: %w", key, len(v), ErrLogUnreadable)
	}
	return binary.BigEndian.Uint64(v), nil
}

func encodeLogEntry(l *raft.Log) []byte {
	b := make([]byte, logEntryHeader, logEntryHeader+len(l.Data)+len(l.Extensions))
	b[0] = logEntryVersion
	binary.BigEndian.PutUint64(b[1:], l.Term)
	b[9] = byte(l.Type)
	var at int64
	if !l.AppendedAt.IsZero() {
		at = l.AppendedAt.UnixNano()
	}
	binary.BigEndian.PutUint64(b[10:], uint64(at))
	binary.BigEndian.PutUint32(b[18:], uint32(len(l.Data)))
	binary.BigEndian.PutUint32(b[22:], uint32(len(l.Extensions)))
	b = append(b, l.Data...)
	return append(b, l.Extensions...)
}

// decodeLogEntry fills l from v, copying the bytes (v belongs to bolt).
func decodeLogEntry(index uint64, v []byte, l *raft.Log) error {
	if len(v) < logEntryHeader || v[0] != logEntryVersion {
		return fmt.Errorf("raft log %d: bad header: %w", index, ErrLogUnreadable)
	}
	dl := int(binary.BigEndian.Uint32(v[18:]))
	el := int(binary.BigEndian.Uint32(v[22:]))
	if len(v) != logEntryHeader+dl+el {
		return fmt.Errorf("raft log %d: %d bytes, header says %d: %w", index, len(v), logEntryHeader+dl+el, ErrLogUnreadable)
	}
	*l = raft.Log{
		Index: index,
		Term:  binary.BigEndian.Uint64(v[1:]),
		Type:  raft.LogType(v[9]),
	}
	if at := int64(binary.BigEndian.Uint64(v[10:])); at != 0 {
		l.AppendedAt = time.Unix(0, at)
	}
	if dl > 0 {
		l.Data = append([]byte(nil), v[logEntryHeader:logEntryHeader+dl]...)
	}
	if el > 0 {
		l.Extensions = append([]byte(nil), v[logEntryHeader+dl:]...)
	}
	return nil
}
