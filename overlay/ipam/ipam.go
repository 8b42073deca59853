// Package ipam hands out a node subnet's addresses to containers, next
// fit, and keeps them in one file so that a re-adopted container keeps
// its address across agent restarts (README.md). It needs no consensus:
// each node owns its subnet.
package ipam

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/shoal-org/shoal/overlay/overlayerr"
)

var (
	// ErrSubnetFull: every address of the node's subnet is allocated.
	ErrSubnetFull = errors.New("no free address in the node subnet")
	// ErrCorrupt: the allocation file could not be used (torn by a power
	// loss, or edited); Open set it aside and started empty (Recovered).
	ErrCorrupt = errors.New("address allocation file unusable")
)

// File is the allocation file inside the overlay's Config.StateDir;
// CorruptFile is where Open moves one it cannot use (the last one only).
const (
	File        = "ipam.json"
	CorruptFile = File + ".corrupt"
)

// ipamState is the persisted form of the allocations: one file, rewritten
// atomically (temp file, rename); changes that come together share a write
// (Allocator.persist).
type ipamState struct {
	// Subnet the allocations belong to; a file for another subnet (the node
	// rejoined and got a new /24) is discarded.
	Subnet string `json:"subnet"`
	// Last is the most recently handed-out address. Allocation continues after
	// it (next fit) so that a released address is reused as late as possible:
	// stale conntrack entries, DNS answers and neighbour caches elsewhere
	// still point at it for a while.
	Last string `json:"last,omitempty"`
	// Allocations maps container ID to address.
	Allocations map[string]string `json:"allocations"`
}

// Allocator hands out the addresses of one subnet to containers: the network
// address (the VXLAN device's), the first host address (the bridge's) and the
// broadcast address are never handed out, so a /24 yields .2 to .254.
// It is safe for concurrent use.
type Allocator struct {
	path   string
	subnet netip.Prefix
	first  netip.Addr // first allocatable address
	last   netip.Addr // last allocatable address

	mu     sync.Mutex
	byID   map[string]netip.Addr
	used   map[netip.Addr]string
	cursor netip.Addr // last handed-out address (invalid = none yet)
	gen    uint64     // bumped by every change of the three above

	// saveMu orders the file writes; saved is the gen the file holds
	// (guarded by saveMu). A change returns once the file holds it, and a
	// write holds every change made before it: changes that queue behind a
	// write find themselves saved by the next one (group commit), so a
	// burst of container starts costs a few writes, not one per start in
	// line. write is writeFileAtomic (tests slow it down).
	saveMu sync.Mutex
	saved  uint64
	write  func(path string, data []byte) error

	// recovered is why Open set the file aside (wraps ErrCorrupt), or nil.
	recovered error
}

// Open loads the allocations of subnet from dir (creating dir if
// needed). Allocations recorded for another subnet are dropped. A file it
// cannot use (torn, edited: not JSON, an address outside the subnet or
// given twice) is moved to CorruptFile and the allocator starts empty,
// saying why in Recovered: refusing it left the node without an overlay
// for good. The caller should Restore what it knows is still attached
// (the overlay reads it off the containers' veths) before it allocates.
func Open(dir string, subnet netip.Prefix) (*Allocator, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir %s: %w", dir, err)
	}
	first, last, err := hostRange(subnet)
	if err != nil {
		return nil, err
	}
	a := &Allocator{
		path:   filepath.Join(dir, File),
		subnet: subnet,
		first:  first,
		last:   last,
		byID:   map[string]netip.Addr{},
		used:   map[netip.Addr]string{},
		write:  writeFileAtomic,
	}
	data, err := os.ReadFile(a.path)
	if errors.Is(err, fs.ErrNotExist) {
		return a, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", a.path, err)
	}
	if why := a.load(data); why != nil {
		// Start empty, but keep the file for whoever looks into it; a
		// file that cannot even be moved is refused (the disk is in
		// trouble, and the next save would overwrite it).
		a.byID, a.used, a.cursor = map[string]netip.Addr{}, map[netip.Addr]string{}, netip.Addr{}
		aside := filepath.Join(dir, CorruptFile)
		if err := os.Rename(a.path, aside); err != nil {
			return nil, fmt.Errorf("%w: %s: %w; and it could not be moved aside: %w", ErrCorrupt, a.path, why, err)
		}
		a.recovered = fmt.Errorf("%w: %s: %w (moved to %s; starting empty)", ErrCorrupt, a.path, why, aside)
	}
	return a, nil
}

