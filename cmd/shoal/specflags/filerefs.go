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

// addFileRefs adds parsed references to refs, replacing one with the same
// target.
func addFileRefs(refs []api.FileReference, values []string, secret bool) ([]api.FileReference, error) {
	target := api.ConfigTarget
	if secret {
		target = api.SecretTarget
	}
	for _, v := range values {
		r, err := parseFileRef(v, secret)
		if err != nil {
			return refs, err
		}
		refs = slices.DeleteFunc(refs, func(x api.FileReference) bool { return target(x) == target(r) })
		refs = append(refs, r)
	}
	return refs, nil
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
