package fsm

// Secrets and configs (issue 8). A secret's data enters the log only
// sealed with the voters' KEK: the leader seals it before proposing
// (node/secrets.go), and CreateSecret refuses a command that still carries
// the plaintext, so a bug upstream cannot put it in the log. Configs are
// not secret and are stored as given. Both are immutable, their names are
// unique per kind, and one that a service's current spec uses cannot be
// deleted; a service cannot be stored referring to one that does not exist.
// The stored types and their reads are consensus.Secret and
// consensus.ConfigObject.

import (
	"fmt"
	"slices"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

// sealOverhead bounds what sealing adds to a secret (version byte, nonce,
// GCM tag, with room to spare).
const sealOverhead = 64

func applyCreateSecret(w *consensus.WriteTxn, c command.CreateSecret) (any, error) {
	s := consensus.CloneSecret(&c.Secret)
	if len(c.Plaintext) > 0 {
		return nil, fmt.Errorf("create secret %s: the data is not sealed: %w", s.Name, consensus.ErrInvalid)
	}
	if s.ID == "" || len(s.Sealed) == 0 || s.KEKID == "" {
		return nil, fmt.Errorf("create secret %s: ID, KEK ID and sealed data are required: %w", s.Name, consensus.ErrInvalid)
	}
	if s.Size > api.MaxSecretSize || len(s.Sealed) > api.MaxSecretSize+sealOverhead {
		return nil, fmt.Errorf("create secret %s: %d bytes, at most %d allowed: %w", s.Name, s.Size, api.MaxSecretSize, consensus.ErrInvalid)
	}
	if err := checkObjectName(w, consensus.TableSecrets, "secret", s.ID, s.Name); err != nil {
		return nil, err
	}
	s.Version = w.Index()
	if err := w.Insert(consensus.TableSecrets, s); err != nil {
		return nil, err
	}
	return consensus.CloneSecret(s), nil
}

func applyCreateConfig(w *consensus.WriteTxn, c command.CreateConfig) (any, error) {
	cf := consensus.CloneConfig(&c.Config)
	if cf.ID == "" {
		return nil, fmt.Errorf("create config %s: ID is required: %w", cf.Name, consensus.ErrInvalid)
	}
	if len(cf.Data) > api.MaxSecretSize {
		return nil, fmt.Errorf("create config %s: %d bytes, at most %d allowed: %w", cf.Name, len(cf.Data), api.MaxSecretSize, consensus.ErrInvalid)
	}
	if err := checkObjectName(w, consensus.TableConfigs, "config", cf.ID, cf.Name); err != nil {
		return nil, err
	}
	cf.Version = w.Index()
	if err := w.Insert(consensus.TableConfigs, cf); err != nil {
		return nil, err
	}
	return consensus.CloneConfig(cf), nil
}

// checkObjectName refuses an invalid name, a taken name or a taken ID.
func checkObjectName(w *consensus.WriteTxn, table, kind, id, name string) error {
	if p := api.ObjectNameProblem(name); p != "" {
		return fmt.Errorf("create %s: name %q: %s: %w", kind, name, p, consensus.ErrInvalid)
	}
	if raw, _ := w.Txn().First(table, consensus.IndexName, name); raw != nil {
		return fmt.Errorf("create %s: a %s named %s already exists: %w", kind, kind, name, consensus.ErrNameTaken)
	}
	if raw, _ := w.Txn().First(table, consensus.IndexID, id); raw != nil {
		return fmt.Errorf("create %s %s: %w", kind, id, consensus.ErrExists)
	}
	return nil
}

func applyDeleteSecret(w *consensus.WriteTxn, c command.DeleteSecret) (any, error) {
	old := consensus.First[consensus.Secret](w, consensus.TableSecrets, consensus.IndexID, c.ID)
	if old == nil {
		return nil, fmt.Errorf("remove secret %s: %w", c.ID, consensus.ErrNotFound)
	}
	if users := usersOf(w, old.Name, true); len(users) > 0 {
		return nil, fmt.Errorf("remove secret %s: used by service %s: %w", old.Name, joinNames(users), consensus.ErrInUse)
	}
	return nil, w.Delete(consensus.TableSecrets, old)
}

func applyDeleteConfig(w *consensus.WriteTxn, c command.DeleteConfig) (any, error) {
	old := consensus.First[consensus.ConfigObject](w, consensus.TableConfigs, consensus.IndexID, c.ID)
	if old == nil {
		return nil, fmt.Errorf("remove config %s: %w", c.ID, consensus.ErrNotFound)
	}
	if users := usersOf(w, old.Name, false); len(users) > 0 {
		return nil, fmt.Errorf("remove config %s: used by service %s: %w", old.Name, joinNames(users), consensus.ErrInUse)
	}
	return nil, w.Delete(consensus.TableConfigs, old)
}

// usersOf names the services whose current spec references the secret
// (secret true) or config called name, sorted.
func usersOf(w *consensus.WriteTxn, name string, secret bool) []string {
	var out []string
	for _, s := range consensus.All[api.Service](w, consensus.TableServices, consensus.IndexID) {
		refs := s.Spec.Configs
		if secret {
			refs = s.Spec.Secrets
		}
		if slices.ContainsFunc(refs, func(r api.FileReference) bool { return r.Source == name }) {
			out = append(out, s.Name)
		}
	}
	slices.Sort(out)
	return out
}

func joinNames(names []string) string {
	if len(names) > 3 {
		return fmt.Sprintf("%s, %s, %s and %d more", names[0], names[1], names[2], len(names)-3)
	}
	out := ""
	for i, n := range names {
		if i > 0 {
			out += ", "
		}
		out += n
	}
	return out
}

// checkFileRefs refuses a service spec that references a secret or config
// the state does not hold: its tasks could never start.
func checkFileRefs(w *consensus.WriteTxn, spec api.ServiceSpec) error {
	for _, r := range spec.Secrets {
		if raw, _ := w.Txn().First(consensus.TableSecrets, consensus.IndexName, r.Source); raw == nil {
			return fmt.Errorf("secret %s: %w", r.Source, consensus.ErrNotFound)
		}
	}
	for _, r := range spec.Configs {
		if raw, _ := w.Txn().First(consensus.TableConfigs, consensus.IndexName, r.Source); raw == nil {
			return fmt.Errorf("config %s: %w", r.Source, consensus.ErrNotFound)
		}
	}
	return nil
}
