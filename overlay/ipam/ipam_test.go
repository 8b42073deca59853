package overlay

import (
	"errors"
	"fmt"
	"net/netip"
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
	a, err := openIPAM(dir, subnet)
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
	b, err := openIPAM(dir, subnet)
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
	a, err := openIPAM(t.TempDir(), netip.MustParsePrefix("10.42.6.0/24"))
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
