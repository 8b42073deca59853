package keyring

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/wire"
)

// TestIssueOnePerNode: a node's second renewal does not start until its
// first one is recorded, so it revokes the certificate the first issued,
// and the node is left with one valid renewed certificate, the recorded
// pending one (which `node rm` revokes), beside its unconfirmed current
// one. Two renewals that both read the record before either was applied
// both replaced only the serial they read, leaving one valid and
// unrecorded.
func TestIssueOnePerNode(t *testing.T) {
	tc := newTestCluster(t)
	k := tc.keeper("leader", tc.dir)
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.NewCSR(key, "w")
	if err != nil {
		t.Fatal(err)
	}
	var applies atomic.Int32
	first, second, release := make(chan struct{}), make(chan struct{}), make(chan struct{})
	tc.raft.OnApply = func(cmd command.Command) {
		if !holds[*command.StageNodeCert](cmd) {
			return
		}
		switch applies.Add(1) {
		case 1:
			close(first)
			<-release // the first renewal's record is not applied yet
		case 2:
			close(second)
		}
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	resps := make([]*wire.RenewResponse, 2)
	errs := make([]error, 2)
	issue := func(i int) {
		defer wg.Done()
		resps[i], errs[i] = k.Issue(ctx, "w", csr, "")
	}
	wg.Add(2)
	go issue(0)
	<-first
	go issue(1)
	// Let the first go once the second renewal is under way: waiting for
	// the node's lock (one at a time) or at its own Apply (both at once).
	key0 := nodeKey(tc.id, "w")
	deadline := time.Now().Add(10 * time.Second)
	for waiting := false; !waiting; {
		select {
		case <-second:
			waiting = true
		default:
			waiting = issuing.waiting(key0) >= 2
		}
		if time.Now().After(deadline) {
			t.Fatal("the second renewal neither waited nor reached its record")
		}
		time.Sleep(time.Millisecond) // polling the lock table; no event to wait on
	}
	close(release)
	wg.Wait()
	var serials []string
	for i := range resps {
		if errs[i] != nil {
			t.Fatalf("renewal %d: %v", i, errs[i])
		}
		s, err := pki.SerialPEM(resps[i].CertPEM)
		if err != nil {
			t.Fatal(err)
		}
		serials = append(serials, s)
	}
	n, err := tc.store.Node("w")
	if err != nil {
		t.Fatal(err)
	}
	if tc.store.IsRevoked("w0") || n.CertSerial != "w0" {
		t.Errorf("the certificate before the renewals (record: %s) is revoked or replaced before any was confirmed", n.CertSerial)
	}
	valid := 0
	for _, s := range serials {
		if !tc.store.IsRevoked(s) {
			valid++
			if s != n.PendingCertSerial {
				t.Errorf("serial %s is valid but not recorded (pending: %s): `node rm` would leave it valid", s, n.PendingCertSerial)
			}
		}
	}
	if valid != 1 {
		t.Errorf("%d of the renewed certificates %v are valid, want 1 (pending %s)", valid, serials, n.PendingCertSerial)
	}
	if got := issuing.waiting(key0); got != 0 {
		t.Errorf("the node's lock is still held or waited for by %d", got)
	}
}

// holds reports whether cmd is a T or a batch with one.
func holds[T command.Command](cmd command.Command) bool {
	if b, ok := cmd.(*command.Batch); ok {
		return slices.ContainsFunc(b.Commands, holds[T])
	}
	_, ok := cmd.(T)
	return ok
}

// TestKeyedLocks: one holder per key, other keys free, a waiter gives up
// when its context ends, and nothing stays behind.
func TestKeyedLocks(t *testing.T) {
	var l keyedLocks
	ctx := context.Background()
	unlockA, err := l.lock(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	unlockB, err := l.lock(ctx, "b")
	if err != nil {
		t.Fatalf("another key held up: %v", err)
	}
	unlockB()
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := l.lock(cctx, "a"); err == nil {
		t.Fatal("took a held lock")
	}
	got := make(chan func())
	go func() {
		u, err := l.lock(ctx, "a")
		if err != nil {
			t.Error(err)
		}
		got <- u
	}()
	deadline := time.Now().Add(10 * time.Second)
	for l.waiting("a") < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the waiter never queued")
		}
		time.Sleep(time.Millisecond) // polling the lock table; no event to wait on
	}
	select {
	case <-got:
		t.Fatal("took a held lock")
	default:
	}
	unlockA()
	(<-got)()
	if len(l.locks) != 0 {
		t.Fatalf("locks left behind: %v", l.locks)
	}
}

// TestAnswerRenewBoundAcrossKeepers: the agent builds a Keeper per call
// (node/keyring.go), and the leader still refuses a node's renewals
// beyond its allowance within the hour; another node, or the same node ID in another
// cluster, is not held up. A count kept in the Keeper started afresh on
// every call and never refused anything.
func TestAnswerRenewBoundAcrossKeepers(t *testing.T) {
	tc := newTestCluster(t)
	other := newNamedTestCluster(t, tc.id+"/other")
	csrFor := func(id string) []byte {
		key, err := pki.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		csr, err := pki.NewCSR(key, id)
		if err != nil {
			t.Fatal(err)
		}
		return csr
	}
	ctx := context.Background()
	renew := func(tc *testCluster, id string) error {
		_, err := tc.keeper("leader", tc.dir).AnswerRenew(ctx, id, wire.RenewRequest{CSR: csrFor(id)})
		return err
	}
	most := renewAllowance(tc.keeper("leader", tc.dir).CertLifetime)
	for i := range most {
		if err := renew(tc, "w"); err != nil {
			t.Fatalf("renewal %d refused: %v", i+1, err)
		}
	}
	if err := renew(tc, "w"); err == nil {
		t.Fatalf("renewal %d within %s allowed", most+1, renewWindow)
	}
	if err := renew(tc, "m"); err != nil {
		t.Fatalf("another node held up: %v", err)
	}
	if err := renew(other, "w"); err != nil {
		t.Fatalf("the same node ID in another cluster held up: %v", err)
	}
	// A renewal the leader failed to sign (not a member) gives its slot back.
	for range most + 1 {
		if err := renew(tc, "stranger"); err == nil {
			t.Fatal("a node without a record was issued a certificate")
		}
	}
	if n := len(renewals.recent[nodeKey(tc.id, "stranger")]); n != 0 {
		t.Errorf("failed renewals kept %d slots", n)
	}
}
