package compose

// Compose secrets and configs → Shoal secrets and configs. The top-level
// secrets: and configs: of a stack become objects named STACK_KEY (or
// their name:), created by `stack deploy` from their file:, environment:
// or content: when missing; external ones must exist already. A service's
// secrets: and configs: (short or long syntax) become FileReferences to
// those names.

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"

	"github.com/compose-spec/compose-go/v2/template"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v4"

	"github.com/shoal-org/shoal/api"
)

// StackObject is a secret or config a stack needs.
type StackObject struct {
	Secret   bool
	Key      string // key under secrets: or configs:
	Name     string // Shoal name
	External bool
	File     string // path of the data (file:), or "" with data set
	Data     []byte // environment: or content:
}

// StackObjects lists the secrets and configs of a project, sorted by kind
// then key, and the problems found (each a *keyError).
func StackObjects(stack string, p *types.Project) ([]StackObject, []error) {
	var out []StackObject
	var errs []error
	add := func(secret bool, key string, c types.FileObjectConfig) {
		kind := "configs"
		if secret {
			kind = "secrets"
		}
		o := StackObject{Secret: secret, Key: key, Name: c.Name, External: bool(c.External)}
		if o.Name == "" || (!o.External && o.Name == p.Name+"_"+key) {
			o.Name = stack + "_" + key
			if o.External {
				o.Name = key
			}
		}
		switch {
		case o.External:
		case c.File != "":
			o.File = c.File
		case c.Environment != "":
			v, ok := p.Environment[c.Environment]
			if !ok {
				errs = append(errs, &keyError{Path: kind + "." + key + ".environment", Err: fmt.Errorf("variable %s is not set", c.Environment)})
			}
			o.Data = []byte(v)
		case c.Content != "":
			o.Data = []byte(c.Content)
		default:
			errs = append(errs, &keyError{Path: kind + "." + key, Err: errors.New("needs file:, environment:, content: or external: true")})
		}
		if pr := api.ObjectNameProblem(o.Name); pr != "" {
			errs = append(errs, &keyError{Path: kind + "." + key, Err: fmt.Errorf("name %q: %s", o.Name, pr)})
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
func serviceFileRefs(objs []StackObject, cs types.ServiceConfig, spec *api.ServiceSpec) []error {
	var errs []error
	base := "services." + cs.Name
	conv := func(key string, secret bool, r types.FileReferenceConfig) (api.FileReference, bool) {
		i := slices.IndexFunc(objs, func(o StackObject) bool { return o.Secret == secret && o.Key == r.Source })
		if i < 0 {
			errs = append(errs, &keyError{Path: key, Err: fmt.Errorf("%s is not defined at the top level", r.Source)})
			return api.FileReference{}, false
		}
		ref := api.FileReference{Source: objs[i].Name, Target: r.Target}
		if !secret && ref.Target == "" {
			ref.Target = "/" + r.Source // compose's default: the key, not the object name
		}
		if r.Mode != nil {
			// FileReferenceProblem checks the bits; uint32() must not wrap
			// a mode out of its range onto valid ones (2^32 + 0444 to 0444).
			if m := *r.Mode; m < 0 || m > math.MaxUint32 {
				errs = append(errs, &keyError{Path: key + ".mode", Err: fmt.Errorf("%d: not a file mode", m)})
			} else {
				ref.Mode = uint32(m)
			}
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

// fileTargetClash refuses a service of one compose file whose secrets: or
// configs: put two different objects at one path in the container
// (api.FileTargetConflict). It reads the file itself because compose-go
// keeps only the last entry per target while it loads a file (its
// EnforceUnicity, made for an override file replacing an entry), so the
// clash never reached StackSpecs and one secret was dropped in silence;
// docker stack deploy refuses it. An override file replacing an entry at
// the same target stays compose's merge, and the same entry twice is
// harmless. Values are interpolated with env; a file that does not parse
// is left to the load, which reports it.
func fileTargetClash(file types.ConfigFile, env types.Mapping) error {
	var doc map[string]any
	if len(file.Content) == 0 || yaml.Unmarshal(file.Content, &doc) != nil {
		return nil
	}
	subst := func(v any) string {
		s, _ := v.(string)
		if out, err := template.Substitute(s, func(k string) (string, bool) { x, ok := env[k]; return x, ok }); err == nil {
			return out
		}
		return s
	}
	refs := func(v any) []api.FileReference {
		list, _ := v.([]any)
		var out []api.FileReference
		for _, e := range list {
			var r api.FileReference
			switch x := e.(type) {
			case string:
				r.Source = subst(x)
			case map[string]any:
				r.Source, r.Target = subst(x["source"]), subst(x["target"])
			default:
				continue
			}
			if !slices.Contains(out, r) {
				out = append(out, r)
			}
		}
		return out
	}
	for _, kind := range []string{"services", "jobs"} {
		services, _ := doc[kind].(map[string]any)
		for _, name := range slices.Sorted(maps.Keys(services)) {
			svc, _ := services[name].(map[string]any)
			if p := api.FileTargetConflict(refs(svc["secrets"]), refs(svc["configs"])); p != "" {
				return &keyError{Path: kind + "." + name, Err: fmt.Errorf("%s: give each file its own target", p)}
			}
		}
	}
	return nil
}
