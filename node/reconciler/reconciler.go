// Package reconciler is the loop that makes this node's containers match
// the plan: the apply half of node/taskplan (runtime calls, batched status
// reports, the drain timer). It never imports node: the runtime, the
// replica, Raft, gossip, the network and the status sink come in through
// Config.
package reconciler

// The reconciler runs on every node. It closes the gap between the tasks the
// leader assigned to this node (desired, from the local replica) and the
// containers the runtime reports (actual):
//
//	compute(tasks, containers) → actions      (node/taskplan: pure, table-tested)
//	apply(actions)                            (here: runtime calls, status reports)
//
// It runs a full pass at start, on every state change and container event,
// and every few seconds. Status reports go to the leader in batches. It never
// removes a container for a task it does not know until the local replica
// has caught up with the leader, so an agent restart (or a node coming back
// from a partition) never kills healthy containers by mistake.
//
// A task that served traffic is not stopped the moment the leader says so:
// taskplan.DrainStops holds its stop until every live node's load balancer
// has synced past the Raft entry that took it out (each node gossips the
// index its load balancer reflects), taskplan.DrainPeriod at most, so a
// rolling update or a scale-down refuses no connection and waits no fixed
// time. This file keeps what the plan needs from the world: the first sight
// of each drained stop between passes, and a timer for the next one due.
//
// Fencing: a node that has not heard from a leader for a service's disconnect
// grace period stops that service's at-most-once tasks
// (taskplan.FenceActions): by then the leader may replace them elsewhere
// (node/scheduler/calm.go). This file measures the silence (quiet), and
// renews the supervisor's lease on those tasks' containers (renewLeases),
// which stops them when a killed or hung agent renews it no more.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"sort"
	"sync"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/netloop"
	"github.com/shoal-org/shoal/node/netplan"
	"github.com/shoal-org/shoal/node/resync"
	"github.com/shoal-org/shoal/node/taskplan"
	"github.com/shoal-org/shoal/runtime"
	"github.com/shoal-org/shoal/runtime/ocispec"
)

// Runtime is the part of *runtime.Runtime the reconciler drives.
type Runtime interface {
	// Subscribe and Unsubscribe are runtime.Runtime's container events.
	Subscribe() <-chan runtime.Event
	Unsubscribe(ch <-chan runtime.Event)
	List() []api.Container
	RunContainer(ctx context.Context, spec runtime.Spec) (api.Container, error)
	Stop(ctx context.Context, id string, grace time.Duration) (api.Container, error)
	// Remove refuses a running container unless force (runtime.ErrRunning).
	Remove(ctx context.Context, id string, force bool) error
}

// Fencer is the supervisor's lease on the containers of at-most-once tasks
// (runtime.Runtime's FenceAll): a Runtime that has it gets the leases renewed
// on every pass (renewLeases), so that the supervisor, which outlives the
// agent, stops them if the agent dies or hangs; without it the fence is
// the agent's alone.
type Fencer interface {
	// FenceAll sets every lease of a pass in one call and returns the
	// error of each one it did not set, by ID.
	FenceAll(ctx context.Context, leases []runtime.Lease) map[string]error
}

// Raft is what the reconciler asks of raftnode.Raft: whether the replica
// has caught up with a leader, and when this node last heard one (fencing).
type Raft interface {
	Synced() bool
	IsLeader() bool
	LastContact() time.Time
}

// Members is what the reconciler asks of gossip: the load balancer index
// each live node reflects (membership.Membership), for the drained stops.
type Members interface {
	LBSubscribe() (<-chan struct{}, func())
	LBIndexes(selfID string) map[string]uint64
	// SetDrainWait says which index the held stops wait for (0: none), so
	// the other nodes gossip their load balancer index until they pass it.
	SetDrainWait(index uint64)
}

// Network is the container network of this node (netloop.Attacher): whether
// the overlay is up, and a container's addresses for its running report.
type Network interface {
	Ready() bool
	IPs(containerID string) map[string]string
}

