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

// ErrSubnetFull: every address of the node's subnet is allocated.
var ErrSubnetFull = errors.New("no free address in the node subnet")

// File is the allocation file inside the overlay's Config.StateDir.
const File = "ipam.json"

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
}

// Open loads the allocations of subnet from dir (creating dir if
// needed). Allocations recorded for another subnet are dropped.
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
	var st ipamState
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("decode %s: %w", a.path, err)
	}
	if st.Subnet != subnet.String() {
		// The node got another subnet: the old addresses mean nothing here.
		return a, nil
	}
	for id, s := range st.Allocations {
		ip, err := netip.ParseAddr(s)
		if err != nil || !a.allocatable(ip) {
			return nil, fmt.Errorf("decode %s: container %s has bad address %q", a.path, id, s)
		}
		if other, dup := a.used[ip]; dup {
			return nil, fmt.Errorf("decode %s: address %s given to both %s and %s", a.path, ip, other, id)
		}
		a.byID[id] = ip
		a.used[ip] = id
	}
	if ip, err := netip.ParseAddr(st.Last); err == nil && a.allocatable(ip) {
		a.cursor = ip
	}
	return a, nil
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

// writeFileAtomic replaces path with data so that a crash of the agent
// leaves either the old or the new content: temp file in the same dir, then
// rename. It does not fsync: allocations only matter while their containers
// run, and no container survives the power loss that could undo a rename
// (a torn file then reads as corrupt and starts empty). Two fsyncs per
// attach, under the overlay's lock, would serialise container starts.
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
