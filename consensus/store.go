package consensus

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-memdb"
	"github.com/shoal-org/shoal/api"
)

// Table and index names of the memdb schema. The exported ones are for the
// FSM's write transactions (write.go, consensus/fsm); readers use the
// Store's methods.
const (
	TableNodes    = "nodes"
	TableServices = "services"
	TableTasks    = "tasks"
	TableImages   = "images"
	tableCluster  = "cluster"
	TableNetworks = "networks"

	IndexID          = "id"
	indexHostname    = "hostname"
	IndexName        = "name"
	IndexServiceID   = "service_id"
	IndexNodeID      = "node_id"
	IndexServiceSlot = "service_slot"
	IndexServiceNode = "service_node"
)

// clusterRow wraps the singleton cluster record so memdb can index it. A
// row is never changed once stored (a write stores a new one), so the
// set of revoked serials that Store.IsRevoked reads is built once per
// record, at its first lookup.
type clusterRow struct {
	ID    string
	State *ClusterState

	revokedOnce sync.Once
	revoked     map[string]struct{} // State.Revoked as a set; built by isRevoked
}

// isRevoked reports whether serial is in the row's revocation list. Safe
// for concurrent use.
func (r *clusterRow) isRevoked(serial string) bool {
	if serial == "" {
		return false
	}
	r.revokedOnce.Do(func() {
		r.revoked = make(map[string]struct{}, len(r.State.Revoked))
		for _, s := range r.State.Revoked {
			r.revoked[s] = struct{}{}
		}
	})
	_, ok := r.revoked[serial]
	return ok
}

const clusterRowID = "cluster"

func schema() *memdb.DBSchema {
	id := func(field string) *memdb.IndexSchema {
		return &memdb.IndexSchema{Name: IndexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: field}}
	}
	return &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
		TableNodes: {Name: TableNodes, Indexes: map[string]*memdb.IndexSchema{
			IndexID: id("ID"),
			indexHostname: {Name: indexHostname, AllowMissing: true,
				Indexer: &memdb.StringFieldIndex{Field: "Hostname"}},
		}},
		TableServices: {Name: TableServices, Indexes: map[string]*memdb.IndexSchema{
			IndexID:   id("ID"),
			IndexName: {Name: IndexName, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Name"}},
		}},
		TableTasks: {Name: TableTasks, Indexes: map[string]*memdb.IndexSchema{
			IndexID: id("ID"),
			IndexServiceID: {Name: IndexServiceID, AllowMissing: true,
				Indexer: &memdb.StringFieldIndex{Field: "ServiceID"}},
			IndexNodeID: {Name: IndexNodeID, AllowMissing: true,
				Indexer: &memdb.StringFieldIndex{Field: "NodeID"}},
			IndexServiceSlot: {Name: IndexServiceSlot, AllowMissing: true,
				Indexer: &memdb.CompoundIndex{Indexes: []memdb.Indexer{
					&memdb.StringFieldIndex{Field: "ServiceID"},
					&memdb.IntFieldIndex{Field: "Slot"},
				}}},
			IndexServiceNode: {Name: IndexServiceNode, AllowMissing: true,
				Indexer: &memdb.CompoundIndex{Indexes: []memdb.Indexer{
					&memdb.StringFieldIndex{Field: "ServiceID"},
					&memdb.StringFieldIndex{Field: "NodeID"},
				}}},
		}},
		TableImages: {Name: TableImages, Indexes: map[string]*memdb.IndexSchema{
			IndexID: id("ID"),
		}},
		tableCluster: {Name: tableCluster, Indexes: map[string]*memdb.IndexSchema{
			IndexID: id("ID"),
		}},
		TableSecrets: {Name: TableSecrets, Indexes: map[string]*memdb.IndexSchema{
			IndexID:   id("ID"),
			IndexName: {Name: IndexName, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Name"}},
		}},
		TableConfigs: {Name: TableConfigs, Indexes: map[string]*memdb.IndexSchema{
			IndexID:   id("ID"),
			IndexName: {Name: IndexName, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Name"}},
		}},
		TableNetworks: {Name: TableNetworks, Indexes: map[string]*memdb.IndexSchema{
			IndexID:   id("ID"),
			IndexName: {Name: IndexName, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Name"}},
		}},
	}}
}

func newMemDB() *memdb.MemDB {
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		panic(fmt.Sprintf("consensus: invalid memdb schema: %v", err))
	}
	return db
}

