package keyring

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/pki"
)

// mixedGate is the version-skew gate of a cluster with a member that runs
// a release of protocol level 1.
func mixedGate(cmd command.Command) error {
	return command.CheckPeers(cmd, []command.PeerLevel{
		{ID: "leader", Level: command.ProtocolLevel, Known: true},
		{ID: "old", Level: 1, Version: "v0.9", Known: true},
	})
}

// renew has the leader sign a new certificate for node id (the key of csr)
// and returns its serial and expiry; the node confirms it installed it
// when the cluster records pending certificates.
func renew(t *testing.T, k *Keeper, id string, csr []byte) (string, time.Time) {
	t.Helper()
	resp, err := k.Issue(context.Background(), id, csr, "")
	if err != nil {
		t.Fatalf("renew %s: %v", id, err)
	}
	serial, err := pki.SerialPEM(resp.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := k.Store.Node(id); err == nil && n.PendingCertSerial == serial {
		if err := k.ConfirmCert(context.Background(), id, serial); err != nil {
			t.Fatalf("confirm %s's renewal: %v", id, err)
		}
	}
	end, err := pki.CertExpiry(resp.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	return serial, end
}

func nodeCSR(t *testing.T, id string) []byte {
	t.Helper()
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

// TestRenewalTrimmedOnceExpired: a renewal records the new certificate's
// expiry with it; the serial it revokes leaves the list once that
// certificate has expired (and TrimMargin more), never before; a serial
// revoked before expiries were recorded ("w0") gets a bound of its expiry
// at the first pass (the longest certificate the leader knows of: s2's)
// and leaves with s1 once that has passed; the node's current certificate
// stays as it is.
func TestRenewalTrimmedOnceExpired(t *testing.T) {
	tc := newTestCluster(t)
	k := tc.keeper("leader", tc.dir)
	ctx := context.Background()
	csr := nodeCSR(t, "w")
	s1, end1 := renew(t, k, "w", csr)
	if got, ok := tc.store.Cluster().CertExpiry[s1]; !ok || !got.Equal(end1) {
		t.Fatalf("expiry of the renewed certificate: %v %v, want %v", got, ok, end1)
	}
	s2, end2 := renew(t, k, "w", csr)
	if !tc.store.IsRevoked(s1) || !tc.store.IsRevoked("w0") || tc.store.IsRevoked(s2) {
		t.Fatalf("revoked after the second renewal: %v", tc.store.Cluster().Revoked)
	}
	var applied []command.Command
	tc.raft.OnApply = func(cmd command.Command) { applied = append(applied, cmd) }
	start := time.Now()
	for _, now := range []time.Time{start, end1, end1.Add(2 * TrimMargin)} {
		k.trimRevoked(ctx, tc.store.Cluster(), now)
		if !tc.store.IsRevoked(s1) || !tc.store.IsRevoked("w0") {
			t.Fatalf("at %v (the certificate ends %v): trimmed too early: %v", now, end1, tc.store.Cluster().Revoked)
		}
	}
	if len(applied) != 1 || !holds[*command.TrimRevoked](applied[0]) {
		t.Fatalf("proposed %v before a trim was due, want the one bound of w0", applied)
	}
	if got := tc.store.Cluster().CertExpiry["w0"]; got.Before(end2) {
		t.Fatalf("w0 bounded at %v, before the end of the longest certificate known (%v)", got, end2)
	}
	k.trimRevoked(ctx, tc.store.Cluster(), end2.Add(2*TrimMargin+time.Second))
	if len(applied) != 2 || !holds[*command.TrimRevoked](applied[1]) {
		t.Fatalf("proposed %v, want one more trim", applied)
	}
	c := tc.store.Cluster()
	if tc.store.IsRevoked(s1) || len(c.Revoked) != 0 {
		t.Fatalf("revoked after the trim: %v", c.Revoked)
	}
	if _, ok := c.CertExpiry[s2]; !ok || tc.store.IsRevoked(s2) {
		t.Fatal("the trim touched the node's current certificate")
	}
	k.trimRevoked(ctx, c, end2.Add(3*TrimMargin))
	if len(applied) != 2 {
		t.Fatalf("proposed %d entries with nothing left to trim", len(applied))
	}
}

// TestUnknownBound: revoked serials of unknown expiry are bounded by the
// longest lifetime the leader knows, from now; nothing to bound, no
// lifetime or no record proposes nothing.
func TestUnknownBound(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	const life = 30 * 24 * time.Hour
	for _, tc := range []struct {
		name     string
		c        *consensus.ClusterState
		lifetime time.Duration
		want     time.Time // zero: none
	}{
		{"no record", nil, life, time.Time{}},
		{"nothing revoked", &consensus.ClusterState{}, life, time.Time{}},
		{"every revoked serial has an expiry", &consensus.ClusterState{Revoked: []string{"a"},
			CertExpiry: map[string]time.Time{"a": now}}, life, time.Time{}},
		{"unknown: this leader's lifetime", &consensus.ClusterState{Revoked: []string{"a", "b"},
			CertExpiry: map[string]time.Time{"a": now}}, life, now.Add(life)},
		{"unknown: a longer certificate recorded", &consensus.ClusterState{Revoked: []string{"b"},
			CertExpiry: map[string]time.Time{"cur": now.Add(3 * life)}}, life, now.Add(3 * life)},
		{"no lifetime known", &consensus.ClusterState{Revoked: []string{"b"}}, 0, time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := UnknownBound(tc.c, tc.lifetime, now)
			if ok != !tc.want.IsZero() || !got.Equal(tc.want) {
				t.Fatalf("got %v %v, want %v", got, ok, tc.want)
			}
		})
	}
}

// TestRemovedSerialBounded: a removed node's serial (its expiry forgotten
// by RemoveNode) stays revoked while its certificate could still be used
// and leaves the list after; before, it stayed listed for good.
func TestRemovedSerialBounded(t *testing.T) {
	tc := newTestCluster(t)
	k := tc.keeper("leader", tc.dir)
	ctx := context.Background()
	csr := nodeCSR(t, "w")
	renew(t, k, "w", csr) // a revoked serial with its expiry: the cluster records them
	s1, end1 := renew(t, k, "w", csr)
	if _, err := tc.raft.Apply(ctx, &command.RemoveNode{ID: "w", Now: time.Now()}); err != nil {
		t.Fatal(err)
	}
	removedAt := time.Now()
	k.trimRevoked(ctx, tc.store.Cluster(), removedAt)
	for _, s := range []string{s1, "w0"} {
		if end, ok := tc.store.Cluster().CertExpiry[s]; !ok || end.Before(end1) {
			t.Fatalf("%s bounded at %v %v, want at least %v", s, end, ok, end1)
		}
	}
	k.trimRevoked(ctx, tc.store.Cluster(), end1.Add(TrimMargin))
	if !tc.store.IsRevoked(s1) {
		t.Fatal("the removed node's serial left the list while its certificate was valid")
	}
	bound := tc.store.Cluster().CertExpiry[s1]
	k.trimRevoked(ctx, tc.store.Cluster(), bound.Add(2*TrimMargin+time.Second))
	if c := tc.store.Cluster(); len(c.Revoked) != 0 || len(c.CertExpiry) != 0 {
		t.Fatalf("after the bound: revoked %v, expiries %v", c.Revoked, c.CertExpiry)
	}
}

// TestTrimDue: the leader's decision, and the time it proposes.
func TestTrimDue(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	nodes := []*api.Node{{ID: "n1", CertSerial: "cur"}}
	for _, tc := range []struct {
		name string
		c    *consensus.ClusterState
		due  bool
	}{
		{"no record", nil, false},
		{"no expiries", &consensus.ClusterState{Revoked: []string{"a"}}, false},
		{"revoked, ended within two margins", &consensus.ClusterState{Revoked: []string{"a"},
			CertExpiry: map[string]time.Time{"a": ago(2 * TrimMargin)}}, false},
		{"revoked, ended two margins ago", &consensus.ClusterState{Revoked: []string{"a"},
			CertExpiry: map[string]time.Time{"a": ago(2*TrimMargin + time.Second)}}, true},
		{"a node's current certificate, ended long ago", &consensus.ClusterState{
			CertExpiry: map[string]time.Time{"cur": ago(100 * TrimMargin)}}, false},
		{"a certificate no node holds, ended long ago", &consensus.ClusterState{
			CertExpiry: map[string]time.Time{"orphan": ago(100 * TrimMargin)}}, true},
		{"valid ones only", &consensus.ClusterState{Revoked: []string{"a"},
			CertExpiry: map[string]time.Time{"a": now.Add(time.Hour)}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, due := TrimDue(tc.c, nodes, now)
			if due != tc.due {
				t.Fatalf("due %v, want %v", due, tc.due)
			}
			if due && !before.Equal(now.Add(-TrimMargin)) {
				t.Fatalf("expired before %v, want %v", before, now.Add(-TrimMargin))
			}
		})
	}
}

// TestMixedClusterNoTrim: while a member runs a release of level 1, a
// renewal is recorded as that release did (no expiry: the gate refuses
// RecordCertExpiry and the leader falls back to SetNodeCert alone), so no
// trim is ever due and the leader proposes none; and should a trim be due,
// the gate refuses it and nothing changes.
func TestMixedClusterNoTrim(t *testing.T) {
	tc := newTestCluster(t)
	k := tc.keeper("leader", tc.dir)
	ctx := context.Background()
	var mu sync.Mutex
	var asked []command.Command // every proposal, refused or not
	gate := func(cmd command.Command) error {
		mu.Lock()
		asked = append(asked, cmd)
		mu.Unlock()
		return mixedGate(cmd)
	}
	tc.raft.Gate = gate
	csr := nodeCSR(t, "w")
	s1, _ := renew(t, k, "w", csr)
	s2, end2 := renew(t, k, "w", csr)
	c := tc.store.Cluster()
	if len(c.CertExpiry) != 0 {
		t.Fatalf("expiries recorded in a mixed cluster: %v", c.CertExpiry)
	}
	if n, _ := tc.store.Node("w"); n.CertSerial != s2 || !tc.store.IsRevoked(s1) || !tc.store.IsRevoked("w0") {
		t.Fatalf("renewals not recorded: record %s, revoked %v", n.CertSerial, c.Revoked)
	}
	asked = nil
	k.trimRevoked(ctx, c, end2.Add(1000*TrimMargin))
	if len(asked) != 0 {
		t.Fatalf("the leader proposed %v in a mixed cluster", asked)
	}

	// Expiries recorded (as if the cluster had been upgraded), then an
	// old member again: the gate refuses the due trim.
	tc.raft.Gate = nil
	s3, end3 := renew(t, k, "w", csr)
	renew(t, k, "w", csr)
	tc.raft.Gate = gate
	before := tc.store.Cluster()
	k.trimRevoked(ctx, before, end3.Add(1000*TrimMargin))
	if len(asked) != 1 || !holds[*command.TrimRevoked](asked[0]) {
		t.Fatalf("proposals %v, want the one refused trim", asked)
	}
	if after := tc.store.Cluster(); !slices.Equal(after.Revoked, before.Revoked) || !tc.store.IsRevoked(s3) {
		t.Fatalf("a refused trim changed the list: %v, was %v", after.Revoked, before.Revoked)
	}
}

// fakeApplier records what is proposed and refuses what gate refuses.
type fakeApplier struct {
	gate func(command.Command) error
	got  []command.Command
}

func (f *fakeApplier) Apply(_ context.Context, cmd command.Command) (any, error) {
	f.got = append(f.got, cmd)
	if f.gate != nil {
		return nil, f.gate(cmd)
	}
	return "ok", nil
}

// TestApplyCertRecord: the record of a certificate goes with its expiry in
// one batch (a join's revocations and record flattened into it), or alone
// while a member cannot apply the expiry; other errors are not retried.
func TestApplyCertRecord(t *testing.T) {
	ctx := context.Background()
	end := time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC)
	join := JoinRecord(api.Node{ID: "n2", CertSerial: "new"}, []string{"old"})

	f := &fakeApplier{}
	if _, err := ApplyCertRecord(ctx, f, join, "new", end); err != nil {
		t.Fatal(err)
	}
	b, ok := f.got[0].(*command.Batch)
	if len(f.got) != 1 || !ok || len(b.Commands) != 3 {
		t.Fatalf("proposed %#v, want one batch of 3", f.got)
	}
	if rec, ok := b.Commands[2].(*command.RecordCertExpiry); !ok || rec.Serial != "new" || !rec.NotAfter.Equal(end) {
		t.Fatalf("last command %#v, want the expiry of new", b.Commands[2])
	}
	if _, err := command.Encode(b); err != nil {
		t.Fatalf("the batch does not encode: %v", err)
	}

	f = &fakeApplier{gate: mixedGate}
	renewal := RenewalRecord(&api.Node{ID: "n2", CertSerial: "old"}, "new", "fp")
	if _, err := ApplyCertRecord(ctx, f, renewal, "new", end); err != nil {
		t.Fatal(err)
	}
	if len(f.got) != 2 || f.got[1] != command.Command(renewal) {
		t.Fatalf("proposed %#v, want the batch then the renewal alone", f.got)
	}

	boom := errors.New("no quorum")
	f = &fakeApplier{gate: func(command.Command) error { return boom }}
	if _, err := ApplyCertRecord(ctx, f, renewal, "new", end); !errors.Is(err, boom) || len(f.got) != 1 {
		t.Fatalf("error %v after %d proposals, want %v after one", err, len(f.got), boom)
	}
}
