package netloop

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netns"
)

func TestNFTCheckDue(t *testing.T) {
	for _, c := range []struct {
		name       string
		checked    bool
		live       bool
		gen, done  uint64
		sinceCheck time.Duration
		want       bool
	}{
		{"first pass", false, true, 1, 0, 0, true},
		{"nothing announced since the check", true, true, 3, 3, time.Second, false},
		{"a deletion announced", true, true, 4, 3, time.Second, true},
		{"watch down", true, false, 3, 3, time.Second, true},
		{"fallback due", true, true, 3, 3, nftFallback, true},
		{"just under the fallback", true, true, 3, 3, nftFallback - time.Millisecond, false},
	} {
		if got := nftCheckDue(c.checked, c.live, c.gen, c.done, c.sinceCheck); got != c.want {
			t.Errorf("%s: nftCheckDue = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestNFTDeletion(t *testing.T) {
	ev := func(ty nftables.MonitorEventType) *nftables.MonitorEvent { return &nftables.MonitorEvent{Type: ty} }
	for _, c := range []struct {
		name    string
		changes []*nftables.MonitorEvent
		want    bool
	}{
		{"none", nil, false},
		{"new rules and elements", []*nftables.MonitorEvent{ev(nftables.MonitorEventTypeNewRule), ev(nftables.MonitorEventTypeNewSetElem)}, false},
		{"elements deleted", []*nftables.MonitorEvent{ev(nftables.MonitorEventTypeDelSetElem), ev(nftables.MonitorEventTypeDelRule)}, false},
		{"a table deleted", []*nftables.MonitorEvent{ev(nftables.MonitorEventTypeNewRule), ev(nftables.MonitorEventTypeDelTable)}, true},
		{"a chain deleted", []*nftables.MonitorEvent{ev(nftables.MonitorEventTypeDelChain)}, true},
		{"a set deleted", []*nftables.MonitorEvent{ev(nftables.MonitorEventTypeDelSet)}, true},
	} {
		if got := nftDeletion(c.changes); got != c.want {
			t.Errorf("%s: nftDeletion = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestNFTWatchSeesFlush: in a network namespace of its own, the watch
// goes live, stays quiet while nothing is deleted (a new table is no
// reason to check), and wakes the loop when someone runs `nft flush
// ruleset`.
func TestNFTWatchSeesFlush(t *testing.T) {
	w, nft := liveWatchInNetns(t, "shoal-nftw")
	<-w.kick // the first pass after it went live checks
	g0 := w.gen.Load()
	nft("add", "table", "ip", "t1")
	nft("add", "chain", "ip", "t1", "c1")
	nft("add", "table", "ip", "marker")
	nft("delete", "table", "ip", "marker") // the kernel announces in order: once this is seen, the adds were too
	waitUntil(t, "the marker's deletion", func() bool { return w.gen.Load() > g0 })
	if g := w.gen.Load(); g != g0+1 {
		t.Fatalf("%d deletions counted for two adds and one delete, want 1", g-g0)
	}
	<-w.kick
	g1 := w.gen.Load()
	nft("flush", "ruleset")
	waitUntil(t, "the flush", func() bool { return w.gen.Load() > g1 })
	select {
	case <-w.kick:
	case <-time.After(10 * time.Second):
		t.Fatal("the flush did not wake the loop")
	}
}

// TestNFTWatchSurvivesABurst: one transaction of thousands of rules
// (what the load balancer's sync of a large cluster writes) is announced
// to the watch all at once. With the socket's default receive buffer the
// kernel dropped the announcements and the watch ended on ENOBUFS
// ("no buffer space available", seen by the anet audit): for nftRetry the
// loop was blind, and a deletion announced then was missed. The watch's
// socket takes the burst, stays live and sees the deletion after it.
func TestNFTWatchSurvivesABurst(t *testing.T) {
	w, nft := liveWatchInNetns(t, "shoal-nftb")

	var b strings.Builder
	b.WriteString("table ip burst {\n chain c {\n")
	for i := 0; i < 5000; i++ {
		fmt.Fprintf(&b, "  ip saddr 10.%d.%d.1 tcp dport %d counter accept\n", i/250, i%250, 1000+i)
	}
	b.WriteString(" }\n}\n")
	file := filepath.Join(t.TempDir(), "burst.nft")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	g0 := w.gen.Load()
	nft("-f", file)
	nft("add", "table", "ip", "marker")
	nft("delete", "table", "ip", "marker")
	waitUntil(t, "the marker's deletion after the burst", func() bool { return w.gen.Load() > g0 })
	if n := w.ended.Load(); n != 0 {
		t.Fatalf("the watch ended %d times during the burst", n)
	}
}

// liveWatchInNetns runs a watch in a new network namespace (named prefix
// and the test's PID, deleted at the end of the test) until the test ends,
// waits until it is live, and returns it with a runner of nft there.
func liveWatchInNetns(t *testing.T, prefix string) (*nftWatch, func(args ...string)) {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		t.Fatalf("nft not installed: %v", err)
	}
	name := fmt.Sprintf("%s-%d", prefix, os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	w := newNFTWatch()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // the thread dies with the goroutine: never back in the test's namespace
		if err := netns.Set(ns); err != nil {
			t.Errorf("enter netns: %v", err)
			return
		}
		w.run(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	t.Cleanup(func() { cancel(); <-done })
	waitUntil(t, "the watch to go live", func() bool { return w.live.Load() })
	nft := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", append([]string{"netns", "exec", name, "nft"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("nft %v: %v: %s", args, err, out)
		}
	}
	return w, nft
}

// waitUntil polls cond every 10 ms for up to 10 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond) // polling the condition
	}
}
