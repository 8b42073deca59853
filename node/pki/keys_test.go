package pki

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"testing"
	"time"
)

func TestSealRoundTrip(t *testing.T) {
	kek := NewKEK()
	ca := newTestCA(t, "c1")
	aad := []byte("shoal ca key\x00c1")
	sealed, err := Seal(kek, ca.KeyPEM(), aad)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, ca.KeyPEM()) || bytes.Contains(sealed, ca.KeyPEM()[30:60]) {
		t.Fatal("sealed blob contains the plaintext")
	}
	again, _ := Seal(kek, ca.KeyPEM(), aad)
	if bytes.Equal(again, sealed) {
		t.Fatal("two seals of the same key are equal: the nonce is not fresh")
	}
	got, err := Open(kek, sealed, aad)
	if err != nil || !bytes.Equal(got, ca.KeyPEM()) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := LoadCA(ca.CertPEM(), got); err != nil {
		t.Fatalf("opened key does not load: %v", err)
	}
	flipped := bytes.Clone(sealed)
	flipped[len(flipped)-1] ^= 1
	for name, tc := range map[string]struct {
		kek, blob, aad []byte
	}{
		"wrong key":     {NewKEK(), sealed, aad},
		"wrong purpose": {kek, sealed, []byte("shoal join secret\x00c1")},
		"other cluster": {kek, sealed, []byte("shoal ca key\x00c2")},
		"altered":       {kek, flipped, aad},
		"truncated":     {kek, sealed[:10], aad},
	} {
		if _, err := Open(tc.kek, tc.blob, tc.aad); !errors.Is(err, ErrUnseal) {
			t.Errorf("%s: Open err = %v, want ErrUnseal", name, err)
		}
	}
	if _, err := Seal(kek[:16], []byte("x"), nil); err == nil {
		t.Error("Seal accepted a 16-byte KEK")
	}
	if KEKID(kek) == KEKID(NewKEK()) || len(KEKID(kek)) != 16 {
		t.Errorf("KEKID %q", KEKID(kek))
	}
}

func TestRenewalSchedule(t *testing.T) {
	nb := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	tests := []struct {
		name      string
		nb, na    time.Time
		now       time.Time
		spread    float64
		wantAt    time.Time
		wantDelay time.Duration
	}{
		{name: "30 days, earliest point", nb: nb, na: nb.Add(30 * day), now: nb, spread: 0, wantAt: nb.Add(15 * day), wantDelay: 15 * day},
		{name: "30 days, middle of the window", nb: nb, na: nb.Add(30 * day), now: nb.Add(day), spread: 0.5, wantAt: nb.Add(17*day + 12*time.Hour), wantDelay: 16*day + 12*time.Hour},
		{name: "due exactly", nb: nb, na: nb.Add(30 * day), now: nb.Add(15 * day), spread: 0, wantAt: nb.Add(15 * day), wantDelay: 0},
		{name: "past due", nb: nb, na: nb.Add(30 * day), now: nb.Add(29 * day), spread: 0.9, wantAt: nb.Add(15*day + time.Duration(0.9*5*float64(day))), wantDelay: 0},
		{name: "expired", nb: nb, na: nb.Add(time.Hour), now: nb.Add(2 * time.Hour), spread: 0, wantAt: nb.Add(30 * time.Minute), wantDelay: 0},
		{name: "3 minutes", nb: nb, na: nb.Add(3 * time.Minute), now: nb, spread: 0, wantAt: nb.Add(90 * time.Second), wantDelay: 90 * time.Second},
		{name: "nearly due is at least a second", nb: nb, na: nb.Add(time.Hour), now: nb.Add(30*time.Minute - time.Millisecond), spread: 0, wantAt: nb.Add(30 * time.Minute), wantDelay: MinRenewDelay},
		{name: "empty lifetime is due", nb: nb, na: nb, now: nb.Add(-time.Hour), spread: 0.3, wantAt: nb, wantDelay: time.Hour},
		{name: "spread out of range acts as 0", nb: nb, na: nb.Add(6 * time.Hour), now: nb, spread: 7, wantAt: nb.Add(3 * time.Hour), wantDelay: 3 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RenewalTime(tt.nb, tt.na, tt.spread); !got.Equal(tt.wantAt) {
				t.Errorf("RenewalTime = %s, want %s", got, tt.wantAt)
			}
			if got := RenewIn(tt.nb, tt.na, tt.now, tt.spread); got != tt.wantDelay {
				t.Errorf("RenewIn = %s, want %s", got, tt.wantDelay)
			}
		})
	}
	// Invariant: the renewal point is always within [1/2, 2/3] of the lifetime.
	for _, id := range []string{"a", "node-1", "zzzzzzzzzzzzzzzzzzzzzzzzzz", ""} {
		s := Spread(id)
		at := RenewalTime(nb, nb.Add(30*day), s)
		if s < 0 || s >= 1 || at.Before(nb.Add(15*day)) || at.After(nb.Add(20*day)) {
			t.Errorf("Spread(%q) = %v gives %s", id, s, at)
		}
	}
}

