package specflags

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/shoal-org/shoal/api"
)

// parseFileRef parses --secret/--config: NAME, or
// source=NAME[,target=T][,mode=0400][,uid=U][,gid=G] (src, dst as
// Docker's aliases).
func parseFileRef(v string, secret bool) (api.FileReference, error) {
	var r api.FileReference
	if !strings.Contains(v, "=") {
		r.Source = v
	} else {
		for _, kv := range strings.Split(v, ",") {
			k, val, ok := strings.Cut(kv, "=")
			if !ok {
				return r, fmt.Errorf("%q: want key=value", kv)
			}
			// Keys are matched case-blind and trimmed, as Docker's parser does;
			// the uid/gid branch below must use the same normalised key, or
			// "UID=1000" would set the gid.
			k = strings.ToLower(strings.TrimSpace(k))
			switch k {
			case "source", "src":
				r.Source = val
			case "target", "dst", "destination":
				r.Target = val
			case "mode":
				m, err := strconv.ParseUint(val, 8, 32)
				if err != nil {
					return r, fmt.Errorf("mode %q: want an octal number such as 0400", val)
				}
				r.Mode = uint32(m)
			case "uid", "gid":
				n, err := strconv.ParseUint(val, 10, 32)
				if err != nil {
					return r, fmt.Errorf("%s %q: want a number", k, val)
				}
				if k == "uid" {
					r.UID = uint32(n)
				} else {
					r.GID = uint32(n)
				}
			default:
				return r, fmt.Errorf("unknown key %q (want source, target, mode, uid, gid)", k)
			}
		}
	}
	if p := api.FileReferenceProblem(r, secret); p != "" {
		return r, errors.New(p)
	}
	return r, nil
}

// addFileRefs adds parsed references to refs (secrets when secret is
// true, else configs). other holds the references of the other kind, which
// share the container's filesystem. Adding the same source at the same
// target again is idempotent (its mode, uid and gid are the new ones); a
// different source at a target refs or other already uses is refused,
// as Docker does: merging it would silently drop the file that was there.
func addFileRefs(refs, other []api.FileReference, values []string, secret bool) ([]api.FileReference, error) {
	refs = slices.Clone(refs)
	for _, v := range values {
		r, err := parseFileRef(v, secret)
		if err != nil {
			return refs, err
		}
		t := api.FileTarget(r, secret)
		if i := slices.IndexFunc(refs, func(x api.FileReference) bool { return api.FileTarget(x, secret) == t }); i >= 0 {
			if refs[i].Source != r.Source {
				return refs, fmt.Errorf("%q: target %s is already used by %s %s", v, t, kindOf(secret), refs[i].Source)
			}
			refs[i] = r
			continue
		}
		if i := slices.IndexFunc(other, func(x api.FileReference) bool { return api.FileTarget(x, !secret) == t }); i >= 0 {
			return refs, fmt.Errorf("%q: target %s is already used by %s %s", v, t, kindOf(!secret), other[i].Source)
		}
		refs = append(refs, r)
	}
	return refs, nil
}

// kindOf names a secret (true) or config reference in messages.
func kindOf(secret bool) string {
	if secret {
		return "secret"
	}
	return "config"
}

// removeFileRefs drops the references to the named secrets or configs.
func removeFileRefs(refs []api.FileReference, names []string, kind string) ([]api.FileReference, error) {
	for _, n := range names {
		if !slices.ContainsFunc(refs, func(x api.FileReference) bool { return x.Source == n }) {
			return refs, notInSpec(kind+"-rm", n, kind, mapSlice(refs, func(x api.FileReference) string { return x.Source }))
		}
	}
	return slices.DeleteFunc(refs, func(x api.FileReference) bool { return slices.Contains(names, x.Source) }), nil
}
