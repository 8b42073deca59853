package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestIPAMGroupCommit: allocations made while the file is being written do
// not queue behind that write one by one: they are taken at once and saved
// together by the next write, and each Allocate returns only once its
// address is on disk.
func TestIPAMGroupCommit(t *testing.T) {
	dir := t.TempDir()
	subnet := netip.MustParsePrefix("10.42.5.0/24")
	a, err := Open(dir, subnet)
	if err != nil {
		t.Fatal(err)
	}
	var writes atomic.Int32
	release := make(chan struct{})
	a.write = func(path string, data []byte) error {
		if writes.Add(1) == 1 {
			<-release // the first write is slow
		}
		return writeFileAtomic(path, data)
	}
	errs := make(chan error, 6)
	go func() { _, _, err := a.Allocate("c0"); errs <- err }()
	waitFor(t, func() bool { return writes.Load() == 1 }, "the first write under way")
	for i := 1; i <= 5; i++ {
		go func() { _, _, err := a.Allocate(fmt.Sprintf("c%d", i)); errs <- err }()
	}
	// All blocks while a write holds the allocations' lock: count that
	// as "not yet" (the write is only released further down).
	waitFor(t, func() bool {
		n := make(chan int, 1)
		go func() { n <- len(a.All()) }()
		select {
		case got := <-n:
			return got == 6
		case <-time.After(50 * time.Millisecond):
			return false
		}
	}, "allocations taken while a write is under way")
	select {
	case err := <-errs:
		t.Fatalf("an Allocate returned (%v) before its address was saved", err)
	default:
	}
	close(release)
	for range 6 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := writes.Load(); n > 2 {
		t.Errorf("%d writes for 6 allocations made during one write, want at most 2", n)
	}
	b, err := Open(dir, subnet)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(b.All()); got != 6 {
		t.Fatalf("the file holds %d allocations, want 6", got)
	}
}

