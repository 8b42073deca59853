package netloop

import (
	"bytes"
	"context"
	"encoding/binary"
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

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
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
	// msg is one netlink message of type NFNL_SUBSYS_NFTABLES<<8|ty with
	// payload bytes after its header (padded to 4 bytes, as the kernel does).
	msg := func(ty uint16, payload int) []byte {
		l := unix.NLMSG_HDRLEN + payload
		b := make([]byte, (l+3)&^3)
		binary.NativeEndian.PutUint32(b[0:4], uint32(l))
		binary.NativeEndian.PutUint16(b[4:6], unix.NFNL_SUBSYS_NFTABLES<<8|ty)
		return b
	}
	cat := func(ms ...[]byte) []byte { return bytes.Join(ms, nil) }
	truncated := msg(unix.NFT_MSG_NEWRULE, 40)[:30]
	for _, c := range []struct {
		name  string
		dgram []byte
		want  bool
	}{
		{"empty", nil, false},
		{"new rules and elements", cat(msg(unix.NFT_MSG_NEWRULE, 120), msg(unix.NFT_MSG_NEWSETELEM, 33)), false},
		{"elements and rules deleted", cat(msg(unix.NFT_MSG_DELSETELEM, 20), msg(unix.NFT_MSG_DELRULE, 7)), false},
		{"a new generation", msg(unix.NFT_MSG_NEWGEN, 24), false},
		{"a table deleted after rules (the kernel packs them)", cat(msg(unix.NFT_MSG_NEWRULE, 201), msg(unix.NFT_MSG_NEWRULE, 3), msg(unix.NFT_MSG_DELTABLE, 18)), true},
		{"a chain deleted", msg(unix.NFT_MSG_DELCHAIN, 30), true},
		{"a set deleted", cat(msg(unix.NFT_MSG_NEWSET, 10), msg(unix.NFT_MSG_DELSET, 10)), true},
		{"another subsystem's type 2", func() []byte {
			b := msg(unix.NFT_MSG_DELTABLE, 8)
			binary.NativeEndian.PutUint16(b[4:6], unix.NFNL_SUBSYS_CTNETLINK<<8|unix.NFT_MSG_DELTABLE)
			return b
		}(), false},
		{"a length past the datagram", truncated, true},
		{"a header cut short", cat(msg(unix.NFT_MSG_NEWRULE, 4), make([]byte, 9)), true},
		{"a length below the header", func() []byte {
			b := msg(unix.NFT_MSG_NEWRULE, 8)
			binary.NativeEndian.PutUint32(b[0:4], 4)
			return b
		}(), true},
	} {
		if got := nftDeletion(c.dgram); got != c.want {
			t.Errorf("%s: nftDeletion = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestNFTWatchSeesFlush: in a network namespace of its own, the watch
// goes live, stays quiet while nothing is deleted (a new table is no
// reason to check), and wakes the loop when someone runs `nft flush
// ruleset`.
func TestNFTWatchSeesFlush(t *testing.T) {
	w, nft := liveWatchInNetns(t, "shoal-nftw", nftWatchBuffer)
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
	w, nft := liveWatchInNetns(t, "shoal-nftb", nftWatchBuffer)
	file := burstFile(t)
	g0 := w.gen.Load()
	nft("-f", file)
	nft("add", "table", "ip", "marker")
	nft("delete", "table", "ip", "marker")
	waitUntil(t, "the marker's deletion after the burst", func() bool { return w.gen.Load() > g0 })
	if g := w.gen.Load(); g != g0+1 {
		t.Fatalf("%d deletions counted for a burst of new rules and one deleted table, want 1", g-g0)
	}
	if n := w.ended.Load(); n != 0 {
		t.Fatalf("the watch ended %d times during the burst", n)
	}
}

// TestNFTWatchCountsAnOverflow: announcements the socket had no room for
// are lost, and a deletion may have been among them. The watch counts
// the overflow as a deletion (the loop checks the tables) and stays live:
// a deletion after it is seen too.
func TestNFTWatchCountsAnOverflow(t *testing.T) {
	w, nft := liveWatchInNetns(t, "shoal-nfto", 4096)
	file := burstFile(t)
	g0 := w.gen.Load()
	nft("-f", file) // new rules only: no deletion announced
	waitUntil(t, "the overflow counted", func() bool { return w.gen.Load() > g0 })
	g1 := w.gen.Load()
	nft("add", "table", "ip", "marker")
	nft("delete", "table", "ip", "marker")
	waitUntil(t, "the marker's deletion after the overflow", func() bool { return w.gen.Load() > g1 })
	if n := w.ended.Load(); n != 0 {
		t.Fatalf("the watch ended %d times on an overflow", n)
	}
}

// burstFile writes an nft script of one table with 5,000 rules: one
// transaction, announced all at once.
func burstFile(t *testing.T) string {
	t.Helper()
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
	return file
}

// liveWatchInNetns runs a watch with a receive buffer of rcvBuf bytes in a
// new network namespace (named prefix and the test's PID, deleted at the
// end of the test) until the test ends, waits until it is live, and
// returns it with a runner of nft there.
func liveWatchInNetns(t *testing.T, prefix string, rcvBuf int) (*nftWatch, func(args ...string)) {
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
	w.rcvBuf = rcvBuf
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