// Config is what a Reconciler needs; every field is required. It is not
// changed after New.
type Config struct {
	NodeID  string
	Store   *consensus.Store // the local replica
	Raft    Raft
	Members Members
	Runtime Runtime
	Network Network
	// Write proposes a command through the leader (the agent's write:
	// forwarded, retried across leader changes); the status reports go
	// through it.
	Write func(ctx context.Context, cmd command.Command) error
	// EnsureImage makes the task's image available locally (from a peer
	// or its registry, with the task's credentials).
	EnsureImage func(ctx context.Context, t *api.Task) error
	// PrepareFiles fetches the task's secrets and reads its configs into
	// files for the container; GCTaskFiles releases those of every task
	// not in keep that has no live container.
	PrepareFiles func(ctx context.Context, t *api.Task) ([]ocispec.FileMount, error)
	GCTaskFiles  func(keep map[string]bool)
	// Resync is the agent's resync clock (nil: a ticker of the loop's own).
	Resync *resync.Clock
	Logger *slog.Logger
	// ContactFile keeps when this node last heard a leader (every few
	// seconds, never later than it did), so that an agent restart does
	// not restart the fence's clock: the containers outlive the agent, and
	// a node restarted while cut off would otherwise count its silence
	// from the restart and fence its at-most-once tasks after the leader
	// replaced them. Empty: none (the silence counts from New).
	ContactFile string
}

// Reconciler owns the per-node loop state. Make one with New and run it
// with Run, once.
type Reconciler struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	starting map[string]bool // task IDs with a start in flight
	stopping map[string]bool
	pending  map[string]api.TaskStatus
	kick     chan struct{}
	since    time.Time
	// drainSeen and drainTimer belong to the loop goroutine (pass): when
	// this node first saw each draining task's stop order, and the timer
	// that runs the pass that stops the next one.
	drainSeen  map[string]taskplan.DrainMark
	drainTimer *time.Timer
	// contact (loop goroutine) is when this node last heard from a leader
	// (or was one), for fencing; saved is the contact ContactFile holds.
	contact, saved time.Time
	// downMark and downSeen (loop goroutine): the StatusChangedAt of this
	// node's own record when the replica last showed it down, and when
	// this node first saw that mark (monotonic), for fencing (quiet).
	downMark, downSeen time.Time
	// leases (loop goroutine) is the deadline of the supervisor's lease
	// last set on each container of an at-most-once task (monotonic), and
	// leaseErr the last error setting one (logged when it changes).
	leases   map[string]time.Time
	leaseErr string
	// flush asks reportLoop to send the queued reports now; queued tells
	// it that reports wait for the next retry (both one slot, coalescing).
	flush  chan struct{}
	queued chan struct{}
}

// New returns a reconciler for cfg. Its clock of the network grace and of
// fencing starts now.
func New(cfg Config) *Reconciler {
	r := &Reconciler{cfg: cfg, log: cfg.Logger, starting: map[string]bool{}, stopping: map[string]bool{},
		pending: map[string]api.TaskStatus{}, kick: make(chan struct{}, 1), since: time.Now(),
		flush: make(chan struct{}, 1), queued: make(chan struct{}, 1)}
	r.contact = r.since
	if t, ok := loadContact(cfg.ContactFile); ok && t.Before(r.since) {
		r.contact, r.saved = t, t
	}
	return r
}

// contactSaveEvery is how often ContactFile is rewritten while contact
// advances: the file may lag the contact by this much, which only moves a
// fence after a restart earlier.
const contactSaveEvery = 2 * time.Second

// contactRecord is ContactFile's content.
type contactRecord struct {
	Contact time.Time `json:"contact"`
}

// loadContact reads the contact a previous reconciler kept in path.
func loadContact(path string) (time.Time, bool) {
	if path == "" {
		return time.Time{}, false
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return time.Time{}, false
	}
	var rec contactRecord
	if json.Unmarshal(b, &rec) != nil || rec.Contact.IsZero() {
		return time.Time{}, false
	}
	return rec.Contact, true
}

