package raftnode

// The leader's queue of non-voters to add. Why: raft takes one
// configuration change at a time, each after the previous one committed.
// When a storm of joins (100 agents at once) called AddNonvoter each with
// a join's patience (a few seconds), the calls that had not reached raft
// in time gave up, and raft sat idle until the leader loop found the
// missing nodes seconds later (issue 10: four idle seconds in a formation
// of 22). Queued, the additions go to raft back to back however long the
// callers wait, a caller that stops waiting leaves its node in the queue,
// and the leader loop sees which nodes are still queued (NonvoterQueued)
// instead of guessing by time.

import (
	"context"
	"sync"
	"time"
)

// admitWorkers is how many queued additions are handed to raft at once:
// two, so that one waits in raft's channel while the other's change
// commits, and raft picks the next change without a wake-up of ours in
// between.
const admitWorkers = 2

// AdmitQueueTimeout bounds one queued addition: past it the node leaves
// the queue with the error, and the leader loop adds it again
// (node/leaderloop's admitMissing).
const AdmitQueueTimeout = 30 * time.Second

// admitQueue holds the non-voters waiting to be added, in order.
type admitQueue struct {
	mu      sync.Mutex
	order   []admitEntry
	waiters map[string][]chan error // by node ID: queued or being added
	workers int
}

type admitEntry struct{ id, addr string }

// QueueNonvoter asks for id (at addr) to be added as a non-voter and
// returns at once; the channel receives the outcome (AddNonvoter's error).
// A node already queued is not queued twice: the caller gets the outcome
// of the addition under way. The check SetAdmitCheck installed is asked
// just before the addition, which can come seconds later. Leader only.
func (r *Raft) QueueNonvoter(id, addr string) <-chan error {
	return r.admits.push(admitEntry{id, addr}, r.checkedAddNonvoter)
}

// SetAdmitCheck installs check, which a queued addition asks just before
// it runs: an error is the addition's outcome and nothing is added. Why: a
// node removed while its addition waited (`node rm`, a leave) must not come
// back into the configuration. node installs one rule for every caller
// (the join and the leader loop). Safe to call at any time; nil removes it.
func (r *Raft) SetAdmitCheck(check func(id string) error) {
	if check == nil {
		r.admitCheck.Store(nil)
		return
	}
	r.admitCheck.Store(&check)
}

// checkedAddNonvoter is AddNonvoter behind the installed admit check.
func (r *Raft) checkedAddNonvoter(ctx context.Context, id, addr string) error {
	if check := r.admitCheck.Load(); check != nil {
		if err := (*check)(id); err != nil {
			return err
		}
	}
	return r.AddNonvoter(ctx, id, addr)
}

// NonvoterQueued reports whether id waits in the queue or is being added.
func (r *Raft) NonvoterQueued(id string) bool { return r.admits.queued(id) }

// addFunc adds one non-voter (Raft.AddNonvoter).
type addFunc func(ctx context.Context, id, addr string) error

// push queues id unless it is queued already, and starts a worker when
// fewer than admitWorkers run.
func (q *admitQueue) push(e admitEntry, add addFunc) <-chan error {
	id := e.id
	ch := make(chan error, 1)
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.waiters == nil {
		q.waiters = map[string][]chan error{}
	}
	if w, ok := q.waiters[id]; ok {
		q.waiters[id] = append(w, ch)
		return ch
	}
	q.waiters[id] = []chan error{ch}
	q.order = append(q.order, e)
	if q.workers < admitWorkers {
		q.workers++
		go q.work(add)
	}
	return ch
}

func (q *admitQueue) queued(id string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	_, ok := q.waiters[id]
	return ok
}

// work adds queued nodes until the queue is empty. Not leading, each
// addition fails at once (raft.ErrNotLeader) and the queue drains.
func (q *admitQueue) work(add addFunc) {
	for {
		q.mu.Lock()
		if len(q.order) == 0 {
			q.workers--
			q.mu.Unlock()
			return
		}
		e := q.order[0]
		q.order = q.order[1:]
		q.mu.Unlock()

		ctx, cancel := context.WithTimeout(context.Background(), AdmitQueueTimeout)
		err := add(ctx, e.id, e.addr)
		cancel()

		q.mu.Lock()
		for _, ch := range q.waiters[e.id] {
			ch <- err
		}
		delete(q.waiters, e.id)
		q.mu.Unlock()
	}
}
