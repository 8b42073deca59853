package consensus

// Secrets and configs (issue 8). A secret's data enters the log only
// sealed with the voters' KEK: the leader seals it before proposing
// (node/secrets.go), and CreateSecret refuses a command that still carries
// the plaintext, so a bug upstream cannot put it in the log. Configs are
// not secret and are stored as given. Both are immutable, their names are
// unique per kind, and one that a service's current spec uses cannot be
// deleted; a service cannot be stored referring to one that does not exist.

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/shoal-org/shoal/api"
)

const (
	tableSecrets = "secrets"
	tableConfigs = "configs"
)

// sealOverhead bounds what sealing adds to a secret (version byte, nonce,
// GCM tag, with room to spare).
const sealOverhead = 64

// Secret is a user secret as the replicated state holds it.
type Secret struct {
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	CreatedAt time.Time         `json:"created_at"`
	Labels    map[string]string `json:"labels,omitempty"`
	// Size is the length of the plaintext.
	Size int `json:"size"`
	// KEKID names the KEK that sealed the data; Sealed is the data sealed
	// with it (node/pki.Seal), bound to the cluster and this secret's ID.
	KEKID  string `json:"kek_id"`
	Sealed []byte `json:"sealed"`
	// Version is the log index that created it.
	Version uint64 `json:"version"`
}

// ConfigObject is a config as the replicated state holds it.
type ConfigObject struct {
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	CreatedAt time.Time         `json:"created_at"`
	Labels    map[string]string `json:"labels,omitempty"`
	Data      []byte            `json:"data"`
	Version   uint64            `json:"version"`
}

// CreateSecret stores a new secret. Secret.Sealed must be set and
// Plaintext empty: Plaintext only carries the data from the node that
// received the request to the leader, which seals it and clears the field
// before proposing; the FSM refuses a command that still holds it.
type CreateSecret struct {
	Secret    Secret `json:"secret"`
	Plaintext []byte `json:"plaintext,omitempty"`
}

// DeleteSecret removes a secret; refused while a service uses it.
type DeleteSecret struct {
	ID string `json:"id"`
}

// CreateConfig stores a new config.
type CreateConfig struct {
	Config ConfigObject `json:"config"`
}

// DeleteConfig removes a config; refused while a service uses it.
type DeleteConfig struct {
	ID string `json:"id"`
}

// Type implements Command.
func (CreateSecret) Type() CommandType { return TypeCreateSecret }

// Type implements Command.
func (DeleteSecret) Type() CommandType { return TypeDeleteSecret }

// Type implements Command.
func (CreateConfig) Type() CommandType { return TypeCreateConfig }

// Type implements Command.
func (DeleteConfig) Type() CommandType { return TypeDeleteConfig }

func (c CreateSecret) apply(w *writeTxn) (any, error) {
	s := cloneSecret(&c.Secret)
	if len(c.Plaintext) > 0 {
		return nil, fmt.Errorf("create secret %s: the data is not sealed: %w", s.Name, ErrInvalid)
	}
	if s.ID == "" || len(s.Sealed) == 0 || s.KEKID == "" {
		return nil, fmt.Errorf("create secret %s: ID, KEK ID and sealed data are required: %w", s.Name, ErrInvalid)
	}
	if s.Size > api.MaxSecretSize || len(s.Sealed) > api.MaxSecretSize+sealOverhead {
		return nil, fmt.Errorf("create secret %s: %d bytes, at most %d allowed: %w", s.Name, s.Size, api.MaxSecretSize, ErrInvalid)
	}
	if err := checkObjectName(w, tableSecrets, "secret", s.ID, s.Name); err != nil {
		return nil, err
	}
	s.Version = w.index
	if err := w.insert(tableSecrets, s); err != nil {
		return nil, err
	}
	return cloneSecret(s), nil
}

func (c CreateConfig) apply(w *writeTxn) (any, error) {
	cf := cloneConfig(&c.Config)
	if cf.ID == "" {
		return nil, fmt.Errorf("create config %s: ID is required: %w", cf.Name, ErrInvalid)
	}
	if len(cf.Data) > api.MaxSecretSize {
		return nil, fmt.Errorf("create config %s: %d bytes, at most %d allowed: %w", cf.Name, len(cf.Data), api.MaxSecretSize, ErrInvalid)
	}
	if err := checkObjectName(w, tableConfigs, "config", cf.ID, cf.Name); err != nil {
		return nil, err
	}
	cf.Version = w.index
	if err := w.insert(tableConfigs, cf); err != nil {
		return nil, err
	}
	return cloneConfig(cf), nil
}