// TestShortLifetimeSkew: a short-lived certificate is back-dated by a tenth
// of its lifetime, not the full skew, so renewal is not due at once.
func TestShortLifetimeSkew(t *testing.T) {
	ca := newTestCA(t, "c1")
	now := time.Now()
	certPEM, _, _, err := ca.IssueNodeCertFor("n1", nil, now, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := ParseCertPEM(certPEM)
	if d := now.Sub(c.NotBefore); d > 18*time.Second+time.Second || d < 17*time.Second {
		t.Fatalf("NotBefore is %s before now, want 18s", d)
	}
	if RenewIn(c.NotBefore, c.NotAfter, now, 0) < time.Minute {
		t.Fatalf("a fresh 3-minute certificate is due in %s", RenewIn(c.NotBefore, c.NotAfter, now, 0))
	}
}

// TestCrossSignedTransition: during a rotation a node with a certificate
// from the new CA is accepted by peers that trust only the old CA (through
// the cross-signed intermediate), by peers that trust only the new CA, and a
// joiner pinning the new CA accepts it; a Source swaps certificates without
// new configs.
func TestCrossSignedTransition(t *testing.T) {
	old := newTestCA(t, "c1")
	next := newTestCA(t, "c1")
	cross, err := old.CrossSign(next.Cert(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ips := []net.IP{net.ParseIP("127.0.0.1")}
	newCertPEM, newKeyPEM, _, err := next.IssueNodeCert("node-new", ips, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	oldCertPEM, oldKeyPEM, _, err := old.IssueNodeCert("node-old", ips, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	bundle := append(next.CertPEM(), old.CertPEM()...)
	newTLS, _, err := NodeTLS(newCertPEM, newKeyPEM, bundle, cross)
	if err != nil {
		t.Fatal(err)
	}
	if len(newTLS.Certificate) != 3 {
		t.Fatalf("chain of %d certificates, want leaf, cross, CA", len(newTLS.Certificate))
	}
	oldTLS, _, err := NodeTLS(oldCertPEM, oldKeyPEM, old.CertPEM(), nil)
	if err != nil {
		t.Fatal(err)
	}
	// An old-only peer as server accepts the new node as client, and the
	// new node as server is accepted by the old-only client.
	if r := handshake(t, ServerTLS(oldTLS, old.Pool(), nil), ClientTLS(newTLS, old.Pool())); r.serverErr != nil || r.clientErr != nil {
		t.Fatalf("old server, new client: %v / %v", r.serverErr, r.clientErr)
	} else if id, _ := PeerNodeID(r.state); id != "node-new" {
		t.Fatalf("peer %q", id)
	}
	if r := handshake(t, ServerTLS(newTLS, old.Pool(), nil), ClientTLS(oldTLS, old.Pool())); r.serverErr != nil || r.clientErr != nil {
		t.Fatalf("new server, old-only client: %v / %v", r.serverErr, r.clientErr)
	}
	if r := handshake(t, ServerTLS(newTLS, next.Pool(), nil), ClientTLS(newTLS, next.Pool())); r.serverErr != nil || r.clientErr != nil {
		t.Fatalf("new-only peers: %v / %v", r.serverErr, r.clientErr)
	}
	if r := handshake(t, ServerTLS(newTLS, next.Pool(), nil), JoinTLS(next.Fingerprint())); r.serverErr != nil || r.clientErr != nil {
		t.Fatalf("joiner pinning the new CA: %v / %v", r.serverErr, r.clientErr)
	}
	// Without the cross-signed CA, an old-only peer refuses the new node.
	plain, _, err := NodeTLS(newCertPEM, newKeyPEM, bundle, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := handshake(t, ServerTLS(oldTLS, old.Pool(), nil), ClientTLS(plain, old.Pool())); r.serverErr == nil {
		t.Fatal("an old-only server accepted a new certificate without the cross-signed CA")
	}

	// Hot swap: one client config, the server's certificate changes.
	src := NewSource(oldTLS, old.Pool())
	client := src.ClientTLS()
	if r := handshake(t, ServerTLS(oldTLS, old.Pool(), nil), client); r.clientErr != nil {
		t.Fatal(r.clientErr)
	}
	newOnly, pool, err := NodeTLS(newCertPEM, newKeyPEM, next.CertPEM(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := handshake(t, ServerTLS(newOnly, next.Pool(), nil), client); r.clientErr == nil {
		t.Fatal("the old-only source accepted a server of the new CA")
	}
	src.Set(newOnly, pool)
	if r := handshake(t, ServerTLS(newOnly, next.Pool(), nil), client); r.clientErr != nil || r.serverErr != nil {
		t.Fatalf("after Set: %v / %v", r.clientErr, r.serverErr)
	}
	if got := src.Certificate().Leaf.Subject.CommonName; got != "node-new" {
		t.Fatalf("Certificate() = %q", got)
	}
	// A CA of path length 0 (made before cross-signing) cannot cross-sign.
	legacy := &CA{cert: old.cert, key: old.key}
	c := *old.cert
	c.MaxPathLen, c.MaxPathLenZero = 0, true
	legacy.cert = &c
	if _, err := legacy.CrossSign(next.Cert(), time.Now()); !errors.Is(err, ErrNotCA) {
		t.Fatalf("legacy CrossSign err = %v, want ErrNotCA", err)
	}
	var _ tls.Certificate = newTLS
}

func TestVerifyRejoin(t *testing.T) {
	ca, err := NewCA("c1", time.Now().Add(-400*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	other := newTestCA(t, "c2")
	certPEM, keyPEM, serial, err := ca.IssueNodeCert("n1", nil, time.Now().Add(-40*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ParseKeyPEM(keyPEM)
	csr, _ := NewCSR(key, "n1")
	otherKey, _ := NewKey()
	otherCSR, _ := NewCSR(otherKey, "n1")
	foreignPEM, foreignKeyPEM, _, _ := other.IssueNodeCert("n1", nil, time.Now())
	fkey, _ := ParseKeyPEM(foreignKeyPEM)
	foreignCSR, _ := NewCSR(fkey, "n1")
	roots := []*x509.Certificate{ca.Cert()}
	none := func(string) bool { return false }
	tests := []struct {
		name    string
		cert    []byte
		csr     []byte
		id      string
		revoked func(string) bool
		wantErr error
	}{
		{name: "same key, expired certificate", cert: certPEM, csr: csr, id: "n1", revoked: none},
		{name: "no certificate", cert: nil, csr: csr, id: "n1", revoked: none, wantErr: ErrNotRejoin},
		{name: "another node's ID", cert: certPEM, csr: csr, id: "n2", revoked: none, wantErr: ErrNotRejoin},
		{name: "CSR with another key", cert: certPEM, csr: otherCSR, id: "n1", revoked: none, wantErr: ErrNotRejoin},
		{name: "certificate of another cluster", cert: foreignPEM, csr: foreignCSR, id: "n1", revoked: none, wantErr: ErrNotRejoin},
		{name: "revoked", cert: certPEM, csr: csr, id: "n1", revoked: func(s string) bool { return s == serial }, wantErr: ErrNotRejoin},
		{name: "garbage CSR", cert: certPEM, csr: []byte("x"), id: "n1", revoked: none, wantErr: ErrBadCSR},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := VerifyRejoin(tt.cert, tt.csr, tt.id, roots, tt.revoked)
			if tt.wantErr == nil {
				if err != nil || got != serial {
					t.Fatalf("VerifyRejoin = %q, %v; want %q", got, err, serial)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}