// Store is the local replica of the cluster state. The FSM is its only
// writer; any goroutine may read it. Every read returns copies that the
// caller owns. Reads are individually consistent; use Snapshot for several
// reads that must see the same point in time.
type Store struct {
	db    atomic.Pointer[memdb.MemDB]
	index atomic.Uint64
	// readOnly is set on snapshots: they never change and never notify.
	readOnly bool

	mu      sync.Mutex
	nextSub int
	subs    map[int]chan uint64
}

// NewStore returns an empty store.
func NewStore() *Store {
	s := &Store{subs: map[int]chan uint64{}}
	s.db.Store(newMemDB())
	return s
}

// Snapshot returns a read-only, point-in-time view of the store that costs
// O(1) to take. Its Subscribe channel never fires.
func (s *Store) Snapshot() *Store {
	v := &Store{readOnly: true, subs: map[int]chan uint64{}}
	// The index is read before the data: the FSM commits data, then the
	// index, so this order can only make the view's index lag what it holds
	// (a reader waits once more), never run ahead of it.
	v.index.Store(s.index.Load())
	v.db.Store(s.db.Load().Snapshot())
	return v
}

// Fork returns a writable copy of the store at this point in time, which
// costs O(1) (memdb's snapshot: writes to either never show in the other).
// It exists for dry runs: an FSM applies commands to the fork to learn
// whether the real store would refuse them (a deploy's preflight,
// node/writes Preflight), and the fork is then dropped. Nothing
// subscribes to it.
func (s *Store) Fork() *Store {
	v := &Store{subs: map[int]chan uint64{}}
	v.index.Store(s.index.Load())
	v.db.Store(s.db.Load().Snapshot())
	return v
}

// Index is the Raft log index of the last entry applied to the store (or of
// the snapshot it was restored from).
func (s *Store) Index() uint64 { return s.index.Load() }

// Subscribe returns a channel that receives the latest applied index after
// every applied entry (and after a restore). It is buffered with one slot and
// coalescing: a slow reader sees only the newest index, and the FSM never
// blocks on it. The returned func unsubscribes and is safe to call twice.
func (s *Store) Subscribe() (<-chan uint64, func()) {
	ch := make(chan uint64, 1)
	s.mu.Lock()
	id := s.nextSub
	s.nextSub++
	s.subs[id] = ch
	s.mu.Unlock()
	return ch, func() {
		s.mu.Lock()
		delete(s.subs, id)
		s.mu.Unlock()
	}
}

// notify records index as applied and wakes every subscriber without blocking.
func (s *Store) notify(index uint64) {
	s.index.Store(index)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ch := range s.subs {
		select {
		case <-ch: // drop the stale value, keep the newest
		default:
		}
		select {
		case ch <- index:
		default:
		}
	}
}

func (s *Store) txn() *memdb.Txn { return s.db.Load().Txn(false) }

// Cluster returns the cluster record, or nil before bootstrap.
func (s *Store) Cluster() *ClusterState {
	return CloneCluster(getCluster(s.txn()))
}

func getCluster(tx *memdb.Txn) *ClusterState {
	raw, err := tx.First(tableCluster, IndexID, clusterRowID)
	if err != nil || raw == nil {
		return nil
	}
	return raw.(*clusterRow).State
}

// IsRevoked reports whether a certificate serial has been revoked. Every
// TLS handshake on the cluster port asks (node/pki): it is a set lookup,
// not a scan of the list.
func (s *Store) IsRevoked(serial string) bool {
	raw, err := s.txn().First(tableCluster, IndexID, clusterRowID)
	if err != nil || raw == nil {
		return false
	}
	return raw.(*clusterRow).isRevoked(serial)
}