// saveContact keeps r.contact in ContactFile when it moved on by
// contactSaveEvery since the last save (writeContact). No fsync: the file
// only has to outlive the agent's process, as the containers do.
func (r *Reconciler) saveContact() {
	if r.cfg.ContactFile == "" || r.contact.Sub(r.saved) < contactSaveEvery {
		return
	}
	b, err := json.Marshal(contactRecord{Contact: r.contact.Round(0).UTC()})
	if err == nil {
		err = writeContact(r.cfg.ContactFile, b)
	}
	if err != nil {
		r.log.Debug("keep the last contact with a leader", "err", err)
		return
	}
	r.saved = r.contact
}

// contactSize is ContactFile's length: every record is padded with
// spaces (which JSON allows) to it, so that each save overwrites the last
// one whole.
const contactSize = 64

// writeContact overwrites ContactFile in place with record b, padded to
// contactSize.
//
// Why in place, not a new file renamed over the old one: the save comes
// every couple of seconds on every idle node, and a rename frees the old
// file's inode and block, which on a file system mounted with `discard`
// (this VM's, and some SSD setups) is a synchronous discard request to the
// disk each time (an idle follower's only disk I/O, in a scheduler trace).
// An overwrite of one short record within one block is as atomic for
// what the file must survive (the agent's death, not the machine's:
// the containers go with the machine), and allocates nothing, so it does
// not fail on a full disk either.
func writeContact(path string, b []byte) error {
	if len(b) > contactSize-1 {
		return fmt.Errorf("contact record of %d bytes, more than %d", len(b), contactSize-1)
	}
	rec := bytes.Repeat([]byte{' '}, contactSize)
	copy(rec, b)
	rec[contactSize-1] = '\n'
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(rec, 0)
	if err == nil {
		// A longer file (not one of ours) would keep a tail.
		var fi os.FileInfo
		if fi, err = f.Stat(); err == nil && fi.Size() > contactSize {
			err = f.Truncate(contactSize)
		}
	}
	return errors.Join(err, f.Close())
}

// Run reconciles until ctx ends and returns once every goroutine it
// started (starts, stops, the report loop) has ended.
func (r *Reconciler) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() { defer wg.Done(); r.reportLoop(ctx) }()
	defer func() {
		if r.drainTimer != nil {
			r.drainTimer.Stop()
		}
	}()

	storeCh, cancelStore := r.cfg.Store.Subscribe()
	defer cancelStore()
	evCh := r.cfg.Runtime.Subscribe()
	defer r.cfg.Runtime.Unsubscribe(evCh)
	lbCh, cancelLB := r.cfg.Members.LBSubscribe()
	defer cancelLB()
	tick, stopTick := r.cfg.Resync.Ticks(resync.Period)
	defer stopTick()
	for {
		r.pass(ctx, &wg)
		// Load balancer progress matters only while a stop is drained.
		var drainCh <-chan struct{}
		if len(r.drainSeen) > 0 {
			drainCh = lbCh
		}
		// Coalesce bursts: wait for a change, then a short quiet period.
		select {
		case <-ctx.Done():
			return
		case <-storeCh:
		case <-evCh:
		case <-r.kick:
		case <-drainCh:
			continue // the held stops are due or not: no need to coalesce
		case <-tick:
			continue // a resync is no burst: no need to coalesce (one wake-up, not two)
		}
		timer := time.NewTimer(20 * time.Millisecond)
	drain:
		for {
			select {
			case <-storeCh:
			case <-evCh:
			case <-timer.C:
				break drain
			case <-ctx.Done():
				timer.Stop()
				return
			}
		}
	}
}

