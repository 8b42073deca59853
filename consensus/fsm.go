package consensus

// Why this file looks the way it does: the FSM is a pure function of the
// log. Every apply runs in one memdb write transaction that is committed on
// success and aborted on a business refusal, so a refused command leaves no
// trace. Stored objects are never mutated in place: apply clones, changes the
// clone and inserts it, which keeps readers' snapshots stable. Nothing here
// reads the clock or a random source; timestamps and IDs come in commands.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"
	"github.com/shoal-org/shoal/api"
)

// MaxTerminalTasks is how many terminal tasks are kept per replicated slot
// (service, slot) or per global task group (service, node; Slot 0). Older
// ones, by CreatedAt then ID, are deleted when their group changes.
const MaxTerminalTasks = 5

// Result is what FSM.Apply returns for every entry (raft's future.Response).
// Err is a business refusal; Value is the command's answer (the stored
// object for creates and updates, a []Result for a Batch).
type Result struct {
	Value any
	Err   error
}

// FSM applies committed log entries to a Store. It implements raft.FSM and
// must be driven by one goroutine (raft's FSM goroutine).
type FSM struct {
	store *Store
}

// NewFSM returns an FSM that writes into store. The store must not be a
// Snapshot view.
func NewFSM(store *Store) *FSM {
	if store.readOnly {
		panic("consensus: NewFSM on a read-only store snapshot")
	}
	return &FSM{store: store}
}

// Store returns the store the FSM writes into.
func (f *FSM) Store() *Store { return f.store }

var _ raft.FSM = (*FSM)(nil)

// Apply implements raft.FSM. It panics on an entry that cannot be decoded:
// a committed entry that this binary does not understand means the replicas
// would diverge, which is worse than stopping.
func (f *FSM) Apply(l *raft.Log) any {
	cmd, err := DecodeCommand(l.Data)
	if err != nil {
		panic(fmt.Sprintf("consensus: cannot decode committed log entry %d: %v", l.Index, err))
	}
	res := f.ApplyCommand(l.Index, cmd)
	return res
}

// ApplyCommand applies one decoded command as the entry at index and
// notifies subscribers. It exists for Apply and for tests that drive the FSM
// without Raft; it must not be called concurrently with Apply.
func (f *FSM) ApplyCommand(index uint64, cmd Command) Result {
	var res Result
	if p, ok := cmd.(*Batch); ok && p != nil {
		cmd = *p
	}
	if b, ok := cmd.(Batch); ok {
		results := make([]Result, 0, len(b.Commands))
		var errs []error
		for i, c := range b.Commands {
			r := f.applyOne(index, c)
			if r.Err != nil {
				errs = append(errs, fmt.Errorf("batch command %d: %w", i, r.Err))
			}
			results = append(results, r)
		}
		res = Result{Value: results, Err: errors.Join(errs...)}
	} else {
		res = f.applyOne(index, cmd)
	}
	f.store.notify(index)
	return res
}

func (f *FSM) applyOne(index uint64, cmd Command) Result {
	if isNil(cmd) {
		return Result{Err: fmt.Errorf("nil command: %w", ErrInvalid)}
	}
	if cmd.Type() == TypeBatch {
		return Result{Err: fmt.Errorf("nested batch: %w", ErrInvalid)}
	}
	tx := &writeTxn{tx: f.store.db.Load().Txn(true), index: index}
	v, err := cmd.apply(tx)
	if err != nil {
		tx.tx.Abort()
		return Result{Err: err}
	}
	tx.tx.Commit()
	return Result{Value: v}
}

// writeTxn is a memdb write transaction plus the log index being applied.
type writeTxn struct {
	tx    *memdb.Txn
	index uint64
}

func (w *writeTxn) insert(table string, obj any) error {
	if err := w.tx.Insert(table, obj); err != nil {
		return fmt.Errorf("insert into %s: %w", table, err)
	}
	return nil
}

func (w *writeTxn) delete(table string, obj any) error {
	if err := w.tx.Delete(table, obj); err != nil {
		return fmt.Errorf("delete from %s: %w", table, err)
	}
	return nil
}

// first returns the stored object (not a copy: do not mutate) or nil.
func first[T any](w *writeTxn, table, index string, args ...any) *T {
	raw, err := w.tx.First(table, index, args...)
	if err != nil {
		panic(fmt.Sprintf("consensus: memdb first %s.%s: %v", table, index, err))
	}
	if raw == nil {
		return nil
	}
	return raw.(*T)
}

// all returns the stored objects (not copies) of an index lookup.
func all[T any](w *writeTxn, table, index string, args ...any) []*T {
	it, err := w.tx.Get(table, index, args...)
	if err != nil {
		panic(fmt.Sprintf("consensus: memdb get %s.%s: %v", table, index, err))
	}
	var out []*T
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*T))
	}
	return out
}

// cluster returns a mutable copy of the cluster record or ErrNotBootstrapped.
func (w *writeTxn) cluster() (*ClusterState, error) {
	c := getCluster(w.tx)
	if c == nil {
		return nil, ErrNotBootstrapped
	}
	return cloneCluster(c), nil
}

func (w *writeTxn) putCluster(c *ClusterState) error {
	return w.insert(tableCluster, &clusterRow{ID: clusterRowID, State: c})
}

// ---- cluster and nodes ----

