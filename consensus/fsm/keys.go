package fsm

import (
	"fmt"
	"slices"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

func applySealClusterKeys(w *consensus.WriteTxn, c command.SealClusterKeys) (any, error) {
	cl, err := w.Cluster()
	if err != nil {
		return nil, fmt.Errorf("seal cluster keys: %w", err)
	}
	if c.KEKID == "" || len(c.CAKeySealed) == 0 || c.CAFingerprint == "" {
		return nil, fmt.Errorf("seal cluster keys: KEK ID, sealed CA key and CA fingerprint are required: %w", consensus.ErrInvalid)
	}
	if cl.TokenSecret != "" && len(c.TokenSecretSealed) == 0 {
		return nil, fmt.Errorf("seal cluster keys: the join secret is not sealed: %w", consensus.ErrInvalid)
	}
	cl.KEKID = c.KEKID
	cl.CAKeySealed = slices.Clone(c.CAKeySealed)
	cl.CAFingerprint = c.CAFingerprint
	if len(c.TokenSecretSealed) > 0 {
		cl.TokenSecretSealed = slices.Clone(c.TokenSecretSealed)
	}
	cl.CAKeyPEM = nil
	cl.TokenSecret = ""
	return nil, w.PutCluster(cl)
}

func applyRotateCA(w *consensus.WriteTxn, c command.RotateCA) (any, error) {
	cl, err := w.Cluster()
	if err != nil {
		return nil, fmt.Errorf("rotate CA: %w", err)
	}
	if len(c.CACertPEM) == 0 || len(c.CAKeySealed) == 0 || c.CAFingerprint == "" {
		return nil, fmt.Errorf("rotate CA: certificate, sealed key and fingerprint are required: %w", consensus.ErrInvalid)
	}
	if len(cl.PrevCACertPEM) > 0 {
		return nil, fmt.Errorf("rotate CA: a rotation is under way (%d nodes have no new certificate yet): %w",
			len(cl.RotationPending), consensus.ErrInUse)
	}
	if c.ExpectFingerprint != cl.CAFingerprint {
		return nil, fmt.Errorf("rotate CA: the current CA is %s, not %s: %w", cl.CAFingerprint, c.ExpectFingerprint, consensus.ErrVersionMismatch)
	}
	cl.PrevCACertPEM = cl.CACertPEM
	cl.CACertPEM = slices.Clone(c.CACertPEM)
	cl.CAFingerprint = c.CAFingerprint
	cl.CAKeySealed = slices.Clone(c.CAKeySealed)
	cl.CAKeyPEM = nil
	cl.CACrossPEM = slices.Clone(c.CACrossPEM)
	cl.RotationPending = nil
	for _, n := range consensus.All[api.Node](w, consensus.TableNodes, consensus.IndexID) {
		cl.RotationPending = append(cl.RotationPending, n.ID)
	}
	slices.Sort(cl.RotationPending)
	return nil, w.PutCluster(cl)
}

func applyFinishCARotation(w *consensus.WriteTxn, c command.FinishCARotation) (any, error) {
	cl, err := w.Cluster()
	if err != nil {
		return nil, fmt.Errorf("finish CA rotation: %w", err)
	}
	if c.CAFingerprint != cl.CAFingerprint || len(cl.PrevCACertPEM) == 0 {
		return nil, nil
	}
	cl.PrevCACertPEM = nil
	cl.CACrossPEM = nil
	cl.RotationPending = nil
	return nil, w.PutCluster(cl)
}

func applySetNodeCert(w *consensus.WriteTxn, c command.SetNodeCert) (any, error) {
	if c.ID == "" || c.Serial == "" {
		return nil, fmt.Errorf("set node certificate: ID and serial are required: %w", consensus.ErrInvalid)
	}
	old := consensus.First[api.Node](w, consensus.TableNodes, consensus.IndexID, c.ID)
	if old == nil {
		return nil, fmt.Errorf("set node %s certificate: %w", c.ID, consensus.ErrNotFound)
	}
	cl, err := w.Cluster()
	if err != nil {
		return nil, fmt.Errorf("set node %s certificate: %w", c.ID, err)
	}
	if cl.IsRevoked(c.Serial) {
		return nil, fmt.Errorf("set node %s certificate: serial %s is revoked: %w", c.ID, c.Serial, consensus.ErrInvalid)
	}
	n := consensus.CloneNode(old)
	n.CertSerial = c.Serial
	if n.PendingCertSerial != "" && (n.PendingCertSerial == c.Serial || slices.Contains(c.Revoke, n.PendingCertSerial)) {
		// A renewal recorded as releases before pending certificates
		// do (a member of level 2 joined since) replaces the pending one.
		n.PendingCertSerial, n.PendingCertCA = "", ""
	}
	n.Version = w.Index()
	if err := w.Insert(consensus.TableNodes, n); err != nil {
		return nil, err
	}
	changed := false
	for _, s := range c.Revoke {
		if s != "" && s != c.Serial && !cl.IsRevoked(s) {
			cl.Revoked = append(cl.Revoked, s)
			changed = true
		}
	}
	if c.CAFingerprint != "" && c.CAFingerprint == cl.CAFingerprint {
		if i := slices.Index(cl.RotationPending, c.ID); i >= 0 {
			cl.RotationPending = slices.Delete(cl.RotationPending, i, i+1)
			changed = true
		}
	}
	if !changed {
		return nil, nil
	}
	return nil, w.PutCluster(cl)
}

// Renewals of protocol level 3 (command.StageNodeCert, ConfirmNodeCert):
// the certificate a renewal signs is only pending until the node confirms
// it installed it, and only then is the one it replaces revoked. Before,
// SetNodeCert revoked it in the same entry, and a node whose answer was
// lost (a leader change while committing, a timeout, a full disk, kill -9)
// kept only a revoked certificate: out of the cluster for good.

func applyStageNodeCert(w *consensus.WriteTxn, c command.StageNodeCert) (any, error) {
	if c.ID == "" || c.Serial == "" {
		return nil, fmt.Errorf("stage node certificate: ID and serial are required: %w", consensus.ErrInvalid)
	}
	old := consensus.First[api.Node](w, consensus.TableNodes, consensus.IndexID, c.ID)
	if old == nil {
		return nil, fmt.Errorf("stage node %s certificate: %w", c.ID, consensus.ErrNotFound)
	}
	cl, err := w.Cluster()
	if err != nil {
		return nil, fmt.Errorf("stage node %s certificate: %w", c.ID, err)
	}
	if cl.IsRevoked(c.Serial) || c.Serial == old.CertSerial {
		return nil, fmt.Errorf("stage node %s certificate: serial %s is revoked or current: %w", c.ID, c.Serial, consensus.ErrInvalid)
	}
	if slices.Contains(c.Revoke, old.CertSerial) {
		return nil, fmt.Errorf("stage node %s certificate: would revoke the current serial %s: %w", c.ID, old.CertSerial, consensus.ErrInvalid)
	}
	revoke := slices.Clone(c.Revoke)
	if p := old.PendingCertSerial; p != "" && p != c.Serial && !slices.Contains(revoke, p) {
		// At most one pending serial: the one it replaces was never
		// confirmed, so no node can rely on it.
		revoke = append(revoke, p)
	}
	n := consensus.CloneNode(old)
	n.PendingCertSerial, n.PendingCertCA = c.Serial, c.CAFingerprint
	n.Version = w.Index()
	if err := w.Insert(consensus.TableNodes, n); err != nil {
		return nil, err
	}
	changed := false
	for _, s := range revoke {
		if s != "" && s != c.Serial && !cl.IsRevoked(s) {
			cl.Revoked = append(cl.Revoked, s)
			changed = true
		}
	}
	if !changed {
		return nil, nil
	}
	return nil, w.PutCluster(cl)
}

func applyConfirmNodeCert(w *consensus.WriteTxn, c command.ConfirmNodeCert) (any, error) {
	if c.ID == "" || c.Serial == "" {
		return nil, fmt.Errorf("confirm node certificate: ID and serial are required: %w", consensus.ErrInvalid)
	}
	old := consensus.First[api.Node](w, consensus.TableNodes, consensus.IndexID, c.ID)
	if old == nil {
		return nil, fmt.Errorf("confirm node %s certificate: %w", c.ID, consensus.ErrNotFound)
	}
	if old.CertSerial == c.Serial && old.PendingCertSerial == "" {
		return nil, nil // confirmed already (a retried confirmation)
	}
	if old.PendingCertSerial != c.Serial {
		return nil, fmt.Errorf("confirm node %s certificate: serial %s is not its pending one (%q): %w",
			c.ID, c.Serial, old.PendingCertSerial, consensus.ErrVersionMismatch)
	}
	cl, err := w.Cluster()
	if err != nil {
		return nil, fmt.Errorf("confirm node %s certificate: %w", c.ID, err)
	}
	if cl.IsRevoked(c.Serial) {
		return nil, fmt.Errorf("confirm node %s certificate: serial %s is revoked: %w", c.ID, c.Serial, consensus.ErrInvalid)
	}
	n := consensus.CloneNode(old)
	n.CertSerial, n.PendingCertSerial, n.PendingCertCA = c.Serial, "", ""
	n.Version = w.Index()
	if err := w.Insert(consensus.TableNodes, n); err != nil {
		return nil, err
	}
	if old.CertSerial != "" && old.CertSerial != c.Serial && !cl.IsRevoked(old.CertSerial) {
		cl.Revoked = append(cl.Revoked, old.CertSerial)
	}
	// A CA rotation waits for installed certificates, not issued ones.
	if old.PendingCertCA != "" && old.PendingCertCA == cl.CAFingerprint {
		if i := slices.Index(cl.RotationPending, c.ID); i >= 0 {
			cl.RotationPending = slices.Delete(cl.RotationPending, i, i+1)
		}
	}
	return nil, w.PutCluster(cl)
}

func applySetGossipKeys(w *consensus.WriteTxn, c command.SetGossipKeys) (any, error) {
	cl, err := w.Cluster()
	if err != nil {
		return nil, fmt.Errorf("set gossip keys: %w", err)
	}
	if len(c.Keys) == 0 {
		return nil, fmt.Errorf("set gossip keys: empty keyring: %w", consensus.ErrInvalid)
	}
	for i, k := range c.Keys {
		if l := len(k); l != 16 && l != 24 && l != 32 {
			return nil, fmt.Errorf("set gossip keys: key %d has %d bytes (want 16, 24 or 32): %w", i, l, consensus.ErrInvalid)
		}
	}
	cl.GossipKeys = consensus.CloneCluster(&consensus.ClusterState{GossipKeys: c.Keys}).GossipKeys
	return nil, w.PutCluster(cl)
}

func applyRevokeCert(w *consensus.WriteTxn, c command.RevokeCert) (any, error) {
	cl, err := w.Cluster()
	if err != nil {
		return nil, fmt.Errorf("revoke cert: %w", err)
	}
	if c.Serial == "" {
		return nil, fmt.Errorf("revoke cert: empty serial: %w", consensus.ErrInvalid)
	}
	if cl.IsRevoked(c.Serial) {
		return nil, nil
	}
	cl.Revoked = append(cl.Revoked, c.Serial)
	return nil, w.PutCluster(cl)
}

// Certificate expiries and the revocation trim. The FSM reads no clock:
// the leader says in TrimRevoked which moment has passed. Both commands
// are of protocol level 2, so every replica that holds an expiry applies
// every entry that reads one the same way (applyRemoveNode forgets the
// expiry of a removed node's serial; in a log of level 1 there is none).

func applyRecordCertExpiry(w *consensus.WriteTxn, c command.RecordCertExpiry) (any, error) {
	if c.Serial == "" || c.NotAfter.IsZero() {
		return nil, fmt.Errorf("record certificate expiry: serial and expiry are required: %w", consensus.ErrInvalid)
	}
	cl, err := w.Cluster()
	if err != nil {
		return nil, fmt.Errorf("record certificate %s expiry: %w", c.Serial, err)
	}
	if cl.IsRevoked(c.Serial) {
		return nil, fmt.Errorf("record certificate %s expiry: the serial is revoked: %w", c.Serial, consensus.ErrInvalid)
	}
	if old, ok := cl.CertExpiry[c.Serial]; ok && old.Equal(c.NotAfter) {
		return nil, nil
	}
	if cl.CertExpiry == nil {
		cl.CertExpiry = map[string]time.Time{}
	}
	cl.CertExpiry[c.Serial] = c.NotAfter
	return nil, w.PutCluster(cl)
}

func applyTrimRevoked(w *consensus.WriteTxn, c command.TrimRevoked) (any, error) {
	if c.ExpiredBefore.IsZero() {
		return nil, fmt.Errorf("trim revocations: no time given: %w", consensus.ErrInvalid)
	}
	cl, err := w.Cluster()
	if err != nil {
		return nil, fmt.Errorf("trim revocations: %w", err)
	}
	current := map[string]bool{}
	for _, n := range consensus.All[api.Node](w, consensus.TableNodes, consensus.IndexID) {
		current[n.CertSerial] = true
		if n.PendingCertSerial != "" {
			current[n.PendingCertSerial] = true
		}
	}
	gone := cl.ExpiredCerts(c.ExpiredBefore, func(s string) bool { return current[s] })
	drop := make(map[string]bool, len(gone))
	for _, s := range gone {
		drop[s] = true
		delete(cl.CertExpiry, s)
	}
	before := len(cl.Revoked)
	cl.Revoked = slices.DeleteFunc(cl.Revoked, func(s string) bool { return drop[s] })
	// Bound the serials of unknown expiry (TrimRevoked.UnknownUntil):
	// without it they stayed listed for good, and the list only grew.
	bounded := false
	if !c.UnknownUntil.IsZero() {
		for _, s := range cl.Revoked {
			if _, ok := cl.CertExpiry[s]; ok {
				continue
			}
			if cl.CertExpiry == nil {
				cl.CertExpiry = map[string]time.Time{}
			}
			cl.CertExpiry[s] = c.UnknownUntil
			bounded = true
		}
	}
	if len(gone) == 0 && !bounded {
		return 0, nil
	}
	return before - len(cl.Revoked), w.PutCluster(cl)
}

func applySetVoterTarget(w *consensus.WriteTxn, c command.SetVoterTarget) (any, error) {
	cl, err := w.Cluster()
	if err != nil {
		return nil, fmt.Errorf("set voter target: %w", err)
	}
	if c.Target < 0 {
		return nil, fmt.Errorf("set voter target %d: %w", c.Target, consensus.ErrInvalid)
	}
	cl.VoterTarget = c.Target
	return nil, w.PutCluster(cl)
}