func (r *Reconciler) pass(ctx context.Context, wg *sync.WaitGroup) {
	self := r.cfg.NodeID
	tasks := r.cfg.Store.TasksByNode(self)
	// Reports not yet flushed count as the task's state, so one state is
	// reported once.
	r.mu.Lock()
	taskplan.WithPending(tasks, r.pending)
	r.mu.Unlock()
	// Read after the tasks: every order they carry is at or before index.
	index := r.cfg.Store.Index()
	// mono keeps its monotonic reading (UTC would drop it) for the spans
	// measured on this node alone: the silence of the leader (fencing)
	// and the drain's hold. On the wall clock, an NTP step back during a
	// partition would delay the fence of at-most-once tasks by the step
	// (the leader starts their replacements on time: both run), and a
	// step forward past the disconnect grace would fence them at once.
	// now, the wall clock, stamps the reports.
	mono := time.Now()
	now := mono.UTC()
	containers := r.cfg.Runtime.List()
	acts := taskplan.ComputeActions(self, tasks, containers, r.synced(), now)
	specs, quiet := r.specs(tasks), r.quiet(mono)
	acts = taskplan.FenceActions(acts, self, tasks, containers, specs, quiet)
	r.renewLeases(ctx, mono, taskplan.FenceLeases(self, tasks, containers, specs, quiet), containers)
	// Stops of tasks that served traffic wait until every node has dropped
	// them from its load balancer.
	acts, seen, wake := taskplan.DrainStops(acts, r.drainSeen, mono, index, r.cfg.Members.LBIndexes(self), taskplan.DrainPeriod, netplan.ServesTraffic) // the load balancers' own rule
	r.drainSeen = seen
	r.cfg.Members.SetDrainWait(taskplan.DrainDemand(seen))
	if !wake.IsZero() {
		if r.drainTimer != nil {
			r.drainTimer.Stop()
		}
		r.drainTimer = time.AfterFunc(wake.Sub(mono), r.signal)
	}
	for _, act := range acts {
		act := act
		switch act.Kind {
		case taskplan.Report:
			st := act.Status
			if st.State == api.TaskRunning && st.IPs == nil {
				// The pass saw the container running before the start
				// queued its own report: this one must carry the
				// addresses too, or, queued after it, it would replace
				// them and the task would serve no network.
				st.IPs = r.cfg.Network.IPs(st.ContainerID)
			}
			r.queue(st)
		case taskplan.Start:
			r.goClaimed(wg, r.starting, act.Task.ID, func() { r.start(ctx, act.Task) })
		case taskplan.Stop:
			r.goClaimed(wg, r.stopping, act.Container.ID, func() {
				// 0 is the default; api.ExplicitZero (`--stop-grace-period
				// 0`) is negative, which the runtime's Stop reads as "kill
				// at once", as it does in the task's own StopGrace below.
				grace := act.Task.Spec.StopGracePeriod
				if grace == 0 {
					grace = 10 * time.Second
				}
				if _, err := r.cfg.Runtime.Stop(ctx, act.Container.ID, grace); err != nil {
					r.log.Warn("stop task container", "task", act.Task.Name, "err", err)
				}
				r.signal()
			})
		case taskplan.Remove:
			if act.Task != nil && r.busy(r.starting, act.Task.ID) {
				continue
			}
			r.goClaimed(wg, r.stopping, act.Container.ID, func() {
				// The decision was made on a snapshot: a container listed as
				// created may be running by now. Force (SIGKILL) only when
				// its task is gone; a leftover of a known task is removed
				// only if it is still not running (the next pass decides).
				force := act.Task == nil
				if err := r.cfg.Runtime.Remove(ctx, act.Container.ID, force); err != nil && !errors.Is(err, runtime.ErrRunning) {
					r.log.Warn("remove container", "container", api.ShortID(act.Container.ID), "err", err)
				}
			})
		}
	}
	r.gcFinished(ctx, tasks)
	r.mu.Lock()
	keep := make(map[string]bool, len(r.starting))
	for id := range r.starting {
		keep[id] = true
	}
	r.mu.Unlock()
	r.cfg.GCTaskFiles(keep)
}

