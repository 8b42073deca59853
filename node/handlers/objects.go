package handlers

// The secret and config routes' side of the replica (node/httpapi
// objects.go routes them here). A secret's plaintext travels to the leader
// inside the write and is sealed there (node/writes secrets.go): the replica, and
// so every answer here, holds only its name, size and labels.

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/httpapi"
)

func (x *API) Secrets() ([]api.Secret, error) {
	store, err := x.agent.Store()
	if err != nil {
		return nil, err
	}
	out := []api.Secret{}
	for _, s := range store.Secrets() {
		out = append(out, displaySecret(s))
	}
	return out, nil
}

func (x *API) Secret(ref string) (api.Secret, error) {
	store, err := x.agent.Store()
	if err != nil {
		return api.Secret{}, err
	}
	s, err := store.ResolveSecret(ref)
	if err != nil {
		return api.Secret{}, err
	}
	return displaySecret(s), nil
}

func (x *API) Configs() ([]api.Config, error) {
	store, err := x.agent.Store()
	if err != nil {
		return nil, err
	}
	out := []api.Config{}
	for _, c := range store.Configs() {
		d := displayConfig(c)
		d.Data = nil
		out = append(out, d)
	}
	return out, nil
}

func (x *API) Config(ref string) (api.Config, error) {
	store, err := x.agent.Store()
	if err != nil {
		return api.Config{}, err
	}
	c, err := store.ResolveConfig(ref)
	if err != nil {
		return api.Config{}, err
	}
	return displayConfig(c), nil
}

func (x *API) CheckObject(req api.SecretCreateRequest, secret bool) error {
	return CheckObject(req, secret)
}

func displaySecret(s *consensus.Secret) api.Secret {
	return api.Secret{ID: s.ID, Name: s.Name, CreatedAt: s.CreatedAt, Labels: s.Labels}
}

func displayConfig(c *consensus.ConfigObject) api.Config {
	return api.Config{ID: c.ID, Name: c.Name, CreatedAt: c.CreatedAt, Size: len(c.Data), Labels: c.Labels, Data: c.Data}
}

func kindName(secret bool) string {
	if secret {
		return "secret"
	}
	return "config"
}

// SameNameOtherData is the refusal of a create with KeepSame whose name
// holds other data: objects are immutable, so new data needs a new name.
func SameNameOtherData(kind, name string) string {
	return fmt.Sprintf("%s %s exists with other data, and %ss are immutable: give the new data a new name (or remove the %s first)", kind, name, kind, kind)
}

// CheckObject validates a secret or config create request: name and size.
// The leader checks again what it is forwarded.
func CheckObject(req api.SecretCreateRequest, secret bool) error {
	kind := kindName(secret)
	if p := api.ObjectNameProblem(req.Name); p != "" {
		return fmt.Errorf("%w: %s name %q: %s", consensus.ErrInvalid, kind, req.Name, p)
	}
	if len(req.Data) == 0 {
		return fmt.Errorf("%w: %s %s is empty", consensus.ErrInvalid, kind, req.Name)
	}
	if len(req.Data) > api.MaxSecretSize {
		return fmt.Errorf("%w: %s %s is %d bytes: at most %d (500 KiB) allowed", consensus.ErrInvalid, kind, req.Name, len(req.Data), api.MaxSecretSize)
	}
	return nil
}

func (x *API) CreateObject(ctx context.Context, req api.SecretCreateRequest, secret bool) (any, error) {
	store, err := x.agent.Store()
	if err != nil {
		return nil, err
	}
	kind := kindName(secret)
	id, now := x.agent.NewID(), time.Now().UTC()
	cmd, err := objectCommand(store, req, secret, id, now)
	if err != nil {
		return nil, err
	}
	if cmd == nil { // a config asked to be kept, with this data already
		c, err := store.ConfigByName(req.Name)
		if err != nil {
			return nil, err
		}
		d := displayConfig(c)
		d.Data = nil
		return d, nil
	}
	var kept *consensus.Secret
	if secret && req.KeepSame {
		if s, err := store.SecretByName(req.Name); err == nil {
			// Only the leader can open it to compare (node/writes); it
			// also decides when this replica does not have it yet.
			kept = s
		}
	}
	if err := x.agent.Write(ctx, cmd); err != nil {
		return nil, fmt.Errorf("create %s %s: %w", kind, req.Name, err)
	}
	if kept != nil {
		// The leader found the same data and wrote nothing (or, if the
		// secret was removed meanwhile, created it: either way the name
		// now holds this data).
		return displaySecret(kept), nil
	}
	var out any
	WaitLocal(ctx, store, func() bool {
		if secret {
			s, err := store.ResolveSecret(id)
			if err != nil && req.KeepSame {
				s, err = store.SecretByName(req.Name) // the leader kept it
			}
			if err == nil {
				out = displaySecret(s)
			}
			return err == nil
		}
		c, err := store.ResolveConfig(id)
		if err == nil {
			d := displayConfig(c)
			d.Data = nil
			out = d
		}
		return err == nil
	})
	if out == nil { // committed, but this replica is slow: answer from the request
		out = api.Secret{ID: id, Name: req.Name, CreatedAt: now}
		if !secret {
			out = api.Config{ID: id, Name: req.Name, CreatedAt: now, Size: len(req.Data)}
		}
	}
	return out, nil
}