// load takes the allocations of the file's content data, or says why it
// cannot (a's maps may then hold part of it).
func (a *Allocator) load(data []byte) error {
	var st ipamState
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	if st.Subnet != a.subnet.String() {
		// The node got another subnet: the old addresses mean nothing here.
		return nil
	}
	for id, s := range st.Allocations {
		ip, err := netip.ParseAddr(s)
		if err != nil || !a.allocatable(ip) {
			return fmt.Errorf("container %s has bad address %q", id, s)
		}
		if other, dup := a.used[ip]; dup {
			return fmt.Errorf("address %s given to both %s and %s", ip, other, id)
		}
		a.byID[id] = ip
		a.used[ip] = id
	}
	if ip, err := netip.ParseAddr(st.Last); err == nil && a.allocatable(ip) {
		a.cursor = ip
	}
	return nil
}

// Recovered says why Open set the allocation file aside and started
// empty (an error wrapping ErrCorrupt), or nil when it loaded it.
func (a *Allocator) Recovered() error { return a.recovered }

// Restore records allocations known to be in use (container ID →
// address) that the allocator does not hold, and saves them: after Open
// set a corrupt file aside, the addresses of the containers still
// attached must not be handed out again. An address outside the subnet's
// allocatable range, or held by another container, is skipped and
// reported; a container that already holds an address keeps it. New
// allocations continue after the highest address restored. A failed save
// is reported but the restored allocations stay: they are in use either
// way, and the next save writes them.
func (a *Allocator) Restore(allocs map[string]netip.Addr) error {
	var errs []error
	a.mu.Lock()
	changed := false
	for _, id := range SortedIDs(allocs) {
		ip := allocs[id]
		switch other, taken := a.used[ip]; {
		case !a.allocatable(ip):
			errs = append(errs, fmt.Errorf("restore %s of container %s: not an address of %s", ip, id, a.subnet))
			continue
		case taken && other != id:
			errs = append(errs, fmt.Errorf("restore %s of container %s: held by %s", ip, id, other))
			continue
		}
		if _, has := a.byID[id]; has {
			continue
		}
		a.byID[id], a.used[ip] = ip, id
		if !a.cursor.IsValid() || a.cursor.Less(ip) {
			a.cursor = ip
		}
		changed = true
	}
	if !changed {
		a.mu.Unlock()
		return errors.Join(errs...)
	}
	a.gen++
	gen := a.gen
	a.mu.Unlock()
	return errors.Join(append(errs, a.persist(gen))...)
}

// hostRange returns the first and last allocatable addresses of subnet.
func hostRange(subnet netip.Prefix) (first, last netip.Addr, err error) {
	if !subnet.Addr().Is4() || subnet.Bits() > 30 {
		return first, last, fmt.Errorf("%w: subnet %s is not an IPv4 prefix of at most /30", overlayerr.ErrInvalidConfig, subnet)
	}
	base := subnet.Masked().Addr().As4()
	n := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	size := uint32(1) << (32 - subnet.Bits())
	return u32Addr(n + 2), u32Addr(n + size - 2), nil
}

func u32Addr(n uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}

// allocatable reports whether ip may be handed to a container.
func (a *Allocator) allocatable(ip netip.Addr) bool {
	return ip.Is4() && a.first.Compare(ip) <= 0 && ip.Compare(a.last) <= 0
}

// Allocate returns the address of id, allocating and persisting a new one if
// id has none. fresh is true when the address was allocated by this call.
// Concurrent allocations share file writes (persist); the caller of one
// that is not yet saved waits for it.
func (a *Allocator) Allocate(id string) (ip netip.Addr, fresh bool, err error) {
	a.mu.Lock()
	if ip, ok := a.byID[id]; ok {
		gen := a.gen
		a.mu.Unlock()
		// Allocated by a concurrent call that may still be saving it.
		if err := a.persist(gen); err != nil {
			return netip.Addr{}, false, err
		}
		return ip, false, nil
	}
	ip, err = a.pickLocked(id)
	if err != nil {
		a.mu.Unlock()
		return netip.Addr{}, false, err
	}
	prevCursor := a.cursor
	a.byID[id], a.used[ip], a.cursor = ip, id, ip
	a.gen++
	gen := a.gen
	a.mu.Unlock()
	if err := a.persist(gen); err != nil {
		a.mu.Lock()
		if a.byID[id] == ip {
			delete(a.byID, id)
			delete(a.used, ip)
			if a.cursor == ip {
				a.cursor = prevCursor
			}
			a.gen++
		}
		a.mu.Unlock()
		return netip.Addr{}, false, err
	}
	return ip, true, nil
}

