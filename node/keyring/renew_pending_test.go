package keyring

import (
	"context"
	"errors"
	"net"
	"reflect"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/pki"
)

// committedButFailed is a leader that loses leadership while its entry is
// replicated: Apply reports an error (raft's ErrLeadershipLost), and the
// entry commits anyway under the next leader.
type committedButFailed struct{ *FakeRaft }

func (r committedButFailed) Apply(ctx context.Context, cmd command.Command) (any, error) {
	if _, err := r.FakeRaft.Apply(ctx, cmd); err != nil {
		return nil, err
	}
	return nil, errors.New("leadership lost while committing the command")
}

// TestLostRenewalKeepsCurrentCert (fault audit s12): a renewal whose
// record commits but whose answer never reaches the node (leader change
// during the commit, the answer lost or past the node's 10 s timeout, a
// full disk when it writes the certificate, kill -9 in between) leaves the
// node's certificate valid — before, it was revoked in the same entry and
// the node, holding only it, was out of the cluster for good. Asked again
// with that certificate, the leader issues another and revokes only the
// unconfirmed one: at most one pending per node.
func TestLostRenewalKeepsCurrentCert(t *testing.T) {
	tc := newTestCluster(t)
	k := tc.keeper("leader", tc.dir)
	k.Raft = committedButFailed{tc.raft}
	csr := nodeCSR(t, "w")
	resp, err := k.Issue(context.Background(), "w", csr, "w0")
	if err == nil {
		t.Fatalf("Issue handed out %d bytes of certificate", len(resp.CertPEM))
	}
	n, _ := tc.store.Node("w")
	if tc.store.IsRevoked("w0") || n.CertSerial != "w0" {
		t.Fatalf("the renewal failed (%v) and handed out nothing, but w's only certificate w0 is revoked or replaced (record %s): w is locked out", err, n.CertSerial)
	}
	lost := n.PendingCertSerial
	if lost == "" {
		t.Fatal("the committed renewal left no pending serial")
	}

	k.Raft = tc.raft
	again, _ := renewSerial(t, k, "w", csr, "w0")
	n, _ = tc.store.Node("w")
	if !tc.store.IsRevoked(lost) || tc.store.IsRevoked("w0") || n.PendingCertSerial != again || n.CertSerial != "w0" {
		t.Fatalf("renewal asked again: lost %s revoked %v, w0 revoked %v, record %s pending %s (want %s)",
			lost, tc.store.IsRevoked(lost), tc.store.IsRevoked("w0"), n.CertSerial, n.PendingCertSerial, again)
	}
}

