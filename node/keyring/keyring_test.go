package keyring

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/wire"
)

// TestCheckJoinReply: the pure check behind a join's refusal of a reply
// from another cluster (node's TestJoinReplyForeignCARefused).
func TestCheckJoinReply(t *testing.T) {
	p, err := pki.NewCA("c1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.NewCA("c2", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	key, _ := pki.NewKey()
	keyPEM, _ := pki.EncodeKey(key)
	csr, _ := pki.NewCSR(key, "me")
	good, _, _ := p.SignCSR(csr, "me", nil, time.Now(), time.Hour)
	otherKey, _ := pki.NewKey()
	otherCSR, _ := pki.NewCSR(otherKey, "me")
	notMine, _, _ := p.SignCSR(otherCSR, "me", nil, time.Now(), time.Hour)
	csrYou, _ := pki.NewCSR(key, "you")
	forYou, _, _ := p.SignCSR(csrYou, "you", nil, time.Now(), time.Hour)
	foreign, _, _ := other.SignCSR(csr, "me", nil, time.Now(), time.Hour)
	tok := pki.Token{Version: 1, CAFingerprint: p.Fingerprint(), Secret: pki.NewSecret()}
	tests := []struct {
		name string
		resp wire.JoinResponse
		want error
	}{
		{name: "good", resp: wire.JoinResponse{CertPEM: good, CAPEM: p.CertPEM()}},
		{name: "foreign CA", resp: wire.JoinResponse{CertPEM: foreign, CAPEM: other.CertPEM()}, want: pki.ErrCAMismatch},
		{name: "pinned CA, foreign certificate", resp: wire.JoinResponse{CertPEM: foreign, CAPEM: p.CertPEM()}, want: pki.ErrCAMismatch},
		{name: "certificate for another key", resp: wire.JoinResponse{CertPEM: notMine, CAPEM: p.CertPEM()}, want: pki.ErrKeyMismatch},
		{name: "certificate for another ID", resp: wire.JoinResponse{CertPEM: forYou, CAPEM: p.CertPEM()}, want: pki.ErrNodeIDMismatch},
		{name: "no CA", resp: wire.JoinResponse{CertPEM: good}, want: pki.ErrBadPEM},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckJoinReply(tok, "me", keyPEM, &tt.resp)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("CheckJoinReply = %v, want %v", err, tt.want)
			}
		})
	}
}

// joiner is a node key with a certificate from ca for id, and CSRs.
type joiner struct {
	certPEM []byte
	serial  string
	csr     []byte // a CSR for id signed by the certified key
	keyFP   string // what the leader records as the node's CertKey
}

