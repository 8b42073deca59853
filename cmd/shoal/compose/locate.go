package compose

// Where in the compose files a problem is. compose-go names the key of
// most problems (services.web.environment.A) but not the file or line, and
// a port it cannot parse by its value only; StackSpecs names keys too. With
// several -c files merged, the key is looked up in each file, last first
// (later files override earlier ones), so the message can say FILE:LINE.

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v4"
)

var (
	// compose-go's messages that name a key.
	reInterpolate = regexp.MustCompile(`^error while interpolating (\S+): (.*)$`)
	reValidate    = regexp.MustCompile(`^validating (.+?): (\S*) (.*)$`)
	reKeyFirst    = regexp.MustCompile(`^((?:services|networks|volumes|secrets|configs)\.[^\s:]+):? (.*)$`)
	reUnknownKey  = regexp.MustCompile(`^additional properties? (.+) not allowed$`)
	// ...and the ones that name only a bad value.
	reBadValue = regexp.MustCompile(`^invalid (?:hostPort|containerPort|proto|port|range)[^:]*: (.*)$`)
	reVariable = regexp.MustCompile(`variable (\S+) is missing`)
	// mapstructure's decoding errors, one per line: 'services[web].x' why.
	reDecode = regexp.MustCompile(`(?m)^\s*'([^']+)' (.*)$`)
	// the consistency check's: service "web" has neither an image...
	reService = regexp.MustCompile(`^service "([^"]+)" (.*?)(?:: invalid compose project)?$`)
)

// LocateError rewrites err, a problem loading or mapping files,
// so that each part names the file, the line and the key where it can.
func LocateError(err error, files []types.ConfigFile) error {
	var parts []error
	if _, ok := err.(interface{ Unwrap() []error }); ok {
		parts = leafErrors(err)
	} else if m := reDecode.FindAllStringSubmatch(err.Error(), -1); m != nil {
		for _, d := range m {
			path := strings.NewReplacer("[", ".", "]", "").Replace(d[1])
			parts = append(parts, &keyError{Path: path, Err: errors.New(d[2])})
		}
	} else {
		parts = []error{err}
	}
	var msgs []string
	for _, e := range parts {
		msgs = append(msgs, locateOne(e, files))
	}
	if len(msgs) == 1 {
		return fmt.Errorf("%w: %s", ErrBadCompose, msgs[0])
	}
	return fmt.Errorf("%w:\n  %s", ErrBadCompose, strings.Join(msgs, "\n  "))
}

// leafErrors flattens joined errors (StackSpecs' list of *keyError),
// leaving out the ErrBadCompose sentinel they are wrapped with.
func leafErrors(err error) []error {
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return []error{err}
	}
	var out []error
	for _, e := range j.Unwrap() {
		if e != ErrBadCompose {
			out = append(out, leafErrors(e)...)
		}
	}
	return out
}

// locateOne returns the message of one problem as "FILE:LINE: KEY: what".
func locateOne(e error, files []types.ConfigFile) string {
	var path, msg, hint string
	var ke *keyError
	text := strings.TrimPrefix(e.Error(), ErrBadCompose.Error()+": ")
	switch {
	case errors.As(e, &ke):
		path, msg = ke.Path, ke.Err.Error()
	case reInterpolate.MatchString(text):
		m := reInterpolate.FindStringSubmatch(text)
		path, msg = m[1], m[2]
		if v := reVariable.FindStringSubmatch(msg); v != nil {
			hint = v[1]
		}
	case reValidate.MatchString(text), reKeyFirst.MatchString(text):
		if m := reValidate.FindStringSubmatch(text); m != nil {
			path, msg = m[2], m[3]
		} else {
			m := reKeyFirst.FindStringSubmatch(text)
			path, msg = m[1], m[2]
		}
		if msg == "false schema" {
			msg = "unknown key"
		} else if k := reUnknownKey.FindStringSubmatch(msg); k != nil {
			// One unknown key is a path of its own; several stay on their parent.
			if name, err := strconv.Unquote(strings.ReplaceAll(k[1], "'", `"`)); err == nil {
				path = strings.TrimPrefix(path+"."+name, ".")
				msg = "unknown key"
			} else {
				msg = "unknown keys " + k[1]
			}
		}
	case reService.MatchString(text):
		m := reService.FindStringSubmatch(text)
		path, msg = "services."+m[1], m[2]
	case reBadValue.MatchString(text):
		hint = reBadValue.FindStringSubmatch(text)[1]
		path, msg = "services.*.ports.[]", text
	default:
		return text
	}
	file, line, found := findKey(files, path, hint)
	if file == "" {
		// A short form ("6379-6380:80") has no key of its own for the
		// field (published): the line is the item's that holds it.
		if i := strings.LastIndex(path, "."); i > 0 && !strings.Contains(path[i:], "[") {
			file, line, _ = findKey(files, path[:i], hint)
		}
	}
	shown := strings.ReplaceAll(path, ".[]", "[]")
	if found != "" {
		shown = found
	}
	switch {
	case file != "" && line > 0:
		return fmt.Sprintf("%s:%d: %s: %s", file, line, shown, msg)
	case file != "":
		return fmt.Sprintf("%s: %s: %s", file, shown, msg)
	}
	return shown + ": " + msg
}

