package writes

// Registry credentials of a service (`--with-registry-auth`, issue 8).
//
// They are secret material and follow the path of user secrets
// (secrets.go): the CLI reads them (flags or ~/.docker/config.json) and
// sends them in the clear to its agent over the root-only socket, which
// forwards the create or update to the leader over mutual TLS. The leader,
// a voter, seals them with the KEK, bound to the cluster and the service ID
// (SealRegistryAuth), and proposes only the sealed form: no log entry or
// snapshot holds the password. A node that must pull the image of a task
// asks the leader over wire.MethodSecrets, which answers only the node the task is
// assigned to (SecretsAllowed) and opens the credentials for it; the node
// keeps them in memory for the pull.
//
// Sealing draws a fresh nonce, so re-sealing the same credentials would
// change the spec and roll every task at each `stack deploy`: the leader
// keeps the ciphertext the service already holds when the credentials did
// not change.

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/wire"
)

// aadRegistryAuth binds sealed registry credentials to their cluster and
// service, so that one service's ciphertext cannot be passed off as
// another's.
func aadRegistryAuth(clusterID, serviceID string) []byte {
	return []byte("shoal registry auth\x00" + clusterID + "\x00" + serviceID)
}

// registryPlain is what is sealed.
type registryPlain struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// hasPlaintext reports whether ra holds credentials in the clear.
func hasPlaintext(ra *api.RegistryAuth) bool {
	return ra != nil && (ra.Username != "" || ra.Password != "")
}

// SealRegistryAuth returns the form of ra the log may hold. Credentials in
// the clear are sealed under kek for (clusterID, serviceID), reusing the
// ciphertext of one of prior (the service's current and previous specs)
// that opens to the same credentials; an already sealed ra must open for
// this service. Nil stays nil. It is pure but for the nonce Seal draws.
func SealRegistryAuth(kek []byte, clusterID, serviceID string, ra *api.RegistryAuth, prior ...*api.RegistryAuth) (*api.RegistryAuth, error) {
	if ra == nil {
		return nil, nil
	}
	aad := aadRegistryAuth(clusterID, serviceID)
	if !hasPlaintext(ra) {
		if len(ra.Sealed) == 0 {
			return nil, fmt.Errorf("%w: registry credentials without a username or password", consensus.ErrInvalid)
		}
		if _, err := pki.Open(kek, ra.Sealed, aad); err != nil {
			return nil, fmt.Errorf("%w: the sealed registry credentials are not this service's: %v", consensus.ErrInvalid, err)
		}
		out := *ra
		out.KEKID = pki.KEKID(kek)
		return &out, nil
	}
	if ra.Username == "" || ra.Password == "" {
		return nil, fmt.Errorf("%w: registry credentials need both a username and a password", consensus.ErrInvalid)
	}
	if len(ra.Sealed) > 0 {
		return nil, fmt.Errorf("%w: registry credentials both in the clear and sealed", consensus.ErrInvalid)
	}
	plain, err := json.Marshal(registryPlain{Username: ra.Username, Password: ra.Password})
	if err != nil {
		return nil, err
	}
	for _, p := range prior {
		if p == nil || len(p.Sealed) == 0 || p.Registry != ra.Registry {
			continue
		}
		if got, err := pki.Open(kek, p.Sealed, aad); err == nil && bytes.Equal(got, plain) {
			return &api.RegistryAuth{Registry: ra.Registry, Sealed: bytes.Clone(p.Sealed), KEKID: pki.KEKID(kek)}, nil
		}
	}
	sealed, err := pki.Seal(kek, plain, aad)
	if err != nil {
		return nil, fmt.Errorf("seal registry credentials: %w", err)
	}
	return &api.RegistryAuth{Registry: ra.Registry, Sealed: sealed, KEKID: pki.KEKID(kek)}, nil
}

// OpenRegistryAuth returns the credentials sealed in ra for serviceID, in
// the clear (nil for nil).
func OpenRegistryAuth(kek []byte, clusterID, serviceID string, ra *api.RegistryAuth) (*api.RegistryAuth, error) {
	if ra == nil || len(ra.Sealed) == 0 {
		return nil, nil
	}
	raw, err := pki.Open(kek, ra.Sealed, aadRegistryAuth(clusterID, serviceID))
	if err != nil {
		return nil, fmt.Errorf("open registry credentials: %w", err)
	}
	var p registryPlain
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("open registry credentials: %w", err)
	}
	return &api.RegistryAuth{Registry: ra.Registry, Username: p.Username, Password: p.Password}, nil
}

// sealServiceAuthOnLeader seals the registry credentials of a service
// about to be proposed (create or update; old is the stored service, nil
// for a create). The previous spec must already be sealed: only the new
// spec may bring credentials in the clear.
func (w *Writer) sealServiceAuthOnLeader(svc *api.Service, old *api.Service) error {
	if svc.PreviousSpec != nil && hasPlaintext(svc.PreviousSpec.RegistryAuth) {
		return fmt.Errorf("%w: service %s: the previous spec holds registry credentials in the clear", consensus.ErrInvalid, svc.Name)
	}
	if svc.Spec.RegistryAuth == nil && (svc.PreviousSpec == nil || svc.PreviousSpec.RegistryAuth == nil) {
		return nil
	}
	st := w.cfg.Store.Cluster()
	if st == nil {
		return consensus.ErrNotBootstrapped
	}
	kek, err := w.cfg.KEK(st)
	if err != nil {
		return &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("seal the registry credentials of service %s: %v", svc.Name, err)}
	}
	var prior []*api.RegistryAuth
	if old != nil {
		prior = append(prior, old.Spec.RegistryAuth)
		if old.PreviousSpec != nil {
			prior = append(prior, old.PreviousSpec.RegistryAuth)
		}
	}
	ra, err := SealRegistryAuth(kek, st.ClusterID, svc.ID, svc.Spec.RegistryAuth, prior...)
	if err != nil {
		return fmt.Errorf("service %s: %w", svc.Name, err)
	}
	svc.Spec.RegistryAuth = ra
	if svc.PreviousSpec != nil && svc.PreviousSpec.RegistryAuth != nil {
		prev := *svc.PreviousSpec
		if prev.RegistryAuth, err = SealRegistryAuth(kek, st.ClusterID, svc.ID, prev.RegistryAuth); err != nil {
			return fmt.Errorf("service %s: previous spec: %w", svc.Name, err)
		}
		svc.PreviousSpec = &prev
	}
	return nil
}