func (c BootstrapCluster) apply(w *writeTxn) (any, error) {
	if getCluster(w.tx) != nil {
		return nil, ErrAlreadyBootstrapped
	}
	if c.Cluster.ClusterID == "" || c.Node.ID == "" {
		return nil, fmt.Errorf("bootstrap: cluster and node IDs are required: %w", ErrInvalid)
	}
	cl := cloneCluster(&c.Cluster)
	n := cloneNode(&c.Node)
	n.Voter = true
	n.Version = w.index
	if err := ensureSubnet(w, cl, n); err != nil {
		return nil, fmt.Errorf("bootstrap node %s: %w", n.ID, err)
	}
	if err := w.putCluster(cl); err != nil {
		return nil, err
	}
	if err := w.insert(tableNodes, n); err != nil {
		return nil, err
	}
	return cloneNode(n), nil
}

func (c UpsertNode) apply(w *writeTxn) (any, error) {
	if c.Node.ID == "" {
		return nil, fmt.Errorf("upsert node: empty ID: %w", ErrInvalid)
	}
	n := cloneNode(&c.Node)
	n.Version = w.index
	if n.Subnet != "" {
		if err := checkSubnet(w, n); err != nil {
			return nil, fmt.Errorf("upsert node %s: %w", n.ID, err)
		}
	}
	if n.Subnet == "" {
		if old := first[api.Node](w, tableNodes, indexID, n.ID); old != nil && old.Subnet != "" {
			n.Subnet = old.Subnet
		} else if cl, err := w.cluster(); err == nil {
			if err := ensureSubnet(w, cl, n); err != nil {
				return nil, fmt.Errorf("upsert node %s: %w", n.ID, err)
			}
			if err := w.putCluster(cl); err != nil {
				return nil, err
			}
		}
	}
	if err := w.insert(tableNodes, n); err != nil {
		return nil, err
	}
	return cloneNode(n), nil
}

// checkSubnet refuses a node subnet given in a command that is not an IPv4
// prefix or overlaps another node's: the overlay routes each /24 to one
// node.
func checkSubnet(w *writeTxn, n *api.Node) error {
	p, err := netip.ParsePrefix(n.Subnet)
	if err != nil || !p.Addr().Is4() {
		return fmt.Errorf("subnet %q is not an IPv4 prefix: %w", n.Subnet, ErrInvalid)
	}
	for _, o := range all[api.Node](w, tableNodes, indexID) {
		if o.ID == n.ID || o.Subnet == "" {
			continue
		}
		if op, err := netip.ParsePrefix(o.Subnet); err == nil && op.Overlaps(p) {
			return fmt.Errorf("subnet %s overlaps %s of node %s: %w", p, op, o.ID, ErrInUse)
		}
	}
	return nil
}

func (c UpdateNode) apply(w *writeTxn) (any, error) {
	old := first[api.Node](w, tableNodes, indexID, c.ID)
	if old == nil {
		return nil, fmt.Errorf("update node %s: %w", c.ID, ErrNotFound)
	}
	n := cloneNode(old)
	switch c.Update.Availability {
	case "":
	case api.AvailabilityActive, api.AvailabilityPause, api.AvailabilityDrain:
		n.Availability = c.Update.Availability
	default:
		return nil, fmt.Errorf("update node %s: availability %q (want active, pause or drain): %w",
			c.ID, c.Update.Availability, ErrInvalid)
	}
	for k, v := range c.Update.LabelAdd {
		if k == "" {
			return nil, fmt.Errorf("update node %s: empty label key: %w", c.ID, ErrInvalid)
		}
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		n.Labels[k] = v
	}
	for _, k := range c.Update.LabelRm {
		delete(n.Labels, k)
	}
	switch c.Update.Role {
	case "":
	case api.RoleManager, api.RoleWorker:
		n.Role = c.Update.Role
	default:
		return nil, fmt.Errorf("update node %s: role %q (want manager or worker): %w", c.ID, c.Update.Role, ErrInvalid)
	}
	n.UpdatedAt = c.Now
	n.Version = w.index
	if err := w.insert(tableNodes, n); err != nil {
		return nil, err
	}
	return cloneNode(n), nil
}

func (c SetNodeStatus) apply(w *writeTxn) (any, error) {
	for _, s := range c.Statuses {
		if s.Status != api.NodeReady && s.Status != api.NodeDown {
			return nil, fmt.Errorf("set node %s status %q: %w", s.ID, s.Status, ErrInvalid)
		}
	}
	changed := 0
	for _, s := range c.Statuses {
		old := first[api.Node](w, tableNodes, indexID, s.ID)
		if old == nil || old.Status == s.Status {
			continue
		}
		n := cloneNode(old)
		n.Status = s.Status
		n.StatusChangedAt = s.At
		n.Version = w.index
		if err := w.insert(tableNodes, n); err != nil {
			return nil, err
		}
		changed++
	}
	return changed, nil
}

func (c SetNodeVoter) apply(w *writeTxn) (any, error) {
	old := first[api.Node](w, tableNodes, indexID, c.ID)
	if old == nil {
		return nil, fmt.Errorf("set node %s voter: %w", c.ID, ErrNotFound)
	}
	if old.Voter == c.Voter {
		return nil, nil
	}
	n := cloneNode(old)
	n.Voter = c.Voter
	n.Version = w.index
	return nil, w.insert(tableNodes, n)
}

