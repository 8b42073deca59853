package keyring

import (
	"errors"
	"testing"
	"time"

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