// synced reports whether the replica can say which containers belong to
// no task (ComputeActions then removes them, forced): Raft's Synced, and
// the replica holds this node's own record. A node that lost its Raft log
// (an unreadable raft.db is quarantined at start) has an empty log, so it
// counts as caught up as soon as a leader's first heartbeat names the
// leader, before the leader has sent the snapshot: the empty replica
// knows no task, and every task container of the node would be killed.
// No replica that has heard the log lacks this node's record: the node
// is admitted (its record written) before it receives the log, and a
// removal resets the node without this loop (RemoveTasks).
func (r *Reconciler) synced() bool {
	if !r.cfg.Raft.Synced() {
		return false
	}
	n, err := r.cfg.Store.Node(r.cfg.NodeID)
	return err == nil && n != nil
}

// quiet returns how long this node has not heard from a leader, for
// fencing: 0 on the leader. now must carry its monotonic reading (as
// contact and Raft's LastContact do), so a step of the wall clock is no
// silence. A node whose own record in its replica has been
// down for longer counts from then: it hears the log, but the leader does not
// hear it (gossip), and will replace its at-most-once tasks.
func (r *Reconciler) quiet(now time.Time) time.Duration {
	defer r.saveContact()
	if r.cfg.Raft.IsLeader() {
		r.contact = now
		return 0
	}
	if lc := r.cfg.Raft.LastContact(); lc.After(r.contact) {
		r.contact = lc
	}
	self, err := r.cfg.Store.Node(r.cfg.NodeID)
	if err != nil {
		self = nil
	}
	q := taskplan.Quiet(now, r.contact, self)
	// The down mark carries the leader's clock, which may be ahead of this
	// node's: counted on this node's clock alone the fence would come
	// late by the difference, after the leader replaced the tasks. This
	// node sees the mark a moment after the leader wrote it (it hears the
	// log), so the time since it first saw the mark, on its own monotonic
	// clock, is a bound that no clock difference moves.
	if self == nil || self.Status != api.NodeDown {
		r.downMark, r.downSeen = time.Time{}, time.Time{}
		return q
	}
	if r.downSeen.IsZero() || !r.downMark.Equal(self.StatusChangedAt) {
		r.downMark, r.downSeen = self.StatusChangedAt, now
	}
	return max(q, now.Sub(r.downSeen))
}

// leaseSlack is how much later than the armed one a lease's deadline may
// be before renewLeases renews it: passes come in bursts on state changes,
// and a burst need not resend leases that barely moved.
const leaseSlack = time.Second

// LeaseBatch is the pure half of renewLeases: the leases to send in this
// pass's one request, from want (taskplan.FenceLeases: container ID ->
// lease), armed (container ID -> the deadline last set) and running (the
// containers that run now). A wanted lease goes when its deadline is
// earlier than the armed one or leaseSlack or more later (or it is not
// armed); an armed one no longer wanted is disarmed (After 0) when its
// container still runs. Drop lists the armed leases no longer wanted
// (disarmed or ended), to forget. Sorted by ID.
func LeaseBatch(now time.Time, want map[string]time.Duration, armed map[string]time.Time, running map[string]bool) (batch []runtime.Lease, drop []string) {
	for id, d := range want {
		deadline := now.Add(d)
		if at, ok := armed[id]; ok && !deadline.Before(at) && deadline.Sub(at) < leaseSlack {
			continue
		}
		batch = append(batch, runtime.Lease{ID: id, After: d})
	}
	for id := range armed {
		if _, ok := want[id]; ok {
			continue
		}
		if running[id] {
			batch = append(batch, runtime.Lease{ID: id})
		}
		drop = append(drop, id)
	}
	sort.Slice(batch, func(i, j int) bool { return batch[i].ID < batch[j].ID })
	sort.Strings(drop)
	return batch, drop
}