func (c RemoveNode) apply(w *writeTxn) (any, error) {
	old := first[api.Node](w, tableNodes, indexID, c.ID)
	if old == nil {
		return nil, fmt.Errorf("remove node %s: %w", c.ID, ErrNotFound)
	}
	if err := w.delete(tableNodes, old); err != nil {
		return nil, err
	}
	if old.CertSerial != "" {
		if cl, err := w.cluster(); err == nil && !cl.IsRevoked(old.CertSerial) {
			cl.Revoked = append(cl.Revoked, old.CertSerial)
			if err := w.putCluster(cl); err != nil {
				return nil, err
			}
		}
	}
	groups := map[groupKey]struct{}{}
	for _, t := range all[api.Task](w, tableTasks, indexNodeID, c.ID) {
		nt := cloneTask(t)
		nt.DesiredState = api.TaskShutdown
		if !api.TaskTerminal(nt.State) {
			nt.State = api.TaskOrphaned
			nt.Message = "node removed"
		}
		nt.UpdatedAt = c.Now
		if err := w.insert(tableTasks, nt); err != nil {
			return nil, err
		}
		groups[taskGroup(nt)] = struct{}{}
	}
	for _, img := range all[api.Image](w, tableImages, indexID) {
		if !slices.Contains(img.Nodes, c.ID) {
			continue
		}
		ni := cloneImage(img)
		ni.Nodes = slices.DeleteFunc(ni.Nodes, func(id string) bool { return id == c.ID })
		if err := w.insert(tableImages, ni); err != nil {
			return nil, err
		}
	}
	return nil, trimGroups(w, groups)
}

func (c RotateToken) apply(w *writeTxn) (any, error) {
	cl, err := w.cluster()
	if err != nil {
		return nil, fmt.Errorf("rotate token: %w", err)
	}
	if c.SecretHash == "" {
		return nil, fmt.Errorf("rotate token: empty hash: %w", ErrInvalid)
	}
	cl.TokenSecretHash = c.SecretHash
	cl.TokenSecret = c.Secret
	cl.TokenSecretSealed = slices.Clone(c.SecretSealed)
	return nil, w.putCluster(cl)
}

// ---- cluster keys (sealing, CA rotation, certificates) ----

func (c SealClusterKeys) apply(w *writeTxn) (any, error) {
	cl, err := w.cluster()
	if err != nil {
		return nil, fmt.Errorf("seal cluster keys: %w", err)
	}
	if c.KEKID == "" || len(c.CAKeySealed) == 0 || c.CAFingerprint == "" {
		return nil, fmt.Errorf("seal cluster keys: KEK ID, sealed CA key and CA fingerprint are required: %w", ErrInvalid)
	}
	if cl.TokenSecret != "" && len(c.TokenSecretSealed) == 0 {
		return nil, fmt.Errorf("seal cluster keys: the join secret is not sealed: %w", ErrInvalid)
	}
	cl.KEKID = c.KEKID
	cl.CAKeySealed = slices.Clone(c.CAKeySealed)
	cl.CAFingerprint = c.CAFingerprint
	if len(c.TokenSecretSealed) > 0 {
		cl.TokenSecretSealed = slices.Clone(c.TokenSecretSealed)
	}
	cl.CAKeyPEM = nil
	cl.TokenSecret = ""
	return nil, w.putCluster(cl)
}

func (c RotateCA) apply(w *writeTxn) (any, error) {
	cl, err := w.cluster()
	if err != nil {
		return nil, fmt.Errorf("rotate CA: %w", err)
	}
	if len(c.CACertPEM) == 0 || len(c.CAKeySealed) == 0 || c.CAFingerprint == "" {
		return nil, fmt.Errorf("rotate CA: certificate, sealed key and fingerprint are required: %w", ErrInvalid)
	}
	if len(cl.PrevCACertPEM) > 0 {
		return nil, fmt.Errorf("rotate CA: a rotation is under way (%d nodes have no new certificate yet): %w",
			len(cl.RotationPending), ErrInUse)
	}
	if c.ExpectFingerprint != cl.CAFingerprint {
		return nil, fmt.Errorf("rotate CA: the current CA is %s, not %s: %w", cl.CAFingerprint, c.ExpectFingerprint, ErrVersionMismatch)
	}
	cl.PrevCACertPEM = cl.CACertPEM
	cl.CACertPEM = slices.Clone(c.CACertPEM)
	cl.CAFingerprint = c.CAFingerprint
	cl.CAKeySealed = slices.Clone(c.CAKeySealed)
	cl.CAKeyPEM = nil
	cl.CACrossPEM = slices.Clone(c.CACrossPEM)
	cl.RotationPending = nil
	for _, n := range all[api.Node](w, tableNodes, indexID) {
		cl.RotationPending = append(cl.RotationPending, n.ID)
	}
	slices.Sort(cl.RotationPending)
	return nil, w.putCluster(cl)
}

func (c FinishCARotation) apply(w *writeTxn) (any, error) {
	cl, err := w.cluster()
	if err != nil {
		return nil, fmt.Errorf("finish CA rotation: %w", err)
	}
	if c.CAFingerprint != cl.CAFingerprint || len(cl.PrevCACertPEM) == 0 {
		return nil, nil
	}
	cl.PrevCACertPEM = nil
	cl.CACrossPEM = nil
	cl.RotationPending = nil
	return nil, w.putCluster(cl)
}

