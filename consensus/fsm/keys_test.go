package fsm

import (
	"errors"
	"slices"
	"testing"

	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

// TestSealClusterKeys: migration drops the plaintext CA key and secret and
// keeps only the sealed forms; a proposal without them is refused.
func TestSealClusterKeys(t *testing.T) {
	h := newHarness(t)
	c := testCluster()
	c.TokenSecret = "plain-secret"
	h.must(command.BootstrapCluster{Cluster: c, Node: testNode("n1", "host1")})
	if r := h.apply(command.SealClusterKeys{KEKID: "k", CAKeySealed: []byte("x"), CAFingerprint: "fp"}); !errors.Is(r.Err, consensus.ErrInvalid) {
		t.Fatalf("sealing without the sealed secret: %v, want ErrInvalid", r.Err)
	}
	if got := h.store.Cluster(); string(got.CAKeyPEM) != "key" || got.TokenSecret != "plain-secret" {
		t.Fatalf("a refused command changed the record: %+v", got)
	}
	h.must(command.SealClusterKeys{KEKID: "k", CAKeySealed: []byte("sealed-key"), TokenSecretSealed: []byte("sealed-secret"), CAFingerprint: "fp"})
	got := h.store.Cluster()
	if got.CAKeyPEM != nil || got.TokenSecret != "" {
		t.Fatalf("plaintext kept: key %q secret %q", got.CAKeyPEM, got.TokenSecret)
	}
	if string(got.CAKeySealed) != "sealed-key" || string(got.TokenSecretSealed) != "sealed-secret" || got.KEKID != "k" || got.CAFingerprint != "fp" {
		t.Fatalf("sealed record = %+v", got)
	}
	h.must(command.RotateToken{SecretHash: "h2", SecretSealed: []byte("sealed-2")})
	if got := h.store.Cluster(); got.TokenSecret != "" || string(got.TokenSecretSealed) != "sealed-2" || got.TokenSecretHash != "h2" {
		t.Fatalf("after rotate token: %+v", got)
	}
}

// TestCARotationRecord walks a rotation: both CAs trusted, every node
// pending, nodes drop out as they record a certificate from the new CA,
// then the previous CA is dropped.
func TestCARotationRecord(t *testing.T) {
	h := newHarness(t)
	c := testCluster()
	c.CAKeyPEM, c.CAKeySealed, c.CAFingerprint = nil, []byte("k1"), "fp1"
	h.must(command.BootstrapCluster{Cluster: c, Node: testNode("n1", "host1")})
	h.must(command.UpsertNode{Node: testNode("n2", "host2")})

	if r := h.apply(command.RotateCA{CACertPEM: []byte("ca2"), CAFingerprint: "fp2", CAKeySealed: []byte("k2"), ExpectFingerprint: "stale"}); !errors.Is(r.Err, consensus.ErrVersionMismatch) {
		t.Fatalf("rotate with a stale fingerprint: %v", r.Err)
	}
	h.must(command.RotateCA{CACertPEM: []byte("ca2"), CAFingerprint: "fp2", CAKeySealed: []byte("k2"), CACrossPEM: []byte("x2"), ExpectFingerprint: "fp1"})
	got := h.store.Cluster()
	if string(got.CACertPEM) != "ca2" || string(got.PrevCACertPEM) != "cert" || string(got.CACrossPEM) != "x2" ||
		!slices.Equal(got.RotationPending, []string{"n1", "n2"}) || string(got.CAKeySealed) != "k2" {
		t.Fatalf("after RotateCA: %+v", got)
	}
	if r := h.apply(command.RotateCA{CACertPEM: []byte("ca3"), CAFingerprint: "fp3", CAKeySealed: []byte("k3"), ExpectFingerprint: "fp2"}); !errors.Is(r.Err, consensus.ErrInUse) {
		t.Fatalf("second rotation during the first: %v, want ErrInUse", r.Err)
	}
	// A certificate from the old CA (a renewal racing the rotation) keeps the node pending.
	h.must(command.SetNodeCert{ID: "n1", Serial: "a", CAFingerprint: "fp1", Revoke: []string{"serial-n1"}})
	h.must(command.SetNodeCert{ID: "n2", Serial: "b", CAFingerprint: "fp2", Revoke: []string{"serial-n2"}})
	got = h.store.Cluster()
	if !slices.Equal(got.RotationPending, []string{"n1"}) || !got.IsRevoked("serial-n1") || !got.IsRevoked("serial-n2") {
		t.Fatalf("pending %v revoked %v", got.RotationPending, got.Revoked)
	}
	if n, _ := h.store.Node("n2"); n.CertSerial != "b" {
		t.Fatalf("n2 serial %q", n.CertSerial)
	}
	h.must(command.FinishCARotation{CAFingerprint: "fp1"}) // stale: no-op
	if len(h.store.Cluster().PrevCACertPEM) == 0 {
		t.Fatal("a finish for another CA dropped the previous CA")
	}
	h.must(command.SetNodeCert{ID: "n1", Serial: "c", CAFingerprint: "fp2", Revoke: []string{"a"}})
	h.must(command.FinishCARotation{CAFingerprint: "fp2"})
	got = h.store.Cluster()
	if got.PrevCACertPEM != nil || got.CACrossPEM != nil || got.RotationPending != nil || string(got.CACertPEM) != "ca2" {
		t.Fatalf("after finish: %+v", got)
	}
	if r := h.apply(command.SetNodeCert{ID: "n1", Serial: "a", CAFingerprint: "fp2"}); !errors.Is(r.Err, consensus.ErrInvalid) {
		t.Fatalf("recording a revoked serial: %v, want ErrInvalid", r.Err)
	}
	if r := h.apply(command.SetNodeCert{ID: "nope", Serial: "z"}); !errors.Is(r.Err, consensus.ErrNotFound) {
		t.Fatalf("unknown node: %v", r.Err)
	}
}