// renewLeases sets the supervisor's leases of this pass (LeaseBatch) in
// one call, whatever the number of at-most-once containers: it used to
// make one call per container per pass. A lease that failed is forgotten,
// so the next pass sends it again; the first error of a kind is logged
// once. now carries its monotonic reading.
func (r *Reconciler) renewLeases(ctx context.Context, now time.Time, want map[string]time.Duration, containers []api.Container) {
	f, ok := r.cfg.Runtime.(Fencer)
	if !ok || (len(want) == 0 && len(r.leases) == 0) {
		return
	}
	if r.leases == nil {
		r.leases = map[string]time.Time{}
	}
	running := make(map[string]bool, len(containers))
	for _, c := range containers {
		running[c.ID] = c.State == api.ContainerRunning
	}
	batch, drop := LeaseBatch(now, want, r.leases, running)
	for _, id := range drop {
		delete(r.leases, id)
	}
	var failed map[string]error
	if len(batch) > 0 {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		failed = f.FenceAll(ctx, batch)
		cancel()
	}
	var errs []error
	noLease := 0
	for _, l := range batch {
		if err := failed[l.ID]; err != nil {
			if errors.Is(err, runtime.ErrNoLease) {
				noLease++ // one message for all: it is the supervisor's
			} else {
				errs = append(errs, err)
			}
			delete(r.leases, l.ID)
			continue
		}
		if l.After > 0 {
			r.leases[l.ID] = now.Add(l.After)
		}
	}
	if noLease > 0 {
		errs = append(errs, fmt.Errorf("%d at-most-once containers: %w", noLease, runtime.ErrNoLease))
	}
	msg := ""
	if err := errors.Join(errs...); err != nil {
		msg = err.Error()
	}
	if msg != r.leaseErr {
		r.leaseErr = msg
		if msg != "" {
			r.log.Warn("at-most-once lease: the supervisor will not stop these containers if the agent dies", "err", msg)
		}
	}
}

// specs returns the current specs of the services of tasks, by ID.
func (r *Reconciler) specs(tasks []*api.Task) map[string]api.ServiceSpec {
	out := map[string]api.ServiceSpec{}
	for _, t := range tasks {
		if _, ok := out[t.ServiceID]; ok {
			continue
		}
		if s, err := r.cfg.Store.Service(t.ServiceID); err == nil && s != nil {
			out[t.ServiceID] = s.Spec
		}
	}
	return out
}

// gcFinished removes containers of terminal tasks once they are no longer
// among the newest few of their slot (taskplan.GCFinished); the task history
// keeps their record.
func (r *Reconciler) gcFinished(ctx context.Context, tasks []*api.Task) {
	for _, id := range taskplan.GCFinished(tasks, r.cfg.Runtime.List()) {
		// Not forced: the list is a snapshot, and a container that
		// started since must not be killed (the runtime refuses).
		_ = r.cfg.Runtime.Remove(ctx, id, false)
	}
}

func (r *Reconciler) claim(m map[string]bool, id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m[id] {
		return false
	}
	m[id] = true
	return true
}

// goClaimed runs do on a goroutine of wg with id claimed in m (starting
// or stopping) until it returns; while an earlier one holds id it does
// nothing, and the next pass decides again.
func (r *Reconciler) goClaimed(wg *sync.WaitGroup, m map[string]bool, id string, do func()) {
	if !r.claim(m, id) {
		return
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer r.release(m, id)
		do()
	}()
}

func (r *Reconciler) busy(m map[string]bool, id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return m[id]
}

func (r *Reconciler) release(m map[string]bool, id string) {
	r.mu.Lock()
	delete(m, id)
	r.mu.Unlock()
}

func (r *Reconciler) signal() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

func (r *Reconciler) queue(st api.TaskStatus) {
	r.mu.Lock()
	r.pending[st.TaskID] = keepAddresses(r.pending[st.TaskID], st)
	r.mu.Unlock()
	// Running and ended are what the scheduler waits for (the next batch,
	// the replacement of a stopped task); the steps before ride along with
	// them or with the next retry tick, to keep the writes few.
	ch := r.queued
	if st.State == api.TaskRunning || api.TaskTerminal(st.State) {
		ch = r.flush
	}
	select {
	case ch <- struct{}{}:
	default:
	}
}