// checkObjectName refuses an invalid name, a taken name or a taken ID.
func checkObjectName(w *writeTxn, table, kind, id, name string) error {
	if p := api.ObjectNameProblem(name); p != "" {
		return fmt.Errorf("create %s: name %q: %s: %w", kind, name, p, ErrInvalid)
	}
	if raw, _ := w.tx.First(table, indexName, name); raw != nil {
		return fmt.Errorf("create %s: a %s named %s already exists: %w", kind, kind, name, ErrNameTaken)
	}
	if raw, _ := w.tx.First(table, indexID, id); raw != nil {
		return fmt.Errorf("create %s %s: %w", kind, id, ErrExists)
	}
	return nil
}

func (c DeleteSecret) apply(w *writeTxn) (any, error) {
	old := first[Secret](w, tableSecrets, indexID, c.ID)
	if old == nil {
		return nil, fmt.Errorf("remove secret %s: %w", c.ID, ErrNotFound)
	}
	if users := usersOf(w, old.Name, true); len(users) > 0 {
		return nil, fmt.Errorf("remove secret %s: used by service %s: %w", old.Name, joinNames(users), ErrInUse)
	}
	return nil, w.delete(tableSecrets, old)
}

func (c DeleteConfig) apply(w *writeTxn) (any, error) {
	old := first[ConfigObject](w, tableConfigs, indexID, c.ID)
	if old == nil {
		return nil, fmt.Errorf("remove config %s: %w", c.ID, ErrNotFound)
	}
	if users := usersOf(w, old.Name, false); len(users) > 0 {
		return nil, fmt.Errorf("remove config %s: used by service %s: %w", old.Name, joinNames(users), ErrInUse)
	}
	return nil, w.delete(tableConfigs, old)
}

// usersOf names the services whose current spec references the secret
// (secret true) or config called name, sorted.
func usersOf(w *writeTxn, name string, secret bool) []string {
	var out []string
	for _, s := range all[api.Service](w, tableServices, indexID) {
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
func checkFileRefs(w *writeTxn, spec api.ServiceSpec) error {
	for _, r := range spec.Secrets {
		if raw, _ := w.tx.First(tableSecrets, indexName, r.Source); raw == nil {
			return fmt.Errorf("secret %s: %w", r.Source, ErrNotFound)
		}
	}
	for _, r := range spec.Configs {
		if raw, _ := w.tx.First(tableConfigs, indexName, r.Source); raw == nil {
			return fmt.Errorf("config %s: %w", r.Source, ErrNotFound)
		}
	}
	return nil
}

// ---- reads ----

// Secrets returns every secret (sealed), ordered by ID.
func (s *Store) Secrets() []*Secret {
	return collect(s.txn(), tableSecrets, indexID, cloneSecret)
}

// SecretByName returns the secret with this exact name, or ErrNotFound.
func (s *Store) SecretByName(name string) (*Secret, error) {
	raw, _ := s.txn().First(tableSecrets, indexName, name)
	if raw == nil {
		return nil, fmt.Errorf("secret %s: %w", name, ErrNotFound)
	}
	return cloneSecret(raw.(*Secret)), nil
}

// ResolveSecret finds a secret by exact ID, exact name or unique ID prefix.
func (s *Store) ResolveSecret(ref string) (*Secret, error) {
	return resolveObject(s, tableSecrets, "secret", ref, cloneSecret)
}

// Configs returns every config, ordered by ID.
func (s *Store) Configs() []*ConfigObject {
	return collect(s.txn(), tableConfigs, indexID, cloneConfig)
}

// ConfigByName returns the config with this exact name, or ErrNotFound.
func (s *Store) ConfigByName(name string) (*ConfigObject, error) {
	raw, _ := s.txn().First(tableConfigs, indexName, name)
	if raw == nil {
		return nil, fmt.Errorf("config %s: %w", name, ErrNotFound)
	}
	return cloneConfig(raw.(*ConfigObject)), nil
}

// ResolveConfig finds a config by exact ID, exact name or unique ID prefix.
func (s *Store) ResolveConfig(ref string) (*ConfigObject, error) {
	return resolveObject(s, tableConfigs, "config", ref, cloneConfig)
}

func resolveObject[T any](s *Store, table, kind, ref string, clone func(*T) *T) (*T, error) {
	if ref == "" {
		return nil, fmt.Errorf("%s %q: %w", kind, ref, ErrNotFound)
	}
	tx := s.txn()
	if raw, _ := tx.First(table, indexID, ref); raw != nil {
		return clone(raw.(*T)), nil
	}
	if raw, _ := tx.First(table, indexName, ref); raw != nil {
		return clone(raw.(*T)), nil
	}
	return uniquePrefix(tx, table, kind, ref, clone)
}

func cloneSecret(s *Secret) *Secret {
	if s == nil {
		return nil
	}
	c := *s
	c.Labels = maps.Clone(s.Labels)
	c.Sealed = slices.Clone(s.Sealed)
	return &c
}

func cloneConfig(s *ConfigObject) *ConfigObject {
	if s == nil {
		return nil
	}
	c := *s
	c.Labels = maps.Clone(s.Labels)
	c.Data = slices.Clone(s.Data)
	return &c
}
