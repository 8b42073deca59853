package main

// Compose secrets and configs → Shoal secrets and configs. The top-level
// secrets: and configs: of a stack become objects named STACK_KEY (or
// their name:), created by `stack deploy` from their file:, environment:
// or content: when missing; external ones must exist already. A service's
// secrets: and configs: (short or long syntax) become FileReferences to
// those names.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/shoal-org/shoal/api"
)

// stackObject is a secret or config a stack needs.
type stackObject struct {
	secret   bool
	key      string // key under secrets: or configs:
	name     string // Shoal name
	external bool
	file     string // path of the data (file:), or "" with data set
	data     []byte // environment: or content:
}

// stackObjects lists the secrets and configs of a project, sorted by kind
// then key, and the problems found (each a *keyError).
func stackObjects(stack string, p *types.Project) ([]stackObject, []error) {
	var out []stackObject
	var errs []error
	add := func(secret bool, key string, c types.FileObjectConfig) {
		kind := "configs"
		if secret {
			kind = "secrets"
		}
		o := stackObject{secret: secret, key: key, name: c.Name, external: bool(c.External)}
		if o.name == "" || (!o.external && o.name == p.Name+"_"+key) {
			o.name = stack + "_" + key
			if o.external {
				o.name = key
			}
		}
		switch {
		case o.external:
		case c.File != "":
			o.file = c.File
		case c.Environment != "":
			v, ok := p.Environment[c.Environment]
			if !ok {
				errs = append(errs, &keyError{Path: kind + "." + key + ".environment", Err: fmt.Errorf("variable %s is not set", c.Environment)})
			}
			o.data = []byte(v)
		case c.Content != "":
			o.data = []byte(c.Content)
		default:
			errs = append(errs, &keyError{Path: kind + "." + key, Err: errors.New("needs file:, environment:, content: or external: true")})
		}
		if pr := api.ObjectNameProblem(o.name); pr != "" {
			errs = append(errs, &keyError{Path: kind + "." + key, Err: fmt.Errorf("name %q: %s", o.name, pr)})
		}
		out = append(out, o)
	}
	for _, k := range slices.Sorted(maps.Keys(p.Configs)) {
		add(false, k, types.FileObjectConfig(p.Configs[k]))
	}
	for _, k := range slices.Sorted(maps.Keys(p.Secrets)) {
		add(true, k, types.FileObjectConfig(p.Secrets[k]))
	}
	return out, errs
}

// serviceFileRefs maps a compose service's secrets: and configs: onto
// spec, naming the stack's objects.
func serviceFileRefs(objs []stackObject, cs types.ServiceConfig, spec *api.ServiceSpec) []error {
	var errs []error
	base := "services." + cs.Name
	conv := func(key string, secret bool, r types.FileReferenceConfig) (api.FileReference, bool) {
		i := slices.IndexFunc(objs, func(o stackObject) bool { return o.secret == secret && o.key == r.Source })
		if i < 0 {
			errs = append(errs, &keyError{Path: key, Err: fmt.Errorf("%s is not defined at the top level", r.Source)})
			return api.FileReference{}, false
		}
		ref := api.FileReference{Source: objs[i].name, Target: r.Target}
		if !secret && ref.Target == "" {
			ref.Target = "/" + r.Source // compose's default: the key, not the object name
		}
		if r.Mode != nil {
			ref.Mode = uint32(*r.Mode)
		}
		for _, id := range []struct {
			s   string
			dst *uint32
			k   string
		}{{r.UID, &ref.UID, ".uid"}, {r.GID, &ref.GID, ".gid"}} {
			if id.s == "" {
				continue
			}
			n, err := strconv.ParseUint(id.s, 10, 32)
			if err != nil {
				errs = append(errs, &keyError{Path: key + id.k, Err: fmt.Errorf("%q: want a number", id.s)})
			}
			*id.dst = uint32(n)
		}
		if secret && ref.Target == "" {
			ref.Target = r.Source
		}
		if p := api.FileReferenceProblem(ref, secret); p != "" {
			errs = append(errs, &keyError{Path: key, Err: errors.New(p)})
		}
		return ref, true
	}
	for i, r := range cs.Secrets {
		if ref, ok := conv(fmt.Sprintf("%s.secrets[%d]", base, i), true, types.FileReferenceConfig(r)); ok {
			spec.Secrets = append(spec.Secrets, ref)
		}
	}
	for i, r := range cs.Configs {
		if ref, ok := conv(fmt.Sprintf("%s.configs[%d]", base, i), false, types.FileReferenceConfig(r)); ok {
			spec.Configs = append(spec.Configs, ref)
		}
	}
	return errs
}