func (c SetNodeCert) apply(w *writeTxn) (any, error) {
	if c.ID == "" || c.Serial == "" {
		return nil, fmt.Errorf("set node certificate: ID and serial are required: %w", ErrInvalid)
	}
	old := first[api.Node](w, tableNodes, indexID, c.ID)
	if old == nil {
		return nil, fmt.Errorf("set node %s certificate: %w", c.ID, ErrNotFound)
	}
	cl, err := w.cluster()
	if err != nil {
		return nil, fmt.Errorf("set node %s certificate: %w", c.ID, err)
	}
	if cl.IsRevoked(c.Serial) {
		return nil, fmt.Errorf("set node %s certificate: serial %s is revoked: %w", c.ID, c.Serial, ErrInvalid)
	}
	n := cloneNode(old)
	n.CertSerial = c.Serial
	n.Version = w.index
	if err := w.insert(tableNodes, n); err != nil {
		return nil, err
	}
	changed := false
	for _, s := range c.Revoke {
		if s != "" && s != c.Serial && !cl.IsRevoked(s) {
			cl.Revoked = append(cl.Revoked, s)
			changed = true
		}
	}
	if c.CAFingerprint != "" && c.CAFingerprint == cl.CAFingerprint {
		if i := slices.Index(cl.RotationPending, c.ID); i >= 0 {
			cl.RotationPending = slices.Delete(cl.RotationPending, i, i+1)
			changed = true
		}
	}
	if !changed {
		return nil, nil
	}
	return nil, w.putCluster(cl)
}

func (c SetGossipKeys) apply(w *writeTxn) (any, error) {
	cl, err := w.cluster()
	if err != nil {
		return nil, fmt.Errorf("set gossip keys: %w", err)
	}
	if len(c.Keys) == 0 {
		return nil, fmt.Errorf("set gossip keys: empty keyring: %w", ErrInvalid)
	}
	for i, k := range c.Keys {
		if l := len(k); l != 16 && l != 24 && l != 32 {
			return nil, fmt.Errorf("set gossip keys: key %d has %d bytes (want 16, 24 or 32): %w", i, l, ErrInvalid)
		}
	}
	cl.GossipKeys = cloneCluster(&ClusterState{GossipKeys: c.Keys}).GossipKeys
	return nil, w.putCluster(cl)
}

func (c RevokeCert) apply(w *writeTxn) (any, error) {
	cl, err := w.cluster()
	if err != nil {
		return nil, fmt.Errorf("revoke cert: %w", err)
	}
	if c.Serial == "" {
		return nil, fmt.Errorf("revoke cert: empty serial: %w", ErrInvalid)
	}
	if cl.IsRevoked(c.Serial) {
		return nil, nil
	}
	cl.Revoked = append(cl.Revoked, c.Serial)
	return nil, w.putCluster(cl)
}

func (c SetVoterTarget) apply(w *writeTxn) (any, error) {
	cl, err := w.cluster()
	if err != nil {
		return nil, fmt.Errorf("set voter target: %w", err)
	}
	if c.Target < 0 {
		return nil, fmt.Errorf("set voter target %d: %w", c.Target, ErrInvalid)
	}
	cl.VoterTarget = c.Target
	return nil, w.putCluster(cl)
}

// ---- services ----

func (c CreateService) apply(w *writeTxn) (any, error) {
	s := cloneService(&c.Service)
	if s.Name == "" {
		s.Name = s.Spec.Name
	}
	if s.ID == "" || s.Name == "" {
		return nil, fmt.Errorf("create service: ID and name are required: %w", ErrInvalid)
	}
	if first[api.Service](w, tableServices, indexID, s.ID) != nil {
		return nil, fmt.Errorf("create service %s: %w", s.ID, ErrExists)
	}
	if err := checkService(w, s, nil); err != nil {
		return nil, fmt.Errorf("create service %s: %w", s.Name, err)
	}
	if err := checkFileRefs(w, s.Spec); err != nil {
		return nil, fmt.Errorf("create service %s: %w", s.Name, err)
	}
	cl, _ := w.cluster() // nil before bootstrap: no VIP
	changed, err := assignNetworks(w, cl, s, nil)
	if err != nil {
		return nil, fmt.Errorf("create service %s: %w", s.Name, err)
	}
	if changed {
		if err := w.putCluster(cl); err != nil {
			return nil, err
		}
	}
	s.Version = w.index
	if err := w.insert(tableServices, s); err != nil {
		return nil, err
	}
	return cloneService(s), nil
}

func (c UpdateService) apply(w *writeTxn) (any, error) {
	old := first[api.Service](w, tableServices, indexID, c.Service.ID)
	if old == nil {
		return nil, fmt.Errorf("update service %s: %w", c.Service.ID, ErrNotFound)
	}
	if c.ExpectVersion != 0 && old.Version != c.ExpectVersion {
		return nil, fmt.Errorf("update service %s: stored version %d, expected %d: %w",
			old.Name, old.Version, c.ExpectVersion, ErrVersionMismatch)
	}
	s := cloneService(&c.Service)
	if s.Name == "" {
		s.Name = s.Spec.Name
	}
	if s.Name == "" {
		s.Name = old.Name
	}
	if s.VIP == "" {
		s.VIP = old.VIP
	}
	if err := checkService(w, s, old); err != nil {
		if s.Name != old.Name {
			return nil, fmt.Errorf("rename service %s to %s: %w", old.Name, s.Name, err)
		}
		return nil, fmt.Errorf("update service %s: %w", old.Name, err)
	}
	if err := checkFileRefs(w, s.Spec); err != nil {
		return nil, fmt.Errorf("update service %s: %w", old.Name, err)
	}
	cl, _ := w.cluster()
	changed, err := assignNetworks(w, cl, s, old)
	if err != nil {
		return nil, fmt.Errorf("update service %s: %w", old.Name, err)
	}
	if changed {
		if err := w.putCluster(cl); err != nil {
			return nil, err
		}
	}
	s.CreatedAt = old.CreatedAt
	s.Version = w.index
	if err := w.insert(tableServices, s); err != nil {
		return nil, err
	}
	return cloneService(s), nil
}

