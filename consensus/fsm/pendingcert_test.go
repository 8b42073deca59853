package fsm

import (
	"errors"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

// TestStagedRenewalKeepsCurrentCert: a renewal of level 3 records the new
// serial as pending and revokes nothing the node holds; only its
// confirmation makes the new one current and revokes the old. A renewal
// staged again over an unconfirmed one revokes only that pending serial,
// so a node has at most one. A stale or unknown confirmation is refused
// and changes nothing; a repeated one is a no-op.
func TestStagedRenewalKeepsCurrentCert(t *testing.T) {
	h := newHarness(t)
	h.bootstrap()
	h.must(command.UpsertNode{Node: testNode("n2", "host2")})
	node := func() *api.Node {
		n, err := h.store.Node("n2")
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	check := func(step, cur, pending string, revoked, valid []string) {
		t.Helper()
		n := node()
		if n.CertSerial != cur || n.PendingCertSerial != pending {
			t.Fatalf("%s: record holds %q pending %q, want %q pending %q", step, n.CertSerial, n.PendingCertSerial, cur, pending)
		}
		for _, s := range revoked {
			if !h.store.IsRevoked(s) {
				t.Errorf("%s: %s not revoked", step, s)
			}
		}
		for _, s := range valid {
			if h.store.IsRevoked(s) {
				t.Errorf("%s: %s revoked", step, s)
			}
		}
	}
	h.must(command.StageNodeCert{ID: "n2", Serial: "a"})
	check("staged", "serial-n2", "a", nil, []string{"serial-n2", "a"})

	// The answer was lost: the node asks again with its current cert.
	h.must(command.StageNodeCert{ID: "n2", Serial: "b"})
	check("staged again", "serial-n2", "b", []string{"a"}, []string{"serial-n2", "b"})

	for _, bad := range []command.ConfirmNodeCert{{ID: "n2", Serial: "a"}, {ID: "n2", Serial: "zz"}} {
		if r := h.apply(bad); !errors.Is(r.Err, consensus.ErrVersionMismatch) {
			t.Fatalf("confirm %s: %v, want a refusal", bad.Serial, r.Err)
		}
	}
	if r := h.apply(command.StageNodeCert{ID: "n2", Serial: "c", Revoke: []string{"serial-n2"}}); !errors.Is(r.Err, consensus.ErrInvalid) {
		t.Fatalf("a stage revoking the current serial: %v, want a refusal", r.Err)
	}
	if r := h.apply(command.StageNodeCert{ID: "n2", Serial: "a"}); !errors.Is(r.Err, consensus.ErrInvalid) {
		t.Fatalf("a stage of a revoked serial: %v, want a refusal", r.Err)
	}
	check("refusals", "serial-n2", "b", []string{"a"}, []string{"serial-n2", "b"})

	h.must(command.ConfirmNodeCert{ID: "n2", Serial: "b"})
	check("confirmed", "b", "", []string{"a", "serial-n2"}, []string{"b"})
	h.must(command.ConfirmNodeCert{ID: "n2", Serial: "b"})
	check("confirmed twice", "b", "", []string{"a", "serial-n2"}, []string{"b"})

	// A removal revokes the pending serial with the current one.
	h.must(command.StageNodeCert{ID: "n2", Serial: "d"})
	h.must(command.RemoveNode{ID: "n2", Now: t0})
	for _, s := range []string{"b", "d"} {
		if !h.store.IsRevoked(s) {
			t.Errorf("removed node's %s not revoked", s)
		}
	}
}

// TestRotationWaitsForConfirmedCert: a CA rotation stops waiting for a
// node when it confirms a certificate of the new CA, not when one is
// issued (it may never reach the node).
func TestRotationWaitsForConfirmedCert(t *testing.T) {
	h := newHarness(t)
	h.bootstrap()
	fp := h.store.Cluster().CAFingerprint
	h.must(command.RotateCA{CACertPEM: []byte("ca2"), CAFingerprint: "fp2", CAKeySealed: []byte("k"), ExpectFingerprint: fp})
	h.must(command.StageNodeCert{ID: "n1", Serial: "new", CAFingerprint: "fp2"})
	if p := h.store.Cluster().RotationPending; len(p) != 1 {
		t.Fatalf("rotation pending %v after an issue, want n1 still", p)
	}
	h.must(command.ConfirmNodeCert{ID: "n1", Serial: "new"})
	if p := h.store.Cluster().RotationPending; len(p) != 0 {
		t.Fatalf("rotation pending %v after n1 confirmed", p)
	}
}

// TestLegacyRenewalReplacesPending: a renewal recorded the way releases
// before pending certificates do (SetNodeCert, while such a member is in
// the cluster) that revokes the pending serial clears it from the record.
func TestLegacyRenewalReplacesPending(t *testing.T) {
	h := newHarness(t)
	h.bootstrap()
	h.must(command.StageNodeCert{ID: "n1", Serial: "p"})
	h.must(command.SetNodeCert{ID: "n1", Serial: "x", Revoke: []string{"serial-n1", "p"}})
	n, err := h.store.Node("n1")
	if err != nil {
		t.Fatal(err)
	}
	if n.CertSerial != "x" || n.PendingCertSerial != "" || !h.store.IsRevoked("p") {
		t.Fatalf("record %s pending %q, p revoked %v", n.CertSerial, n.PendingCertSerial, h.store.IsRevoked("p"))
	}
}