// keepAddresses returns next, the newer report of a task, with the
// addresses of prev (the one it replaces before it was sent) when next is
// the same state of the same container and carries none: a report without
// addresses must not erase what the start found.
func keepAddresses(prev, next api.TaskStatus) api.TaskStatus {
	if next.IPs == nil && next.IP == "" && prev.TaskID == next.TaskID && prev.State == next.State && prev.ContainerID == next.ContainerID {
		next.IP, next.IPs = prev.IP, prev.IPs
	}
	return next
}

// start prepares the image and runs the task's container.
func (r *Reconciler) start(ctx context.Context, t *api.Task) {
	now := func() time.Time { return time.Now().UTC() }
	r.queue(api.TaskStatus{TaskID: t.ID, State: api.TaskPreparing, Timestamp: now()})
	r.waitNetwork(ctx)
	if err := r.cfg.EnsureImage(ctx, t); err != nil {
		r.queue(api.TaskStatus{TaskID: t.ID, State: api.TaskRejected, Error: err.Error(), Timestamp: now()})
		return
	}
	files, err := r.cfg.PrepareFiles(ctx, t)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		r.queue(api.TaskStatus{TaskID: t.ID, State: api.TaskRejected, Error: fmt.Sprintf("secrets and configs: %v", err), Timestamp: now()})
		return
	}
	spec, err := containerSpec(t, files)
	if err != nil {
		r.queue(api.TaskStatus{TaskID: t.ID, State: api.TaskRejected, Error: err.Error(), Timestamp: now()})
		return
	}
	r.queue(api.TaskStatus{TaskID: t.ID, State: api.TaskStarting, Timestamp: now()})
	c, err := r.cfg.Runtime.RunContainer(netloop.WithNetworks(ctx, api.SpecNetworks(t.Spec)), spec)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		r.queue(api.TaskStatus{TaskID: t.ID, State: api.TaskRejected, Error: fmt.Sprintf("start container: %v", err), Timestamp: now()})
		return
	}
	if t.Spec.AtMostOnce {
		r.armLease(ctx, c.ID, t.Spec)
	}
	r.queue(api.TaskStatus{TaskID: t.ID, State: api.TaskRunning, ContainerID: c.ID, Health: c.Health, IP: c.IP, IPs: r.cfg.Network.IPs(c.ID), Timestamp: now()})
}

// armLease sets the supervisor's lease on an at-most-once container as
// soon as it runs. Why: a pass renews the leases of the containers it
// listed when it began (renewLeases), so a container started during a
// pass got its first lease on the next one, up to a pass later; an agent
// killed in between left it without a lease, and it ran on for good beside
// the replacement the leader starts after the disconnect grace. The next
// pass takes the lease over (renewLeases sees it unarmed and sets it
// again: one extra entry per start). A supervisor without leases is the
// pass's to report (ErrNoLease, once).
func (r *Reconciler) armLease(ctx context.Context, id string, spec api.ServiceSpec) {
	f, ok := r.cfg.Runtime.(Fencer)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := f.FenceAll(ctx, []runtime.Lease{{ID: id, After: taskplan.LeaseFor(spec, 0)}})[id]; err != nil && !errors.Is(err, runtime.ErrNoLease) {
		r.log.Warn("at-most-once container: its first lease was not set; the next pass sets it", "container", api.ShortID(id), "err", err)
	}
}