// checkService enforces the invariants a service must keep with every
// other one, for a create (old nil) or an update of old into s:
//
//   - its name is a DNS label (api.ServiceNameProblem) and no other service
//     has the same name in any case: `web` and `WEB` are one DNS name;
//   - its published ports are valid and no other service publishes the same
//     protocol and port: the load balancer cannot send one port two ways;
//   - its VIP, when set, is an IPv4 address no other service holds.
//
// The API checks all of this too, but against its local replica: two
// concurrent writes through two nodes both pass there, and only the state
// machine sees them in order. An update is only checked on what it changes
// (a new name, newly published ports, a new VIP), so a conflict already in
// the state (written by an older binary) does not block every later update
// of the services involved.
func checkService(w *writeTxn, s *api.Service, old *api.Service) error {
	rename := old == nil || s.Name != old.Name
	if rename {
		if p := api.ServiceNameProblem(s.Name); p != "" {
			return fmt.Errorf("name %q: %s: %w", s.Name, p, ErrInvalid)
		}
	}
	var vip netip.Addr
	newVIP := s.VIP != "" && (old == nil || s.VIP != old.VIP)
	if newVIP {
		a, err := netip.ParseAddr(strings.TrimSpace(s.VIP))
		if err != nil || !a.Is4() {
			return fmt.Errorf("VIP %q is not an IPv4 address: %w", s.VIP, ErrInvalid)
		}
		vip = a
	}
	claimed := map[string]bool{} // published ports this command adds
	var oldPorts map[string]bool
	if old != nil {
		oldPorts = map[string]bool{}
		for _, p := range old.Spec.Ports {
			oldPorts[publishedKey(p)] = true
		}
	}
	own := map[string]bool{}
	for _, p := range s.Spec.Ports {
		key := publishedKey(p)
		switch {
		case p.Published < 1 || p.Published > 65535 || p.Target < 1 || p.Target > 65535:
			return fmt.Errorf("port %d:%d out of range 1-65535: %w", p.Published, p.Target, ErrInvalid)
		case p.Protocol != "" && p.Protocol != "tcp" && p.Protocol != "udp":
			return fmt.Errorf("port %d: protocol %q (want tcp or udp): %w", p.Published, p.Protocol, ErrInvalid)
		case own[key]:
			return fmt.Errorf("published port %s listed twice: %w", key, ErrInvalid)
		}
		own[key] = true
		if !oldPorts[key] {
			claimed[key] = true
		}
	}
	if !rename && !newVIP && len(claimed) == 0 {
		return nil
	}
	for _, o := range all[api.Service](w, tableServices, indexID) {
		if o.ID == s.ID {
			continue
		}
		if rename && strings.EqualFold(o.Name, s.Name) {
			if o.Name == s.Name {
				return fmt.Errorf("a service named %s exists (%s): %w", o.Name, o.ID, ErrNameTaken)
			}
			return fmt.Errorf("name %s differs from service %s only in case, and service names are DNS names: %w",
				s.Name, o.Name, ErrNameTaken)
		}
		for _, p := range o.Spec.Ports {
			if key := publishedKey(p); claimed[key] {
				return fmt.Errorf("published port %s is taken by service %s: %w", key, o.Name, ErrInUse)
			}
		}
		if newVIP {
			if a, err := netip.ParseAddr(strings.TrimSpace(o.VIP)); err == nil && a == vip {
				return fmt.Errorf("VIP %s is taken by service %s: %w", vip, o.Name, ErrInUse)
			}
		}
	}
	return nil
}

// publishedKey names what a published port occupies on every node:
// "8080/tcp" (an empty protocol is tcp, as the API defaults it).
func publishedKey(p api.PortConfig) string {
	proto := p.Protocol
	if proto == "" {
		proto = "tcp"
	}
	return fmt.Sprintf("%d/%s", p.Published, proto)
}