// objectCommand builds the command that creates a checked secret or
// config, refused when the name is taken: the create route's, and a
// deploy's dry run (check.go).
func objectCommand(store *consensus.Store, req api.SecretCreateRequest, secret bool, id string, now time.Time) (command.Command, error) {
	if secret {
		if _, err := store.SecretByName(req.Name); err == nil && !req.KeepSame {
			return nil, httpapi.BadRequest("a secret named %s already exists (secrets are immutable: remove it first, or use a new name)", req.Name)
		}
		// With KeepSame the leader, which alone can open the stored
		// secret, compares and writes nothing when the data is the same.
		return &command.CreateSecret{Secret: consensus.Secret{ID: id, Name: req.Name, CreatedAt: now, Size: len(req.Data), Labels: req.Labels},
			Plaintext: req.Data, KeepIfSame: req.KeepSame}, nil
	}
	if c, err := store.ConfigByName(req.Name); err == nil {
		if !req.KeepSame {
			return nil, httpapi.BadRequest("a config named %s already exists (configs are immutable: remove it first, or use a new name)", req.Name)
		}
		if !bytes.Equal(c.Data, req.Data) {
			return nil, httpapi.BadRequest("%s", SameNameOtherData("config", req.Name))
		}
		return nil, nil // kept as it is: nothing to write
	}
	return &command.CreateConfig{Config: consensus.ConfigObject{ID: id, Name: req.Name, CreatedAt: now, Labels: req.Labels, Data: req.Data}}, nil
}

func (x *API) RemoveObject(ctx context.Context, ref string, secret bool) error {
	store, err := x.agent.Store()
	if err != nil {
		return err
	}
	var cmd command.Command
	if secret {
		s, err := store.ResolveSecret(ref)
		if err != nil {
			return err
		}
		cmd = &command.DeleteSecret{ID: s.ID}
	} else {
		c, err := store.ResolveConfig(ref)
		if err != nil {
			return err
		}
		cmd = &command.DeleteConfig{ID: c.ID}
	}
	return x.agent.Write(ctx, cmd)
}

// CheckFileRefs validates the secret and config references of a spec
// against the replica: well formed, objects present, and no two files at
// one target (api.FileTargetConflict). The CLI refuses a clash too, but the
// API and the dashboard send specs straight here and to the leader, so this
// is where the rule holds for every caller.
func CheckFileRefs(store *consensus.Store, spec api.ServiceSpec) error {
	check := func(refs []api.FileReference, secret bool) error {
		kind := kindName(secret)
		for _, r := range refs {
			if p := api.FileReferenceProblem(r, secret); p != "" {
				return fmt.Errorf("%s %s: %s", kind, r.Source, p)
			}
			var err error
			if secret {
				_, err = store.SecretByName(r.Source)
			} else {
				_, err = store.ConfigByName(r.Source)
			}
			if err != nil {
				return fmt.Errorf("%s %s not found: create it first (`shoal %s create %s FILE`)", kind, r.Source, kind, r.Source)
			}
		}
		return nil
	}
	if err := check(spec.Secrets, true); err != nil {
		return err
	}
	if err := check(spec.Configs, false); err != nil {
		return err
	}
	if p := api.FileTargetConflict(spec.Secrets, spec.Configs); p != "" {
		return fmt.Errorf("%s: give each file its own target", p)
	}
	return nil
}