// TestIPAMFailedSaveRollsBack: an allocation whose save fails is undone
// (and a release whose save fails is too), so memory never claims what the
// file does not hold for long.
func TestIPAMFailedSaveRollsBack(t *testing.T) {
	a, err := Open(t.TempDir(), netip.MustParsePrefix("10.42.6.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Allocate("keep"); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("disk full")
	a.write = func(string, []byte) error { return boom }
	if _, _, err := a.Allocate("c1"); !errors.Is(err, boom) {
		t.Fatalf("Allocate with a failing write = %v, want %v", err, boom)
	}
	if _, ok := a.Lookup("c1"); ok {
		t.Fatal("a failed allocation kept its address")
	}
	if err := a.Release("keep"); !errors.Is(err, boom) {
		t.Fatalf("Release with a failing write = %v, want %v", err, boom)
	}
	if _, ok := a.Lookup("keep"); !ok {
		t.Fatal("a failed release dropped the address")
	}
	a.write = writeFileAtomic
	ip, fresh, err := a.Allocate("c1")
	if err != nil || !fresh || ip.String() != "10.42.6.3" {
		t.Fatalf("Allocate after the disk recovered = %v %v %v, want 10.42.6.3 fresh", ip, fresh, err)
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestIPAMAllocateReleasePersist(t *testing.T) {
	dir := t.TempDir()
	subnet := netip.MustParsePrefix("10.42.3.0/24")
	a, err := Open(dir, subnet)
	if err != nil {
		t.Fatal(err)
	}
	ip1, fresh, err := a.Allocate("c1")
	if err != nil || !fresh || ip1.String() != "10.42.3.2" {
		t.Fatalf("Allocate c1 = %v %v %v, want 10.42.3.2 fresh", ip1, fresh, err)
	}
	again, fresh, err := a.Allocate("c1")
	if err != nil || fresh || again != ip1 {
		t.Fatalf("second Allocate c1 = %v %v %v, want %v not fresh", again, fresh, err, ip1)
	}
	ip2, _, err := a.Allocate("c2")
	if err != nil || ip2.String() != "10.42.3.3" {
		t.Fatalf("Allocate c2 = %v %v", ip2, err)
	}
	if err := a.Release("c1"); err != nil {
		t.Fatal(err)
	}
	if err := a.Release("unknown"); err != nil {
		t.Fatalf("Release unknown: %v", err)
	}
	// Next fit: the released .2 is not reused right away.
	ip3, _, err := a.Allocate("c3")
	if err != nil || ip3.String() != "10.42.3.4" {
		t.Fatalf("Allocate c3 = %v %v, want 10.42.3.4", ip3, err)
	}

	// Reopen: allocations and the cursor survive.
	b, err := Open(dir, subnet)
	if err != nil {
		t.Fatal(err)
	}
	if ip, ok := b.Lookup("c2"); !ok || ip != ip2 {
		t.Fatalf("after reopen c2 = %v %v, want %v", ip, ok, ip2)
	}
	if _, ok := b.Lookup("c1"); ok {
		t.Fatal("released c1 came back after reopen")
	}
	ip4, _, err := b.Allocate("c4")
	if err != nil || ip4.String() != "10.42.3.5" {
		t.Fatalf("Allocate c4 after reopen = %v %v, want 10.42.3.5", ip4, err)
	}

	// A different subnet discards the old allocations.
	c, err := Open(dir, netip.MustParsePrefix("10.42.4.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(c.All()); n != 0 {
		t.Fatalf("allocations for another subnet kept: %d", n)
	}

	if err := b.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, File)); !os.IsNotExist(err) {
		t.Fatalf("state file still there after Remove: %v", err)
	}
}

func TestIPAMExhaustionAndWrap(t *testing.T) {
	a, err := Open(t.TempDir(), netip.MustParsePrefix("10.42.3.0/29")) // .2 - .6
	if err != nil {
		t.Fatal(err)
	}
	seen := map[netip.Addr]bool{}
	for i := range 5 {
		ip, _, err := a.Allocate(fmt.Sprint("c", i))
		if err != nil {
			t.Fatalf("Allocate %d: %v", i, err)
		}
		if seen[ip] || !a.allocatable(ip) {
			t.Fatalf("Allocate %d = %v: duplicate or out of range", i, ip)
		}
		seen[ip] = true
	}
	if _, _, err := a.Allocate("c5"); !errors.Is(err, ErrSubnetFull) {
		t.Fatalf("Allocate on full subnet = %v, want ErrSubnetFull", err)
	}
	if err := a.Release("c2"); err != nil {
		t.Fatal(err)
	}
	ip, _, err := a.Allocate("c6") // wraps around to the only free one
	if err != nil || ip.String() != "10.42.3.4" {
		t.Fatalf("Allocate after wrap = %v %v, want 10.42.3.4", ip, err)
	}
}

// TestIPAMSetsCorruptStateAside: a file Open cannot use (torn by a power
// loss between rename and write-back: empty or cut short; or edited) is
// moved to CorruptFile, kept as it was, and the allocator starts empty and
// says so (Recovered); the next allocation writes a fresh file. Before,
// Open refused it, and the node's overlay never came up again.
func TestIPAMSetsCorruptStateAside(t *testing.T) {
	subnet := netip.MustParsePrefix("10.42.3.0/24")
	for name, body := range map[string]string{
		"empty":        "",
		"cut short":    `{"subnet":"10.42.3.0/24","allocations":{"c1":"10.4`,
		"not json":     "{",
		"out of range": `{"subnet":"10.42.3.0/24","allocations":{"c1":"10.42.3.1"}}`,
		"duplicate":    `{"subnet":"10.42.3.0/24","allocations":{"c1":"10.42.3.9","c2":"10.42.3.9"}}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, File), []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			a, err := Open(dir, subnet)
			if err != nil {
				t.Fatalf("Open refused the unusable file: %v", err)
			}
			if err := a.Recovered(); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Recovered() = %v, want ErrCorrupt", err)
			}
			if got := a.All(); len(got) != 0 {
				t.Fatalf("started with %v, want empty", got)
			}
			if kept, err := os.ReadFile(filepath.Join(dir, CorruptFile)); err != nil || string(kept) != body {
				t.Fatalf("%s holds %q (%v), want the file as it was", CorruptFile, kept, err)
			}
			if _, err := os.Stat(filepath.Join(dir, File)); !os.IsNotExist(err) {
				t.Fatalf("the unusable file is still in place: %v", err)
			}
			if ip, fresh, err := a.Allocate("c9"); err != nil || !fresh || ip.String() != "10.42.3.2" {
				t.Fatalf("Allocate = %v %v %v", ip, fresh, err)
			}
			b, err := Open(dir, subnet)
			if err != nil || b.Recovered() != nil {
				t.Fatalf("reopen after the fresh save: %v, recovered %v", err, b.Recovered())
			}
			if ip, ok := b.Lookup("c9"); !ok || ip.String() != "10.42.3.2" {
				t.Fatalf("reopened: c9 = %v %v", ip, ok)
			}
		})
	}
}

// TestIPAMRestore: allocations known to be in use are recorded and saved;
// addresses outside the range or held by another container are reported
// and skipped; new allocations never hand out a restored address.
func TestIPAMRestore(t *testing.T) {
	dir := t.TempDir()
	subnet := netip.MustParsePrefix("10.42.4.0/24")
	a, err := Open(dir, subnet)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Allocate("held"); err != nil { // 10.42.4.2
		t.Fatal(err)
	}
	err = a.Restore(map[string]netip.Addr{
		"c1":    netip.MustParseAddr("10.42.4.3"),
		"c2":    netip.MustParseAddr("10.42.4.7"),
		"thief": netip.MustParseAddr("10.42.4.2"), // held's
		"out":   netip.MustParseAddr("10.42.9.5"),
		"held":  netip.MustParseAddr("10.42.4.2"), // its own: fine
	})
	if err == nil || !strings.Contains(err.Error(), "thief") || !strings.Contains(err.Error(), "out") {
		t.Fatalf("Restore = %v, want the thief and the out-of-range address reported", err)
	}
	want := map[string]string{"held": "10.42.4.2", "c1": "10.42.4.3", "c2": "10.42.4.7"}
	check := func(a *Allocator) {
		t.Helper()
		got := map[string]string{}
		for id, ip := range a.All() {
			got[id] = ip.String()
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("allocations %v, want %v", got, want)
		}
	}
	check(a)
	b, err := Open(dir, subnet)
	if err != nil {
		t.Fatal(err)
	}
	check(b) // saved
	seen := map[string]bool{}
	for i := range 250 {
		ip, _, err := b.Allocate(fmt.Sprint("n", i))
		if errors.Is(err, ErrSubnetFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if ip.String() == "10.42.4.3" || ip.String() == "10.42.4.7" || seen[ip.String()] {
			t.Fatalf("Allocate handed out %s again", ip)
		}
		seen[ip.String()] = true
		if i == 0 && ip.String() != "10.42.4.8" {
			t.Fatalf("first allocation after the restore = %s, want 10.42.4.8 (after the highest restored)", ip)
		}
	}
}