func (c DeleteService) apply(w *writeTxn) (any, error) {
	old := first[api.Service](w, tableServices, indexID, c.ID)
	if old == nil {
		return nil, fmt.Errorf("delete service %s: %w", c.ID, ErrNotFound)
	}
	if err := w.delete(tableServices, old); err != nil {
		return nil, err
	}
	for _, t := range all[api.Task](w, tableTasks, indexServiceID, c.ID) {
		nt := cloneTask(t)
		nt.DesiredState = api.TaskShutdown
		// Nobody will ever report on a task that was never assigned.
		if nt.NodeID == "" && !api.TaskTerminal(nt.State) {
			nt.State = api.TaskShutdown
		}
		if !c.Now.IsZero() {
			nt.UpdatedAt = c.Now
		}
		if err := w.insert(tableTasks, nt); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// ---- tasks ----

func (c UpsertTasks) apply(w *writeTxn) (any, error) {
	for i, t := range c.Tasks {
		if t.ID == "" {
			return nil, fmt.Errorf("upsert tasks: task %d has no ID: %w", i, ErrInvalid)
		}
		if _, ok := api.TaskStateOrder[t.State]; !ok && t.State != "" {
			return nil, fmt.Errorf("upsert task %s: state %q: %w", t.ID, t.State, ErrInvalid)
		}
		if err := checkTaskRefs(w, &c.Tasks[i]); err != nil {
			return nil, fmt.Errorf("upsert task %s: %w", t.ID, err)
		}
	}
	groups := map[groupKey]struct{}{}
	for i := range c.Tasks {
		nt := cloneTask(&c.Tasks[i])
		if old := first[api.Task](w, tableTasks, indexID, nt.ID); old != nil {
			keepObserved(old, nt)
			if old.Slot != nt.Slot || old.NodeID != nt.NodeID || old.ServiceID != nt.ServiceID {
				groups[taskGroup(old)] = struct{}{}
			}
		}
		if err := w.insert(tableTasks, nt); err != nil {
			return nil, err
		}
		groups[taskGroup(nt)] = struct{}{}
	}
	return nil, trimGroups(w, groups)
}

// checkTaskRefs refuses a task that would run for a service or on a node
// that does not exist: a new task, a task moved to another service or node,
// and any task whose desired state is running must name an existing service
// and (when assigned) an existing node. The scheduler plans from a replica
// read that a DeleteService or RemoveNode may overtake; without this check
// its stale plan would bring back a task of a deleted service or assign one
// to a removed node. Tasks that only keep their old references (shutdown
// and orphan marking of tasks whose service or node is gone) pass.
func checkTaskRefs(w *writeTxn, t *api.Task) error {
	old := first[api.Task](w, tableTasks, indexID, t.ID)
	run := t.DesiredState == api.TaskRunning
	if old == nil || old.ServiceID != t.ServiceID || run {
		if t.ServiceID == "" {
			return fmt.Errorf("no service ID: %w", ErrInvalid)
		}
		if first[api.Service](w, tableServices, indexID, t.ServiceID) == nil {
			return fmt.Errorf("service %s: %w", t.ServiceID, ErrNotFound)
		}
	}
	if t.NodeID != "" && (old == nil || old.NodeID != t.NodeID || run) {
		if first[api.Node](w, tableNodes, indexID, t.NodeID) == nil {
			return fmt.Errorf("node %s: %w", t.NodeID, ErrNotFound)
		}
	}
	return nil
}

// keepObserved protects the forward-only rule against a writer (the
// scheduler) that proposes a task read before a newer status report: unless
// the proposed observed state is strictly further along, the stored observed
// fields win.
func keepObserved(old, next *api.Task) {
	if api.TaskStateOrder[next.State] > api.TaskStateOrder[old.State] {
		return
	}
	next.State = old.State
	next.Error = old.Error
	next.ExitCode = old.ExitCode
	next.ContainerID = old.ContainerID
	next.IP = old.IP
	next.IPs = old.IPs
	next.Health = old.Health
	next.StartedAt = old.StartedAt
	// Once a node handles the task, its reports own the message.
	if api.TaskStateOrder[old.State] >= api.TaskStateOrder[api.TaskPreparing] {
		next.Message = old.Message
	}
}

func (c TaskStatus) apply(w *writeTxn) (any, error) {
	applied := 0
	groups := map[groupKey]struct{}{}
	for _, st := range c.Statuses {
		old := first[api.Task](w, tableTasks, indexID, st.TaskID)
		if old == nil || c.NodeID == "" || old.NodeID != c.NodeID {
			continue
		}
		rank, known := api.TaskStateOrder[st.State]
		if !known || api.TaskTerminal(old.State) || rank < api.TaskStateOrder[old.State] {
			continue
		}
		t := cloneTask(old)
		t.State = st.State
		t.Message = st.Message
		t.Error = st.Error
		t.ExitCode = st.ExitCode
		if st.ContainerID != "" {
			t.ContainerID = st.ContainerID
		}
		if st.IP != "" {
			t.IP = st.IP
		}
		if st.IPs != nil {
			t.IPs = st.IPs
		}
		t.Health = st.Health
		if !st.Timestamp.IsZero() {
			t.UpdatedAt = st.Timestamp
			if st.State == api.TaskRunning && t.StartedAt.IsZero() {
				t.StartedAt = st.Timestamp
			}
		}
		if err := w.insert(tableTasks, t); err != nil {
			return nil, err
		}
		applied++
		if api.TaskTerminal(t.State) {
			groups[taskGroup(t)] = struct{}{}
		}
	}
	return applied, trimGroups(w, groups)
}

func (c DeleteTasks) apply(w *writeTxn) (any, error) {
	for _, id := range c.IDs {
		if t := first[api.Task](w, tableTasks, indexID, id); t != nil {
			if err := w.delete(tableTasks, t); err != nil {
				return nil, err
			}
		}
	}
	return nil, nil
}

func (TrimTasks) apply(w *writeTxn) (any, error) {
	groups := map[groupKey]struct{}{}
	for _, t := range all[api.Task](w, tableTasks, indexID) {
		groups[taskGroup(t)] = struct{}{}
	}
	return nil, trimGroups(w, groups)
}

// groupKey names the tasks that succeed one another: a replicated slot
// (Slot > 0) or a global service's tasks on one node (Slot 0).
type groupKey struct {
	service string
	slot    int
	node    string
}

func taskGroup(t *api.Task) groupKey {
	if t.Slot > 0 {
		return groupKey{service: t.ServiceID, slot: t.Slot}
	}
	return groupKey{service: t.ServiceID, node: t.NodeID}
}

// trimGroups deletes all but the MaxTerminalTasks newest terminal tasks of
// each group, in a deterministic order.
func trimGroups(w *writeTxn, groups map[groupKey]struct{}) error {
	keys := slices.Collect(maps.Keys(groups))
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.service != b.service {
			return a.service < b.service
		}
		if a.slot != b.slot {
			return a.slot < b.slot
		}
		return a.node < b.node
	})
	for _, k := range keys {
		if k.service == "" {
			continue
		}
		var members []*api.Task
		if k.slot > 0 {
			members = all[api.Task](w, tableTasks, indexServiceSlot, k.service, k.slot)
		} else if k.node != "" {
			members = all[api.Task](w, tableTasks, indexServiceNode, k.service, k.node)
		} else {
			continue // unassigned global tasks are not trimmed
		}
		var terminal []*api.Task
		for _, t := range members {
			if api.TaskTerminal(t.State) && taskGroup(t) == k {
				terminal = append(terminal, t)
			}
		}
		if len(terminal) <= MaxTerminalTasks {
			continue
		}
		sort.Slice(terminal, func(i, j int) bool {
			a, b := terminal[i], terminal[j]
			if !a.CreatedAt.Equal(b.CreatedAt) {
				return a.CreatedAt.Before(b.CreatedAt)
			}
			return a.ID < b.ID
		})
		for _, t := range terminal[:len(terminal)-MaxTerminalTasks] {
			if err := w.delete(tableTasks, t); err != nil {
				return err
			}
		}
	}
	return nil
}