// pickLocked returns the next free address after the cursor. a.mu must be
// held.
func (a *Allocator) pickLocked(id string) (netip.Addr, error) {
	start := a.first
	if a.cursor.IsValid() && a.cursor != a.last {
		start = a.cursor.Next()
	}
	ip := start
	for {
		if _, taken := a.used[ip]; !taken {
			break
		}
		if ip = ip.Next(); !a.allocatable(ip) {
			ip = a.first
		}
		if ip == start {
			return netip.Addr{}, fmt.Errorf("allocate address for %s in %s: %w", id, a.subnet, ErrSubnetFull)
		}
	}
	return ip, nil
}

// persist returns once the file holds generation gen or a later one: it
// writes everything allocated so far unless a write since gen did.
func (a *Allocator) persist(gen uint64) error {
	a.saveMu.Lock()
	defer a.saveMu.Unlock()
	if a.saved >= gen {
		return nil
	}
	a.mu.Lock()
	data, err := a.encodeLocked()
	cur := a.gen
	a.mu.Unlock()
	if err != nil {
		return err
	}
	if err := a.write(a.path, data); err != nil {
		return fmt.Errorf("save address allocations: %w", err)
	}
	a.saved = cur
	return nil
}

// Lookup returns the address allocated to id, if any.
func (a *Allocator) Lookup(id string) (netip.Addr, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ip, ok := a.byID[id]
	return ip, ok
}

// Release frees the address of id; releasing an unknown id is a no-op.
func (a *Allocator) Release(id string) error {
	a.mu.Lock()
	ip, ok := a.byID[id]
	if !ok {
		a.mu.Unlock()
		return nil
	}
	delete(a.byID, id)
	delete(a.used, ip)
	a.gen++
	gen := a.gen
	a.mu.Unlock()
	if err := a.persist(gen); err != nil {
		a.mu.Lock()
		if _, taken := a.used[ip]; !taken {
			if _, again := a.byID[id]; !again {
				a.byID[id], a.used[ip] = ip, id
				a.gen++
			}
		}
		a.mu.Unlock()
		return err
	}
	return nil
}

// All returns a copy of the allocations (container ID → address).
func (a *Allocator) All() map[string]netip.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]netip.Addr, len(a.byID))
	for id, ip := range a.byID {
		out[id] = ip
	}
	return out
}

// Remove deletes the allocation file and forgets every allocation.
func (a *Allocator) Remove() error {
	a.saveMu.Lock() // no write in flight recreates the file
	defer a.saveMu.Unlock()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.byID = map[string]netip.Addr{}
	a.used = map[netip.Addr]string{}
	a.cursor = netip.Addr{}
	a.gen++
	a.saved = a.gen
	if err := os.Remove(a.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", a.path, err)
	}
	return nil
}

// encodeLocked is the file's content for the allocations. a.mu must be held.
func (a *Allocator) encodeLocked() ([]byte, error) {
	st := ipamState{Subnet: a.subnet.String(), Allocations: make(map[string]string, len(a.byID))}
	if a.cursor.IsValid() {
		st.Last = a.cursor.String()
	}
	for id, ip := range a.byID {
		st.Allocations[id] = ip.String()
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", a.path, err)
	}
	return append(data, '\n'), nil
}

// writeFileAtomic replaces path with data so that a crash leaves either
// the old or the new content: temp file in the same dir, fsync, rename
// (what api/atomicfile does; the import rules keep this package to
// overlayerr). The fsync is one per group commit (persist), not one per
// attach, and attaches do not wait for each other under the overlay's
// lock; without it a power loss could leave the file torn (Open then sets
// it aside and starts empty).
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("create temp file in %s: %w", dir, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	ok = true
	return nil
}

// SortedIDs returns the keys of m in order (stable logs and teardown order).
func SortedIDs(m map[string]netip.Addr) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}