// Node returns the node with exactly this ID, or ErrNotFound.
func (s *Store) Node(id string) (*api.Node, error) {
	raw, err := s.txn().First(TableNodes, IndexID, id)
	if err != nil {
		return nil, fmt.Errorf("get node %s: %w", id, err)
	}
	if raw == nil {
		return nil, fmt.Errorf("node %s: %w", id, ErrNotFound)
	}
	return CloneNode(raw.(*api.Node)), nil
}

// Nodes returns every node, ordered by ID.
func (s *Store) Nodes() []*api.Node {
	return collect(s.txn(), TableNodes, IndexID, CloneNode)
}

// NodeByHostname returns the node with this hostname; ErrAmbiguous when
// several nodes share it.
func (s *Store) NodeByHostname(hostname string) (*api.Node, error) {
	nodes := collect(s.txn(), TableNodes, indexHostname, CloneNode, hostname)
	switch len(nodes) {
	case 0:
		return nil, fmt.Errorf("node %s: %w", hostname, ErrNotFound)
	case 1:
		return nodes[0], nil
	default:
		return nil, fmt.Errorf("node hostname %s matches %d nodes: %w", hostname, len(nodes), ErrAmbiguous)
	}
}

// ResolveNode finds a node by exact ID, or else by the one node whose
// hostname or ID prefix it is, as the CLI accepts them.
func (s *Store) ResolveNode(ref string) (*api.Node, error) {
	if ref == "" {
		return nil, fmt.Errorf("node %q: %w", ref, ErrNotFound)
	}
	tx := s.txn()
	if raw, _ := tx.First(TableNodes, IndexID, ref); raw != nil {
		return CloneNode(raw.(*api.Node)), nil
	}
	// A hostname and an ID prefix are weighed together: a hostname that
	// reads as another node's short ID must not win over that node (an
	// admin typing the ID from `node ls` would act on the wrong node).
	found := collect(tx, TableNodes, indexHostname, CloneNode, ref)
	for _, n := range collect(tx, TableNodes, IndexID+"_prefix", CloneNode, ref) {
		if !slices.ContainsFunc(found, func(f *api.Node) bool { return f.ID == n.ID }) {
			found = append(found, n)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("node %s: %w", ref, ErrNotFound)
	case 1:
		return found[0], nil
	}
	return nil, fmt.Errorf("node %s matches %d nodes (by hostname or ID prefix): %w", ref, len(found), ErrAmbiguous)
}

// Service returns the service with exactly this ID, or ErrNotFound.
func (s *Store) Service(id string) (*api.Service, error) {
	raw, err := s.txn().First(TableServices, IndexID, id)
	if err != nil {
		return nil, fmt.Errorf("get service %s: %w", id, err)
	}
	if raw == nil {
		return nil, fmt.Errorf("service %s: %w", id, ErrNotFound)
	}
	return CloneService(raw.(*api.Service)), nil
}

// ServiceByName returns the service with this exact name, or ErrNotFound.
func (s *Store) ServiceByName(name string) (*api.Service, error) {
	raw, err := s.txn().First(TableServices, IndexName, name)
	if err != nil {
		return nil, fmt.Errorf("get service %s: %w", name, err)
	}
	if raw == nil {
		return nil, fmt.Errorf("service %s: %w", name, ErrNotFound)
	}
	return CloneService(raw.(*api.Service)), nil
}

// ResolveService finds a service by exact ID, exact name or unique ID
// prefix, in that order.
func (s *Store) ResolveService(ref string) (*api.Service, error) {
	if ref == "" {
		return nil, fmt.Errorf("service %q: %w", ref, ErrNotFound)
	}
	tx := s.txn()
	if raw, _ := tx.First(TableServices, IndexID, ref); raw != nil {
		return CloneService(raw.(*api.Service)), nil
	}
	if raw, _ := tx.First(TableServices, IndexName, ref); raw != nil {
		return CloneService(raw.(*api.Service)), nil
	}
	return uniquePrefix(tx, TableServices, "service", ref, CloneService)
}

// Services returns every service, ordered by ID.
func (s *Store) Services() []*api.Service {
	return collect(s.txn(), TableServices, IndexID, CloneService)
}

// Task returns the task with exactly this ID, or ErrNotFound.
func (s *Store) Task(id string) (*api.Task, error) {
	raw, err := s.txn().First(TableTasks, IndexID, id)
	if err != nil {
		return nil, fmt.Errorf("get task %s: %w", id, err)
	}
	if raw == nil {
		return nil, fmt.Errorf("task %s: %w", id, ErrNotFound)
	}
	return CloneTask(raw.(*api.Task)), nil
}

// Tasks returns every task, ordered by ID.
func (s *Store) Tasks() []*api.Task {
	return collect(s.txn(), TableTasks, IndexID, CloneTask)
}

// TasksByService returns the tasks of one service (by service ID), ordered by task ID.
func (s *Store) TasksByService(serviceID string) []*api.Task {
	return collect(s.txn(), TableTasks, IndexServiceID, CloneTask, serviceID)
}

// TasksByNode returns the tasks assigned to one node, ordered by task ID.
func (s *Store) TasksByNode(nodeID string) []*api.Task {
	return collect(s.txn(), TableTasks, IndexNodeID, CloneTask, nodeID)
}

// Image returns the image with exactly this ID, or ErrNotFound.
func (s *Store) Image(id string) (*api.Image, error) {
	raw, err := s.txn().First(TableImages, IndexID, id)
	if err != nil {
		return nil, fmt.Errorf("get image %s: %w", id, err)
	}
	if raw == nil {
		return nil, fmt.Errorf("image %s: %w", id, ErrNotFound)
	}
	return CloneImage(raw.(*api.Image)), nil
}

// ResolveImage finds an image by exact ID, tag (a ref without a tag means
// ":latest"), or unique ID prefix (with or without "sha256:").
func (s *Store) ResolveImage(ref string) (*api.Image, error) {
	if ref == "" {
		return nil, fmt.Errorf("image %q: %w", ref, ErrNotFound)
	}
	tx := s.txn()
	if raw, _ := tx.First(TableImages, IndexID, ref); raw != nil {
		return CloneImage(raw.(*api.Image)), nil
	}
	tag := ref
	if i := strings.LastIndex(ref, ":"); i < 0 || strings.Contains(ref[i:], "/") {
		tag = ref + ":latest"
	}
	for _, img := range collect(tx, TableImages, IndexID, CloneImage) {
		for _, t := range img.Tags {
			if t == ref || t == tag {
				return img, nil
			}
		}
	}
	if !strings.HasPrefix(ref, "sha256:") {
		if img, err := uniquePrefix(tx, TableImages, "image", "sha256:"+ref, CloneImage); err == nil {
			return img, nil
		}
	}
	return uniquePrefix(tx, TableImages, "image", ref, CloneImage)
}

// Images returns every image, ordered by ID.
func (s *Store) Images() []*api.Image {
	return collect(s.txn(), TableImages, IndexID, CloneImage)
}

// collect reads every object of an index lookup and clones it.
func collect[T any](tx *memdb.Txn, table, index string, clone func(*T) *T, args ...any) []*T {
	it, err := tx.Get(table, index, args...)
	if err != nil {
		// Only a schema mistake (unknown index, wrong arg type) gets here.
		panic(fmt.Sprintf("consensus: memdb get %s.%s: %v", table, index, err))
	}
	var out []*T
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, clone(raw.(*T)))
	}
	return out
}

func uniquePrefix[T any](tx *memdb.Txn, table, kind, prefix string, clone func(*T) *T) (*T, error) {
	found := collect(tx, table, IndexID+"_prefix", clone, prefix)
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("%s %s: %w", kind, prefix, ErrNotFound)
	case 1:
		return found[0], nil
	default:
		return nil, fmt.Errorf("%s prefix %s matches %d objects: %w", kind, prefix, len(found), ErrAmbiguous)
	}
}