// findKey looks path up in files, the last file first, and returns the file
// and line holding it and the path with wildcards filled in. A path part
// "*" matches any key, "[]" any list item and "[N]" item N; hint prefers
// the list item whose text contains it.
func findKey(files []types.ConfigFile, path, hint string) (string, int, string) {
	parts := splitKeyPath(path)
	for i := len(files) - 1; i >= 0; i-- {
		var doc yaml.Node
		if err := yaml.Unmarshal(files[i].Content, &doc); err != nil || len(doc.Content) == 0 {
			continue
		}
		if line, found, ok := walkKey(doc.Content[0], parts, hint, ""); ok {
			return files[i].Filename, line, found
		}
	}
	return "", 0, ""
}

// splitKeyPath splits services.web.ports[1].published (or .[] forms) into
// services, web, ports, [1], published.
func splitKeyPath(path string) []string {
	var parts []string
	for _, p := range strings.Split(path, ".") {
		for p != "" {
			i := strings.Index(p, "[")
			switch {
			case i > 0:
				parts = append(parts, p[:i])
				p = p[i:]
			case i == 0:
				j := strings.Index(p, "]")
				if j < 0 {
					parts = append(parts, p)
					p = ""
					continue
				}
				parts = append(parts, p[:j+1])
				p = p[j+1:]
			default:
				parts = append(parts, p)
				p = ""
			}
		}
	}
	return parts
}

// walkKey follows parts from n and returns the line of the last key or
// item it reaches, the concrete path, and whether all parts matched.
func walkKey(n *yaml.Node, parts []string, hint, at string) (int, string, bool) {
	if len(parts) == 0 {
		if hint != "" && !strings.Contains(nodeText(n), hint) {
			return 0, "", false
		}
		return n.Line, at, true
	}
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	p := parts[0]
	switch {
	case n.Kind == yaml.MappingNode && !strings.HasPrefix(p, "["):
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if p != "*" && k.Value != p {
				continue
			}
			next := k.Value
			if at != "" {
				next = at + "." + k.Value
			}
			if line, found, ok := walkKey(n.Content[i+1], parts[1:], hint, next); ok {
				if len(parts) == 1 {
					line = k.Line // the key's own line, not its value's
				}
				return line, found, true
			}
		}
	case n.Kind == yaml.SequenceNode && strings.HasPrefix(p, "["):
		idx, err := strconv.Atoi(strings.Trim(p, "[]"))
		for i, item := range n.Content {
			if p != "[]" && (err != nil || i != idx) {
				continue
			}
			if line, found, ok := walkKey(item, parts[1:], hint, fmt.Sprintf("%s[%d]", at, i)); ok {
				return line, found, true
			}
		}
	}
	return 0, "", false
}

// nodeText is the source text under n, for matching a hint.
func nodeText(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode {
		return n.Value
	}
	var b strings.Builder
	for _, c := range n.Content {
		b.WriteString(nodeText(c))
		b.WriteByte(' ')
	}
	return b.String()
}