func newJoiner(t *testing.T, ca *pki.CA, id string) joiner {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.NewCSR(key, id)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, serial, err := ca.SignCSR(csr, id, nil, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	fp, err := pki.CSRKeyFingerprint(csr)
	if err != nil {
		t.Fatal(err)
	}
	return joiner{certPEM: certPEM, serial: serial, csr: csr, keyFP: fp}
}

// TestAdmitJoinID: which joiner may take which node ID, and which serials
// the admission revokes (they go into the same entry as the record).
func TestAdmitJoinID(t *testing.T) {
	ca, err := pki.NewCA("c1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := pki.NewCA("c2", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c := &consensus.ClusterState{ClusterID: "c1", CACertPEM: ca.CertPEM()}
	n2 := newJoiner(t, ca, "n2")    // the node's old certificate and key
	thief := newJoiner(t, ca, "n2") // another key, also certified once for n2
	stolen := newJoiner(t, foreign, "n2")
	down := &api.Node{ID: "n2", Status: api.NodeDown, CertSerial: "rec", CertKey: n2.keyFP}
	ready := &api.Node{ID: "n2", Status: api.NodeReady, CertSerial: "rec", CertKey: n2.keyFP}
	revoked := map[string]bool{"gone": true}

	tests := []struct {
		name    string
		in      JoinClaim
		want    []string
		refused bool
		taken   bool // refused as *IDTakenError
	}{
		{name: "fresh ID", in: JoinClaim{Req: wire.JoinRequest{NodeID: "n9", CSR: n2.csr}}},
		{name: "the leader's own ID", in: JoinClaim{Req: wire.JoinRequest{NodeID: "n2", CSR: n2.csr, OldCertPEM: n2.certPEM}, Leader: true}, refused: true},
		{name: "live member", in: JoinClaim{Req: wire.JoinRequest{NodeID: "n2", CSR: n2.csr, OldCertPEM: n2.certPEM}, Record: ready, Alive: true}, refused: true},
		{name: "re-join with the old key: the presented and the recorded serial go",
			in:   JoinClaim{Req: wire.JoinRequest{NodeID: "n2", CSR: n2.csr, OldCertPEM: n2.certPEM}, Record: down},
			want: []string{n2.serial, "rec"}},
		{name: "re-join, record holds the presented serial",
			in:   JoinClaim{Req: wire.JoinRequest{NodeID: "n2", CSR: n2.csr, OldCertPEM: n2.certPEM}, Record: &api.Node{ID: "n2", Status: api.NodeDown, CertSerial: n2.serial}},
			want: []string{n2.serial}},
		{name: "ready record but gossip sees it dead: re-join",
			in:   JoinClaim{Req: wire.JoinRequest{NodeID: "n2", CSR: n2.csr, OldCertPEM: n2.certPEM}, Record: ready},
			want: []string{n2.serial, "rec"}},
		{name: "only in the raft configuration, proven",
			in:   JoinClaim{Req: wire.JoinRequest{NodeID: "n2", CSR: n2.csr, OldCertPEM: n2.certPEM}, InRaft: true},
			want: []string{n2.serial}},
		{name: "retried join, same key, no certificate: the unseen one goes",
			in:   JoinClaim{Req: wire.JoinRequest{NodeID: "n2", CSR: n2.csr}, Record: down},
			want: []string{"rec"}},
		{name: "re-join with the old certificate while a renewal is pending: the unconfirmed one goes too",
			in: JoinClaim{Req: wire.JoinRequest{NodeID: "n2", CSR: n2.csr, OldCertPEM: n2.certPEM},
				Record: &api.Node{ID: "n2", Status: api.NodeDown, CertSerial: n2.serial, PendingCertSerial: "pend", CertKey: n2.keyFP}},
			want: []string{n2.serial, "pend"}},
		{name: "re-join with the installed pending certificate",
			in: JoinClaim{Req: wire.JoinRequest{NodeID: "n2", CSR: n2.csr, OldCertPEM: n2.certPEM},
				Record: &api.Node{ID: "n2", Status: api.NodeDown, CertSerial: "rec", PendingCertSerial: n2.serial, CertKey: n2.keyFP}},
			want: []string{n2.serial, "rec"}},
		{name: "retried join over a pending renewal: both go",
			in:   JoinClaim{Req: wire.JoinRequest{NodeID: "n2", CSR: n2.csr}, Record: &api.Node{ID: "n2", Status: api.NodeDown, CertSerial: "rec", PendingCertSerial: "pend", CertKey: n2.keyFP}},
			want: []string{"rec", "pend"}},
		{name: "retried join, record without serial",
			in: JoinClaim{Req: wire.JoinRequest{NodeID: "n2", CSR: n2.csr}, Record: &api.Node{ID: "n2", Status: api.NodeDown, CertKey: n2.keyFP}}},
		{name: "known ID, no proof", in: JoinClaim{Req: wire.JoinRequest{NodeID: "n2", CSR: thief.csr}, Record: down}, refused: true, taken: true},
		{name: "known ID, certificate with another key",
			in:      JoinClaim{Req: wire.JoinRequest{NodeID: "n2", CSR: thief.csr, OldCertPEM: n2.certPEM}, Record: down},
			refused: true, taken: true},
		{name: "known ID, a certificate of it for another key than the record's (an earlier membership's, its revocation trimmed once expired)",
			in:      JoinClaim{Req: wire.JoinRequest{NodeID: "n2", CSR: thief.csr, OldCertPEM: thief.certPEM}, Record: down},
			refused: true, taken: true},
		{name: "record without a key: an expired certificate of the ID other than the record's (an earlier membership's, its revocation trimmed)",
			in: JoinClaim{Req: wire.JoinRequest{NodeID: "n2", CSR: thief.csr, OldCertPEM: thief.certPEM}, Now: time.Now().Add(2 * time.Hour),
				Record: &api.Node{ID: "n2", Status: api.NodeDown, CertSerial: n2.serial}},
			refused: true, taken: true},
		{name: "record without a key: its own expired certificate",
			in: JoinClaim{Req: wire.JoinRequest{NodeID: "n2", CSR: n2.csr, OldCertPEM: n2.certPEM}, Now: time.Now().Add(2 * time.Hour),
				Record: &api.Node{ID: "n2", Status: api.NodeDown, CertSerial: n2.serial}},
			want: []string{n2.serial}},
		{name: "record without a key: a valid unrevoked certificate of the ID other than the record's",
			in:   JoinClaim{Req: wire.JoinRequest{NodeID: "n2", CSR: thief.csr, OldCertPEM: thief.certPEM}, Record: &api.Node{ID: "n2", Status: api.NodeDown, CertSerial: n2.serial}},
			want: []string{thief.serial, n2.serial}},
		{name: "record without a key or serial: any unrevoked certificate of the ID",
			in:   JoinClaim{Req: wire.JoinRequest{NodeID: "n2", CSR: thief.csr, OldCertPEM: thief.certPEM}, Record: &api.Node{ID: "n2", Status: api.NodeDown}},
			want: []string{thief.serial}},
		{name: "known ID, certificate of another cluster",
			in:      JoinClaim{Req: wire.JoinRequest{NodeID: "n2", CSR: stolen.csr, OldCertPEM: stolen.certPEM}, Record: down},
			refused: true, taken: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := AdmitJoinID(tt.in, c, func(s string) bool { return revoked[s] })
			if tt.refused {
				var taken *IDTakenError
				var we *wire.Error
				if err == nil || !errors.As(err, &we) && !errors.As(err, &taken) {
					t.Fatalf("AdmitJoinID = %v, %v; want a refusal", got, err)
				}
				if tt.taken != errors.As(err, &taken) {
					t.Fatalf("AdmitJoinID error %v: *IDTakenError %v, want %v", err, !tt.taken, tt.taken)
				}
				return
			}
			if err != nil {
				t.Fatalf("AdmitJoinID: %v", err)
			}
			slices.Sort(got)
			want := slices.Clone(tt.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("AdmitJoinID revokes %v, want %v", got, want)
			}
		})
	}
	// A revoked old certificate proves nothing.
	revoked[n2.serial] = true
	if _, err := AdmitJoinID(JoinClaim{Req: wire.JoinRequest{NodeID: "n2", CSR: n2.csr, OldCertPEM: n2.certPEM}, Record: down}, c,
		func(s string) bool { return revoked[s] }); err == nil {
		t.Fatal("a revoked certificate re-joined")
	}
}

func TestJoinRecord(t *testing.T) {
	n := api.Node{ID: "n2"}
	if cmd, ok := JoinRecord(n, nil).(*command.UpsertNode); !ok || cmd.Node.ID != "n2" {
		t.Fatalf("JoinRecord without revocations = %#v, want an UpsertNode", JoinRecord(n, nil))
	}
	b, ok := JoinRecord(n, []string{"s1", "s2"}).(*command.Batch)
	if !ok || len(b.Commands) != 3 {
		t.Fatalf("JoinRecord with revocations = %#v, want a batch of 3", JoinRecord(n, []string{"s1", "s2"}))
	}
	for i, s := range []string{"s1", "s2"} {
		if r, ok := b.Commands[i].(*command.RevokeCert); !ok || r.Serial != s {
			t.Errorf("command %d = %#v, want RevokeCert %s", i, b.Commands[i], s)
		}
	}
	if u, ok := b.Commands[2].(*command.UpsertNode); !ok || u.Node.ID != "n2" {
		t.Errorf("last command = %#v, want the record", b.Commands[2])
	}
}

// TestRenewalRecord: a renewal revokes the serial it replaces, and only that.
func TestRenewalRecord(t *testing.T) {
	for _, tt := range []struct {
		name, old, serial string
		revoke            []string
	}{
		{"first certificate recorded", "", "s1", nil},
		{"renewal", "s0", "s1", []string{"s0"}},
		{"same serial again", "s1", "s1", nil},
	} {
		cmd := RenewalRecord(&api.Node{ID: "n1", CertSerial: tt.old}, tt.serial, "fp")
		if cmd.ID != "n1" || cmd.Serial != tt.serial || cmd.CAFingerprint != "fp" || !slices.Equal(cmd.Revoke, tt.revoke) {
			t.Errorf("%s: %+v, want revoke %v", tt.name, cmd, tt.revoke)
		}
	}
}

// TestRenewIn: a certificate renews at its node's point between 1/2 and
// 2/3 of its life, at once when the record's CA did not sign it.
func TestRenewIn(t *testing.T) {
	now := time.Now()
	ca, err := pki.NewCA("c1", now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	next, err := pki.NewCA("c1", now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	key, _ := pki.NewKey()
	csr, _ := pki.NewCSR(key, "n1")
	certPEM, _, err := ca.SignCSR(csr, "n1", nil, now, 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := pki.ParseCertPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	for _, tt := range []struct {
		name     string
		ca       []byte
		at       time.Time
		min, max time.Duration
	}{
		{"fresh", ca.CertPEM(), leaf.NotBefore, life / 2, life * 2 / 3},
		{"past 2/3 of its life", ca.CertPEM(), leaf.NotBefore.Add(life * 3 / 4), 0, 0},
		{"the CA rotated", next.CertPEM(), leaf.NotBefore, 0, 0},
		{"record CA unreadable: by time only", []byte("junk"), leaf.NotBefore, life / 2, life * 2 / 3},
	} {
		got := RenewIn(leaf, CARotated(leaf, tt.ca), "n1", tt.at)
		if got < tt.min || got > tt.max {
			t.Errorf("%s: renew in %s, want between %s and %s", tt.name, got, tt.min, tt.max)
		}
	}
}

func TestRenewBackoff(t *testing.T) {
	for failures, want := range map[int]time.Duration{
		1: 500 * time.Millisecond, 2: time.Second, 5: 8 * time.Second, 6: 15 * time.Second, 50: 15 * time.Second,
	} {
		if got := RenewBackoff(failures); got != want {
			t.Errorf("RenewBackoff(%d) = %s, want %s", failures, got, want)
		}
	}
}

// TestRotationDone: the old CA goes once no node the rotation waits for is
// still a member.
func TestRotationDone(t *testing.T) {
	members := map[string]bool{"n1": true, "n2": true}
	isMember := func(id string) bool { return members[id] }
	for _, tt := range []struct {
		name string
		c    consensus.ClusterState
		want bool
	}{
		{"no rotation", consensus.ClusterState{RotationPending: []string{"n1"}}, false},
		{"waiting for a member", consensus.ClusterState{PrevCACertPEM: []byte("old"), RotationPending: []string{"gone", "n2"}}, false},
		{"the rest left", consensus.ClusterState{PrevCACertPEM: []byte("old"), RotationPending: []string{"gone"}}, true},
		{"every node renewed", consensus.ClusterState{PrevCACertPEM: []byte("old")}, true},
	} {
		if got := RotationDone(&tt.c, isMember); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestRenewLimiter: a node's seventh renewal within the hour is refused,
// another node's is not, a failed renewal gives its slot back, and the
// window slides.
func TestRenewLimiter(t *testing.T) {
	var l renewLimiter
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < renewMax; i++ {
		if !l.take("a", t0.Add(time.Duration(i)*time.Minute), renewMax) {
			t.Fatalf("renewal %d refused", i+1)
		}
	}
	if l.take("a", t0.Add(10*time.Minute), renewMax) {
		t.Fatal("a seventh renewal within the hour allowed")
	}
	if !l.take("b", t0.Add(10*time.Minute), renewMax) {
		t.Fatal("another node held up")
	}
	l.undo("a", t0) // the first one failed after all
	if !l.take("a", t0.Add(11*time.Minute), renewMax) {
		t.Fatal("a failed renewal kept its slot")
	}
	if l.take("a", t0.Add(12*time.Minute), renewMax) {
		t.Fatal("the slot given back was counted twice")
	}
	if !l.take("a", t0.Add(renewWindow+time.Minute), renewMax) {
		t.Fatal("still refused once a renewal left the window")
	}
	l.take("a", t0.Add(3*renewWindow), renewMax)
	if len(l.recent) != 1 || len(l.recent["a"]) != 1 {
		t.Fatalf("renewals past the window kept: %v", l.recent)
	}
}

// TestRenewAllowance: the bound never refuses the renewals a node makes on
// schedule, however short the certificates' lifetime.
func TestRenewAllowance(t *testing.T) {
	for _, lifetime := range []time.Duration{pki.MinNodeCertValidity, 2 * time.Minute, 5 * time.Minute,
		time.Hour, 24 * time.Hour, pki.DefaultNodeCertValidity, 0} {
		got := renewAllowance(lifetime)
		// A node renews at 1/2 of its certificate's life at the earliest.
		scheduled := 0
		if lifetime > 0 {
			scheduled = int(renewWindow/(lifetime/2)) + 1
		}
		if got < renewMax || got < scheduled {
			t.Errorf("lifetime %s: %d renewals per %s, want at least %d and the %d scheduled", lifetime, got, renewWindow, renewMax, scheduled)
		}
	}
	if got := renewAllowance(pki.DefaultNodeCertValidity); got != renewMax {
		t.Errorf("default lifetime: %d renewals per %s, want %d", got, renewWindow, renewMax)
	}
}