// ---- images ----

func (c UpsertImage) apply(w *writeTxn) (any, error) {
	if c.Image.ID == "" {
		return nil, fmt.Errorf("upsert image: empty ID: %w", ErrInvalid)
	}
	img := cloneImage(&c.Image)
	if old := first[api.Image](w, tableImages, indexID, img.ID); old != nil {
		img.Tags = unionSorted(old.Tags, img.Tags)
		img.Nodes = unionSorted(old.Nodes, img.Nodes)
	} else {
		img.Tags = unionSorted(nil, img.Tags)
		img.Nodes = unionSorted(nil, img.Nodes)
	}
	// A tag names one image: move it away from any other holder.
	for _, other := range all[api.Image](w, tableImages, indexID) {
		if other.ID == img.ID || !slices.ContainsFunc(other.Tags, func(t string) bool { return slices.Contains(img.Tags, t) }) {
			continue
		}
		o := cloneImage(other)
		o.Tags = slices.DeleteFunc(o.Tags, func(t string) bool { return slices.Contains(img.Tags, t) })
		if err := w.insert(tableImages, o); err != nil {
			return nil, err
		}
	}
	if err := w.insert(tableImages, img); err != nil {
		return nil, err
	}
	return cloneImage(img), nil
}

func (c SetImageNode) apply(w *writeTxn) (any, error) {
	old := first[api.Image](w, tableImages, indexID, c.ImageID)
	if old == nil {
		if !c.Present {
			return nil, nil
		}
		return nil, fmt.Errorf("set image %s on node %s: %w", c.ImageID, c.NodeID, ErrNotFound)
	}
	if c.NodeID == "" {
		return nil, fmt.Errorf("set image %s node: empty node ID: %w", c.ImageID, ErrInvalid)
	}
	img := cloneImage(old)
	if c.Present {
		img.Nodes = unionSorted(img.Nodes, []string{c.NodeID})
	} else {
		img.Nodes = slices.DeleteFunc(img.Nodes, func(id string) bool { return id == c.NodeID })
	}
	return nil, w.insert(tableImages, img)
}

func (c DeleteImage) apply(w *writeTxn) (any, error) {
	old := first[api.Image](w, tableImages, indexID, c.ID)
	if old == nil {
		return nil, fmt.Errorf("delete image %s: %w", c.ID, ErrNotFound)
	}
	return nil, w.delete(tableImages, old)
}

// Batch is applied by FSM.ApplyCommand; this method only refuses nesting.
func (Batch) apply(*writeTxn) (any, error) {
	return nil, fmt.Errorf("nested batch: %w", ErrInvalid)
}

func unionSorted(a, b []string) []string {
	out := slices.Concat(a, b)
	out = slices.DeleteFunc(out, func(s string) bool { return s == "" })
	slices.Sort(out)
	return slices.Compact(out)
}

// ---- address allocation ----

// allocSubnet picks a free /24 of the cluster CIDR for node id, starting at
// cl.NextSubnet and wrapping, and advances cl.NextSubnet (the caller stores cl).
// It returns "" when the cluster has no CIDR.
// ensureSubnet gives n a free /24 of the cluster CIDR when it has none; cl
// records the allocation state (the caller stores it).
func ensureSubnet(w *writeTxn, cl *ClusterState, n *api.Node) error {
	if n.Subnet != "" {
		return nil
	}
	subnet, err := allocSubnet(w, cl, n.ID)
	if err != nil {
		return err
	}
	n.Subnet = subnet
	return nil
}

func allocSubnet(w *writeTxn, cl *ClusterState, nodeID string) (string, error) {
	if cl.ClusterCIDR == "" {
		return "", nil
	}
	p, err := netip.ParsePrefix(cl.ClusterCIDR)
	if err != nil || !p.Addr().Is4() || p.Bits() > 24 {
		return "", fmt.Errorf("cluster CIDR %q (want IPv4, /24 or larger): %w", cl.ClusterCIDR, ErrInvalid)
	}
	p = p.Masked()
	used := map[string]bool{}
	for _, n := range all[api.Node](w, tableNodes, indexID) {
		if n.ID != nodeID && n.Subnet != "" {
			used[n.Subnet] = true
		}
	}
	count := uint32(1) << (24 - p.Bits())
	base := ip4ToUint(p.Addr())
	for i := uint32(0); i < count; i++ {
		idx := (cl.NextSubnet + i) % count
		cand := netip.PrefixFrom(uintToIP4(base+idx<<8), 24).String()
		if !used[cand] {
			cl.NextSubnet = (idx + 1) % count
			return cand, nil
		}
	}
	return "", fmt.Errorf("node subnets of %s: %w", cl.ClusterCIDR, ErrExhausted)
}

