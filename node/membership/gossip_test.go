package membership

import (
	"fmt"
	"testing"
	"time"
)

// The package's own end-to-end check: three real memberlist instances on
// loopback (random ports, encrypted with one key) join, spread their
// metadata and its changes, hear a clean stop announced, and declare a
// member that vanished dead. Everything is polled with a generous deadline
// (a loaded 2-core host), nothing asserts a timing.

const gossipDeadline = 30 * time.Second

// startGossip starts a member named name on 127.0.0.1 (port chosen by the
// kernel) and stops it when the test ends.
func startGossip(t *testing.T, name string, cp int, keys [][]byte) *Membership {
	t.Helper()
	m, err := New(Config{Name: name, BindAddr: "127.0.0.1", AdvertiseAddr: "127.0.0.1", Keys: keys},
		Meta{NodeID: name, ClusterPort: cp, Version: "v-" + name, Level: 2})
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(m.Shutdown)
	return m
}

// gossipAddr is the address peers join m at.
func gossipAddr(m *Membership) string { return m.ml.LocalNode().Address() }

// pollUntil checks cond after every signal on wake and at least every
// 50 ms until it holds, failing the test with what() at the deadline.
func pollUntil(t *testing.T, wake <-chan struct{}, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.NewTimer(gossipDeadline)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-wake:
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("after %s: %s", gossipDeadline, what())
		}
	}
}

func TestGossipJoinMetadataAndDeath(t *testing.T) {
	keys := [][]byte{key('k')}
	names := []string{"n1", "n2", "n3"}
	ms := make([]*Membership, len(names))
	for i, name := range names {
		ms[i] = startGossip(t, name, 2377+i, keys)
	}
	n1, n2, n3 := ms[0], ms[1], ms[2]
	wake1, stop1 := n1.Subscribe()
	defer stop1()
	lbWake1, stopLB1 := n1.LBSubscribe()
	defer stopLB1()

	// Join: n2 and n3 know only n1; every node ends up with all three
	// alive, each with the metadata its member started with, the
	// fingerprint of the shared keyring included.
	for _, m := range ms[1:] {
		if n, err := m.Join([]string{gossipAddr(n1)}); err != nil || n != 1 {
			t.Fatalf("join n1: %d contacted, %v", n, err)
		}
	}
	fp := Fingerprint(keys)
	for i, m := range ms {
		pollUntil(t, nil, func() bool {
			alive := m.AliveSet()
			if len(alive) != len(names) {
				return false
			}
			for j, name := range names {
				want := Meta{NodeID: name, ClusterPort: 2377 + j, Version: "v-" + name, Level: 2, GK: fp}
				if alive[name] != want {
					return false
				}
			}
			return true
		}, func() string { return fmt.Sprintf("%s sees %+v", names[i], m.AliveSet()) })
	}
	if got := len(n1.PeerAddrs()); got != len(names) {
		t.Fatalf("n1 has %d gossip addresses of live members, want %d", got, len(names))
	}
	for _, name := range names {
		if !n1.EverSeen(name) {
			t.Fatalf("n1 never saw %s", name)
		}
	}
	// The join woke n1's subscribers.
	select {
	case <-wake1:
	default:
		t.Fatal("joins did not wake n1's subscriber")
	}

	// Metadata propagation: n2's load balancer index reaches the others
	// through gossip and wakes n1's drains.
	n2.SetLBIndex(7, true)
	for i, m := range []*Membership{n1, n3} {
		var wake <-chan struct{}
		if i == 0 {
			wake = lbWake1
		}
		pollUntil(t, wake, func() bool { return m.LBIndexes("self")["n2"] == 7 },
			func() string { return fmt.Sprintf("lb indexes %v", m.LBIndexes("self")) })
	}
	// An index its load balancer took in unchanged stays local until a
	// drain asks: n1's demand brings it.
	n2.SetLBIndex(9, false)
	n1.SetDrainWait(9)
	pollUntil(t, lbWake1, func() bool { return n1.LBIndexes("self")["n2"] == 9 },
		func() string { return fmt.Sprintf("n1's lb indexes %v", n1.LBIndexes("self")) })
	n1.SetDrainWait(0)

	// A clean stop is announced over TCP before leaving.
	n2.AnnounceRestart("n2", 5*time.Second)
	pollUntil(t, nil, func() bool { return n1.Restarting("n2", time.Hour) },
		func() string { return "n1 did not hear n2's restart announcement" })

	// Death: n3 vanishes without leaving. The others drop it from their
	// alive sets (probe, indirect probes, suspicion) and wake their
	// subscribers; its release outlives it.
	drain(wake1)
	n3.Shutdown()
	for _, m := range []*Membership{n1, n2} {
		var wake <-chan struct{}
		if m == n1 {
			wake = wake1
		}
		pollUntil(t, wake, func() bool { _, ok := m.AliveSet()["n3"]; return !ok },
			func() string { return fmt.Sprintf("n3 still alive: %v", m.AliveSet()) })
	}
	if v := n1.VersionOf("n3"); v != "v-n3" {
		t.Fatalf("release of the dead member %q", v)
	}
	if n1.Restarting("n3", time.Hour) {
		t.Fatal("a member that vanished counts as restarting")
	}
	if _, ok := n1.AliveSet()["n2"]; !ok {
		t.Fatal("n2 died with n3")
	}
}

// drain empties a coalescing signal channel.
func drain(ch <-chan struct{}) {
	select {
	case <-ch:
	default:
	}
}

// TestStartsOnTheBeat: New asks UntilBeat once, right before it creates
// memberlist (whose probe and gossip tickers take their phase from that
// moment), and creates it no sooner than the beat.
func TestStartsOnTheBeat(t *testing.T) {
	const wait = 120 * time.Millisecond
	var asked []time.Time
	start := time.Now()
	m, err := New(Config{Name: "beat", BindAddr: "127.0.0.1", AdvertiseAddr: "127.0.0.1",
		UntilBeat: func(now time.Time) time.Duration { asked = append(asked, now); return wait }},
		Meta{NodeID: "beat", ClusterPort: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown()
	if len(asked) != 1 {
		t.Fatalf("UntilBeat asked %d times, want once", len(asked))
	}
	if asked[0].Before(start) {
		t.Fatalf("UntilBeat asked with %v, before New was called", asked[0])
	}
	if took := time.Since(start); took < wait {
		t.Errorf("New returned after %v, before the beat %v away", took, wait)
	}
}