// ensureStackObjects creates the stack's missing secrets and configs (an
// existing one is kept: they are immutable) and checks that external ones
// exist. It reads every file first, so a missing or oversized file
// creates nothing.
func (s *shell) ensureStackObjects(ctx context.Context, cl *api.Client, objs []stackObject) error {
	for i, o := range objs {
		if o.external || o.file == "" {
			continue
		}
		b, err := os.ReadFile(o.file)
		if err != nil {
			return fmt.Errorf("%s %s: %w", kindOf(o), o.key, err)
		}
		objs[i].data = b
	}
	for _, o := range objs {
		if len(o.data) > api.MaxSecretSize {
			return fmt.Errorf("%s %s: %d bytes, at most 500 KiB allowed: nothing was created", kindOf(o), o.key, len(o.data))
		}
	}
	for _, o := range objs {
		var err error
		if o.secret {
			_, err = cl.Secret(ctx, o.name)
		} else {
			_, err = cl.Config(ctx, o.name)
		}
		if err == nil {
			continue
		}
		if o.external {
			return fmt.Errorf("external %s %s not found: create it first (`shoal %s create %s FILE`)", kindOf(o), o.name, kindOf(o), o.name)
		}
		req := api.SecretCreateRequest{Name: o.name, Data: o.data, Labels: map[string]string{stackLabel: stackOf(o.name)}}
		if o.secret {
			_, err = cl.CreateSecret(ctx, req)
		} else {
			_, err = cl.CreateConfig(ctx, req)
		}
		if err != nil {
			return fmt.Errorf("create %s %s: %w", kindOf(o), o.name, err)
		}
		fmt.Fprintf(s.stdout, "Creating %s %s\n", kindOf(o), o.name)
	}
	return nil
}

func kindOf(o stackObject) string {
	if o.secret {
		return "secret"
	}
	return "config"
}

// stackOf is the stack part of a STACK_KEY name.
func stackOf(name string) string {
	for i := 0; i < len(name); i++ {
		if name[i] == '_' {
			return name[:i]
		}
	}
	return name
}

// removeStackObjects removes the secrets and configs `stack deploy` made
// for stack (labelled with its namespace), as `docker stack rm` does; it
// runs after the stack's services are gone, so none is in use by them.
func (s *shell) removeStackObjects(ctx context.Context, cl *api.Client, stack string) error {
	var errs []error
	secrets, err := cl.Secrets(ctx)
	if err != nil {
		return fmt.Errorf("list secrets: %w", err)
	}
	for _, x := range secrets {
		if x.Labels[stackLabel] != stack {
			continue
		}
		fmt.Fprintf(s.stdout, "Removing secret %s\n", x.Name)
		if err := cl.RemoveSecret(ctx, x.ID); err != nil {
			errs = append(errs, fmt.Errorf("remove secret %s: %w", x.Name, err))
		}
	}
	configs, err := cl.Configs(ctx)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("list configs: %w", err))...)
	}
	for _, x := range configs {
		if x.Labels[stackLabel] != stack {
			continue
		}
		fmt.Fprintf(s.stdout, "Removing config %s\n", x.Name)
		if err := cl.RemoveConfig(ctx, x.ID); err != nil {
			errs = append(errs, fmt.Errorf("remove config %s: %w", x.Name, err))
		}
	}
	return errors.Join(errs...)
}