// allocVIP picks a free address of the VIP range (skipping the first two and
// the last), starting at cl.NextVIP and wrapping, and advances cl.NextVIP.
func allocVIP(w *writeTxn, cl *ClusterState) (string, error) {
	p, err := netip.ParsePrefix(cl.VIPCIDR)
	if err != nil || !p.Addr().Is4() || p.Bits() > 29 {
		return "", fmt.Errorf("VIP CIDR %q (want IPv4, /29 or larger): %w", cl.VIPCIDR, ErrInvalid)
	}
	p = p.Masked()
	used := map[string]bool{}
	for _, s := range all[api.Service](w, tableServices, indexID) {
		if s.VIP != "" {
			used[strings.TrimSpace(s.VIP)] = true
		}
	}
	size := uint32(1) << (32 - p.Bits())
	const lowest = 2
	span := size - lowest - 1 // offsets lowest .. size-2
	base := ip4ToUint(p.Addr())
	start := cl.NextVIP
	if start < lowest || start > size-2 {
		start = lowest
	}
	for i := uint32(0); i < span; i++ {
		off := lowest + (start-lowest+i)%span
		cand := uintToIP4(base + off).String()
		if !used[cand] {
			cl.NextVIP = off + 1
			return cand, nil
		}
	}
	return "", fmt.Errorf("VIPs of %s: %w", cl.VIPCIDR, ErrExhausted)
}

func ip4ToUint(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func uintToIP4(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// ---- snapshots ----

// snapshotVersion is the layout version of the snapshot JSON.
const snapshotVersion = 1

// snapshotData is the whole store as one JSON document.
type snapshotData struct {
	Version  int             `json:"version"`
	Index    uint64          `json:"index"`
	Cluster  *ClusterState   `json:"cluster,omitempty"`
	Nodes    []*api.Node     `json:"nodes"`
	Services []*api.Service  `json:"services"`
	Tasks    []*api.Task     `json:"tasks"`
	Images   []*api.Image    `json:"images"`
	Networks []*api.Network  `json:"networks,omitempty"`
	Secrets  []*Secret       `json:"secrets,omitempty"`
	Configs  []*ConfigObject `json:"configs,omitempty"`
}

type fsmSnapshot struct {
	view *Store
}

// Snapshot implements raft.FSM. It takes an O(1) point-in-time view; the
// encoding happens in Persist, off the FSM goroutine.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{view: f.store.Snapshot()}, nil
}

// Persist implements raft.FSMSnapshot.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := WriteSnapshot(s.view, sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

// Release implements raft.FSMSnapshot.
func (s *fsmSnapshot) Release() {}

// WriteSnapshot writes the whole store as one JSON document.
func WriteSnapshot(s *Store, out io.Writer) error {
	tx := s.txn()
	data := snapshotData{
		Version:  snapshotVersion,
		Index:    s.Index(),
		Cluster:  getCluster(tx),
		Nodes:    collect(tx, tableNodes, indexID, func(n *api.Node) *api.Node { return n }),
		Services: collect(tx, tableServices, indexID, func(n *api.Service) *api.Service { return n }),
		Tasks:    collect(tx, tableTasks, indexID, func(n *api.Task) *api.Task { return n }),
		Images:   collect(tx, tableImages, indexID, func(n *api.Image) *api.Image { return n }),
		Secrets:  collect(tx, tableSecrets, indexID, func(n *Secret) *Secret { return n }),
		Configs:  collect(tx, tableConfigs, indexID, func(n *ConfigObject) *ConfigObject { return n }),
		Networks: collect(tx, tableNetworks, indexID, func(n *api.Network) *api.Network { return n }),
	}
	if err := json.NewEncoder(out).Encode(&data); err != nil {
		return fmt.Errorf("encode snapshot: %w", err)
	}
	return nil
}

// Restore implements raft.FSM: it replaces the whole store atomically with
// the snapshot's content and notifies subscribers.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	return f.store.restore(rc)
}

func (s *Store) restore(r io.Reader) error {
	var data snapshotData
	if err := json.NewDecoder(r).Decode(&data); err != nil {
		return fmt.Errorf("decode snapshot: %w", err)
	}
	if data.Version != snapshotVersion {
		return fmt.Errorf("snapshot version %d: %w", data.Version, ErrMalformed)
	}
	db := newMemDB()
	tx := db.Txn(true)
	insert := func(table string, obj any) error {
		if err := tx.Insert(table, obj); err != nil {
			tx.Abort()
			return fmt.Errorf("restore %s: %w", table, err)
		}
		return nil
	}
	if data.Cluster != nil {
		if err := insert(tableCluster, &clusterRow{ID: clusterRowID, State: data.Cluster}); err != nil {
			return err
		}
	}
	// In order, stopping at the first failure: the transaction is aborted.
	for _, step := range []func() error{
		func() error { return insertAll(insert, tableNodes, data.Nodes) },
		func() error { return insertAll(insert, tableServices, data.Services) },
		func() error { return insertAll(insert, tableTasks, data.Tasks) },
		func() error { return insertAll(insert, tableImages, data.Images) },
		func() error { return insertAll(insert, tableSecrets, data.Secrets) },
		func() error { return insertAll(insert, tableConfigs, data.Configs) },
		func() error { return insertAll(insert, tableNetworks, data.Networks) },
	} {
		if err := step(); err != nil {
			return err
		}
	}
	tx.Commit()
	s.db.Store(db)
	s.notify(data.Index)
	return nil
}

// insertAll restores the non-nil rows of one table; it stops at the first
// failure (insert has aborted the transaction by then).
func insertAll[T any](insert func(table string, obj any) error, table string, rows []*T) error {
	for _, r := range rows {
		if r == nil {
			continue
		}
		if err := insert(table, r); err != nil {
			return err
		}
	}
	return nil
}