// renewSerial is Issue for node id presenting serial presented, without
// a confirmation; it returns the new serial and certificate.
func renewSerial(t *testing.T, k *Keeper, id string, csr []byte, presented string) (string, []byte) {
	t.Helper()
	resp, err := k.Issue(context.Background(), id, csr, presented)
	if err != nil {
		t.Fatalf("renew %s with %s: %v", id, presented, err)
	}
	serial, err := pki.SerialPEM(resp.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	return serial, resp.CertPEM
}

// TestConfirmedRenewalRevokesOld: once the node confirms the certificate
// it installed, the one it replaced is revoked, and the node cannot renew
// with it any more; a renewal with the pending certificate confirms it in
// the same entry; a confirmation of anything but the pending serial is
// refused and changes nothing.
func TestConfirmedRenewalRevokesOld(t *testing.T) {
	tc := newTestCluster(t)
	k := tc.keeper("leader", tc.dir)
	ctx := context.Background()
	csr := nodeCSR(t, "w")
	s1, _ := renewSerial(t, k, "w", csr, "w0")
	if err := k.ConfirmCert(ctx, "w", "w0"); err == nil {
		t.Fatal("confirming the current serial over a pending one was accepted")
	}
	if err := k.ConfirmCert(ctx, "w", s1); err != nil {
		t.Fatal(err)
	}
	n, _ := tc.store.Node("w")
	if !tc.store.IsRevoked("w0") || n.CertSerial != s1 || n.PendingCertSerial != "" {
		t.Fatalf("after the confirmation: w0 revoked %v, record %s pending %q", tc.store.IsRevoked("w0"), n.CertSerial, n.PendingCertSerial)
	}
	if _, err := k.Issue(ctx, "w", csr, "w0"); err == nil {
		t.Fatal("a renewal with the replaced certificate was accepted after the confirmation")
	}
	if err := k.ConfirmCert(ctx, "w", s1); err != nil {
		t.Fatalf("a repeated confirmation: %v", err)
	}

	// Renewing with the pending certificate confirms it.
	s2, _ := renewSerial(t, k, "w", csr, s1)
	s3, _ := renewSerial(t, k, "w", csr, s2)
	n, _ = tc.store.Node("w")
	if !tc.store.IsRevoked(s1) || tc.store.IsRevoked(s2) || n.CertSerial != s2 || n.PendingCertSerial != s3 {
		t.Fatalf("renewal with the pending certificate: s1 revoked %v, s2 revoked %v, record %s pending %s (want %s pending %s)",
			tc.store.IsRevoked(s1), tc.store.IsRevoked(s2), n.CertSerial, n.PendingCertSerial, s2, s3)
	}
}

// TestRenewalOfMixedCluster: while a member cannot apply pending
// certificates, a renewal is recorded as before (the old serial revoked at
// once, no pending serial).
func TestRenewalOfMixedCluster(t *testing.T) {
	tc := newTestCluster(t)
	tc.raft.Gate = func(cmd command.Command) error {
		return command.CheckPeers(cmd, []command.PeerLevel{
			{ID: "leader", Level: command.ProtocolLevel, Known: true},
			{ID: "old", Level: 2, Version: "v1.0", Known: true},
		})
	}
	k := tc.keeper("leader", tc.dir)
	s1, _ := renewSerial(t, k, "w", nodeCSR(t, "w"), "w0")
	n, _ := tc.store.Node("w")
	if !tc.store.IsRevoked("w0") || n.CertSerial != s1 || n.PendingCertSerial != "" {
		t.Fatalf("record %s pending %q, w0 revoked %v; want %s, none, revoked", n.CertSerial, n.PendingCertSerial, tc.store.IsRevoked("w0"), s1)
	}
}

func TestRenewalPlan(t *testing.T) {
	stage := func(revoke ...string) command.Command {
		return &command.StageNodeCert{ID: "w", Serial: "new", CAFingerprint: "fp", Revoke: revoke}
	}
	for _, tt := range []struct {
		name             string
		current, pending string
		presented        string
		want             command.Command
	}{
		{"first renewal", "a", "", "a", stage()},
		{"caller did not say", "a", "", "", stage()},
		{"answer lost, asked again with the current", "a", "p", "a", stage("p")},
		{"caller did not say, pending replaced", "a", "p", "", stage("p")},
		{"installed the pending, confirmation lost", "a", "p", "p",
			&command.Batch{Commands: []command.Command{&command.ConfirmNodeCert{ID: "w", Serial: "p"}, stage()}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n := &api.Node{ID: "w", CertSerial: tt.current, PendingCertSerial: tt.pending}
			if got := RenewalPlan(n, tt.presented, "new", "fp"); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestRenewalRecordRevokesPending(t *testing.T) {
	for _, tt := range []struct {
		current, pending string
		want             []string
	}{
		{"a", "", []string{"a"}},
		{"a", "p", []string{"a", "p"}},
		{"", "", nil},
		{"new", "", nil},
	} {
		n := &api.Node{ID: "w", CertSerial: tt.current, PendingCertSerial: tt.pending}
		if got := RenewalRecord(n, "new", "fp").Revoke; !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s/%s: revokes %v, want %v", tt.current, tt.pending, got, tt.want)
		}
	}
}

func TestConfirmDue(t *testing.T) {
	for _, tt := range []struct {
		n    *api.Node
		mine string
		want bool
	}{
		{nil, "p", false},
		{&api.Node{CertSerial: "a"}, "a", false},
		{&api.Node{CertSerial: "a", PendingCertSerial: "p"}, "a", false}, // not installed (yet)
		{&api.Node{CertSerial: "a", PendingCertSerial: "p"}, "p", true},
		{&api.Node{CertSerial: "a", PendingCertSerial: "p"}, "", false},
	} {
		if got := ConfirmDue(tt.n, tt.mine); got != tt.want {
			t.Errorf("ConfirmDue(%+v, %q) = %v", tt.n, tt.mine, got)
		}
	}
}

// failConfirm refuses every ConfirmNodeCert while on.
type failConfirm struct {
	*FakeRaft
	on *bool
}

func (r failConfirm) Apply(ctx context.Context, cmd command.Command) (any, error) {
	if _, ok := cmd.(*command.ConfirmNodeCert); ok && *r.on {
		return nil, errors.New("leadership lost")
	}
	return r.FakeRaft.Apply(ctx, cmd)
}

// TestRenewLoopConfirmsInstalledCert: the node's renewal installs the new
// certificate and confirms it; when that confirmation is lost, the old
// certificate stays valid and the keys loop confirms it on a later pass
// (confirmIfPending), after which the old one is revoked.
func TestRenewLoopConfirmsInstalledCert(t *testing.T) {
	tc := newTestCluster(t)
	on := true
	// The node under test leads (FakeRaft does), so it renews and
	// confirms without the RPCs.
	k := tc.keeper("w", tc.dir)
	k.Raft = failConfirm{tc.raft, &on}
	pkiDir := PKIDir(t.TempDir())
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.NewCSR(key, "w")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, s0, err := tc.ca.SignCSR(csr, "w", []net.IP{net.ParseIP("10.0.0.4")}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tc.must(t, &command.SetNodeCert{ID: "w", Serial: s0, Revoke: []string{"w0"}})
	if err := pki.WriteKeyPair(pkiDir, certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	cert, pool, err := pki.NodeTLS(certPEM, keyPEM, TrustBundle(tc.store.Cluster()), nil)
	if err != nil {
		t.Fatal(err)
	}
	k.TLS = pki.NewSource(cert, pool)

	if err := k.renewCert(context.Background(), pkiDir, cert.Leaf); err != nil {
		t.Fatal(err)
	}
	s1 := pki.Serial(k.TLS.Certificate().Leaf)
	n, _ := tc.store.Node("w")
	if s1 == s0 || n.PendingCertSerial != s1 || tc.store.IsRevoked(s0) {
		t.Fatalf("after an install whose confirmation was lost: installed %s, record %s pending %s, %s revoked %v",
			s1, n.CertSerial, n.PendingCertSerial, s0, tc.store.IsRevoked(s0))
	}
	st := &keysState{}
	if wait := k.confirmIfPending(context.Background(), st); wait <= 0 || st.confirmFailures != 1 {
		t.Fatalf("a failed confirmation: wait %v, failures %d", wait, st.confirmFailures)
	}
	on = false
	st.nextConfirm = time.Time{} // past the backoff
	if wait := k.confirmIfPending(context.Background(), st); wait != 0 {
		t.Fatalf("confirmation: wait %v", wait)
	}
	n, _ = tc.store.Node("w")
	if n.CertSerial != s1 || n.PendingCertSerial != "" || !tc.store.IsRevoked(s0) {
		t.Fatalf("after the loop's confirmation: record %s pending %q, %s revoked %v", n.CertSerial, n.PendingCertSerial, s0, tc.store.IsRevoked(s0))
	}
}