// containerSpec is the container of task t, with its prepared secret and
// config files. An error (a spec the leader's validation let through that
// this agent cannot run) rejects the task.
func containerSpec(t *api.Task, files []ocispec.FileMount) (runtime.Spec, error) {
	spec := runtime.Spec{
		Name:       fmt.Sprintf("%s.%s", t.Name, api.ShortID(t.ID)),
		Image:      t.Spec.Image,
		Command:    t.Spec.Command,
		Entrypoint: t.Spec.Entrypoint,
		Env:        t.Spec.Env,
		Workdir:    t.Spec.Workdir,
		User:       t.Spec.User,
		Hostname:   api.TaskHostname(t),
		Limits:     t.Spec.Resources.Limits,
		// As Swarm: the reservation the scheduler counted is also the
		// container's memory soft limit (softLimit).
		MemoryReservation: softLimit(t.Spec.Resources),
		TaskID:            t.ID,
		Labels:            map[string]string{"shoal.service": t.Service, "shoal.task": t.Name},
		Healthcheck:       t.Spec.Healthcheck,
		StopGrace:         t.Spec.StopGracePeriod,
		Files:             files,
		Mounts:            t.Spec.Mounts,
		ReadOnly:          t.Spec.ReadOnly,
		CapAdd:            t.Spec.CapAdd,
		CapDrop:           t.Spec.CapDrop,
		Sysctls:           t.Spec.Sysctls,
		Ulimits:           t.Spec.Ulimits,
		StopSignal:        t.Spec.StopSignal,
		ExtraHosts:        t.Spec.ExtraHosts,
	}
	if err := spec.SetLogging(t.Spec.LogDriver, t.Spec.LogOptions); err != nil {
		return runtime.Spec{}, fmt.Errorf("logging: %w", err)
	}
	return spec, nil
}

// networkGrace is how long a task start waits for the overlay after the
// reconciler started (a node that just joined learns its subnet within a
// second); past it tasks start with loopback only rather than never.
const networkGrace = 10 * time.Second

func (r *Reconciler) waitNetwork(ctx context.Context) {
	for !r.cfg.Network.Ready() && time.Since(r.since) < networkGrace {
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// reportLoop flushes queued status reports to the leader in batches: as
// soon as a task is running or ended (after reportCoalesce, so that a burst
// of starts goes in one write), and reportRetry after anything else was
// queued (the earlier steps of a start) or a write failed. With nothing
// queued it sleeps: no timer runs on an idle node.
func (r *Reconciler) reportLoop(ctx context.Context) {
	const (
		reportCoalesce = 5 * time.Millisecond
		reportRetry    = 100 * time.Millisecond
	)
	retry := time.NewTimer(reportRetry)
	retry.Stop()
	armed := false
	rearm := func() {
		if !armed {
			retry.Reset(reportRetry)
			armed = true
		}
	}
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.queued:
			rearm()
			continue
		case <-retry.C:
			armed = false
		case <-r.flush:
			t := time.NewTimer(reportCoalesce)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		r.mu.Lock()
		if len(r.pending) == 0 {
			r.mu.Unlock()
			continue
		}
		batch := make([]api.TaskStatus, 0, len(r.pending))
		for _, st := range r.pending {
			batch = append(batch, st)
		}
		r.mu.Unlock()
		sort.Slice(batch, func(i, j int) bool { return batch[i].Timestamp.Before(batch[j].Timestamp) })
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := r.cfg.Write(wctx, &command.TaskStatus{NodeID: r.cfg.NodeID, Statuses: batch})
		cancel()
		if err != nil {
			r.log.Debug("task status report failed; will retry", "err", err)
			rearm()
			continue
		}
		r.mu.Lock()
		for _, st := range batch {
			if cur, ok := r.pending[st.TaskID]; ok && reflect.DeepEqual(cur, st) {
				delete(r.pending, st.TaskID)
			}
		}
		left := len(r.pending)
		r.mu.Unlock()
		if left > 0 {
			rearm() // queued while the write was under way
		}
		r.signal()
	}
}

// softLimit is the memory soft limit of a task's container: its memory
// reservation, but never above its memory limit. Why the clamp: a service
// stored before reservations became soft limits may reserve more than its
// limit (it was only counted for scheduling; servicespec refuses that
// now), and the runtime refuses such a container: its tasks would stop
// starting after an upgrade.
func softLimit(r api.ResourceRequirements) int64 {
	if lim := r.Limits.MemoryBytes; lim > 0 && r.Reservations.MemoryBytes > lim {
		return lim
	}
	return max(r.Reservations.MemoryBytes, 0)
}
