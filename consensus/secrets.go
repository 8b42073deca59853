package consensus

// Secrets and configs (issue 8) as the store holds them, and their reads.
// A secret's data is only ever stored sealed with the voters' KEK; the
// commands that create and delete them, and the rules they keep, are in
// consensus/fsm (secrets.go).

import (
	"fmt"
	"maps"
	"slices"
	"time"
)

// Tables of secrets and configs (the schema is in store.go).
const (
	TableSecrets = "secrets"
	TableConfigs = "configs"
)

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

// ---- reads ----

// Secrets returns every secret (sealed), ordered by ID.
func (s *Store) Secrets() []*Secret {
	return collect(s.txn(), TableSecrets, IndexID, CloneSecret)
}

// SecretByName returns the secret with this exact name, or ErrNotFound.
func (s *Store) SecretByName(name string) (*Secret, error) {
	raw, _ := s.txn().First(TableSecrets, IndexName, name)
	if raw == nil {
		return nil, fmt.Errorf("secret %s: %w", name, ErrNotFound)
	}
	return CloneSecret(raw.(*Secret)), nil
}

// ResolveSecret finds a secret by exact ID, exact name or unique ID prefix.
func (s *Store) ResolveSecret(ref string) (*Secret, error) {
	return resolveObject(s, TableSecrets, "secret", ref, CloneSecret)
}

// Configs returns every config, ordered by ID.
func (s *Store) Configs() []*ConfigObject {
	return collect(s.txn(), TableConfigs, IndexID, CloneConfig)
}

// ConfigByName returns the config with this exact name, or ErrNotFound.
func (s *Store) ConfigByName(name string) (*ConfigObject, error) {
	raw, _ := s.txn().First(TableConfigs, IndexName, name)
	if raw == nil {
		return nil, fmt.Errorf("config %s: %w", name, ErrNotFound)
	}
	return CloneConfig(raw.(*ConfigObject)), nil
}

// ResolveConfig finds a config by exact ID, exact name or unique ID prefix.
func (s *Store) ResolveConfig(ref string) (*ConfigObject, error) {
	return resolveObject(s, TableConfigs, "config", ref, CloneConfig)
}

func resolveObject[T any](s *Store, table, kind, ref string, clone func(*T) *T) (*T, error) {
	if ref == "" {
		return nil, fmt.Errorf("%s %q: %w", kind, ref, ErrNotFound)
	}
	tx := s.txn()
	if raw, _ := tx.First(table, IndexID, ref); raw != nil {
		return clone(raw.(*T)), nil
	}
	if raw, _ := tx.First(table, IndexName, ref); raw != nil {
		return clone(raw.(*T)), nil
	}
	return uniquePrefix(tx, table, kind, ref, clone)
}

// CloneSecret returns a deep copy of s (nil for nil).
func CloneSecret(s *Secret) *Secret {
	if s == nil {
		return nil
	}
	c := *s
	c.Labels = maps.Clone(s.Labels)
	c.Sealed = slices.Clone(s.Sealed)
	return &c
}

// CloneConfig returns a deep copy of s (nil for nil).
func CloneConfig(s *ConfigObject) *ConfigObject {
	if s == nil {
		return nil
	}
	c := *s
	c.Labels = maps.Clone(s.Labels)
	c.Data = slices.Clone(s.Data)
	return &c
}
