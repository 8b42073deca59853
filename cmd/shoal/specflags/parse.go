package specflags

// Client-side parsing of the values users type on the command line. The
// agent validates again; parsing here gives errors before any request and
// names the offending flag.

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/shoal-org/shoal/api"
)

// Parse errors, wrapped with the offending value.
var (
	errBadSize       = errors.New("invalid size")
	errBadCPUs       = errors.New("invalid CPU count")
	errBadPublish    = errors.New("invalid publish spec")
	errBadConstraint = errors.New("invalid constraint")
	errBadKeyValue   = errors.New("invalid KEY=VALUE")
	errBadTime       = errors.New("invalid time")
	errBadQuote      = errors.New("unterminated quote")
)

// ParseSize turns "64M", "1g", "512k", "1.5GiB" or "100" (bytes) into bytes,
// with binary multiples as Docker does for memory.
func ParseSize(s string) (int64, error) {
	in := strings.TrimSpace(s)
	lower := strings.ToLower(in)
	lower = strings.TrimSuffix(lower, "ib")
	lower = strings.TrimSuffix(lower, "b")
	if lower == "" {
		return 0, fmt.Errorf("%w %q", errBadSize, s)
	}
	mult := int64(1)
	switch lower[len(lower)-1] {
	case 'k':
		mult = 1 << 10
	case 'm':
		mult = 1 << 20
	case 'g':
		mult = 1 << 30
	case 't':
		mult = 1 << 40
	}
	num := lower
	if mult != 1 {
		num = lower[:len(lower)-1]
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) || strings.ContainsAny(num, "eE+-x") {
		return 0, fmt.Errorf("%w %q: want a number with an optional k, m, g or t suffix", errBadSize, s)
	}
	v := f * float64(mult)
	if v >= math.MaxInt64 {
		return 0, fmt.Errorf("%w %q: too large", errBadSize, s)
	}
	return int64(v), nil
}

// ParseCPUs turns a CPU count like "0.5" into nano CPUs (500000000).
func ParseCPUs(s string) (int64, error) {
	in := strings.TrimSpace(s)
	f, err := strconv.ParseFloat(in, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) || strings.ContainsAny(in, "eExX") {
		return 0, fmt.Errorf("%w %q: want a non-negative decimal like 0.5", errBadCPUs, s)
	}
	if dot := strings.IndexByte(in, '.'); dot >= 0 && len(in)-dot-1 > 9 {
		return 0, fmt.Errorf("%w %q: at most 9 decimal places", errBadCPUs, s)
	}
	n := math.Round(f * 1e9)
	if n >= math.MaxInt64 {
		return 0, fmt.Errorf("%w %q: too large", errBadCPUs, s)
	}
	return int64(n), nil
}

// parsePublish parses "P:T[/proto]", "T[/proto]" or the long form
// "[published=P,]target=T[,protocol=udp][,mode=host]". Without P (also
// "published=" empty) the published port is 0: the cluster picks one of
// api.AutoPortMin-AutoPortMax, as Swarm does, and keeps it across updates.
func parsePublish(s string) (api.PortConfig, error) {
	pc := api.PortConfig{Protocol: "tcp"}
	bad := func(why string) (api.PortConfig, error) {
		return api.PortConfig{}, fmt.Errorf("%w %q: %s", errBadPublish, s, why)
	}
	// port parses one port; why says what is wrong with it, naming a
	// range (docker's 8080-8081:80-81) as unsupported rather than as a
	// number out of range.
	port := func(kind, v string) (int, string) {
		v = strings.TrimSpace(v)
		n, err := strconv.Atoi(v)
		switch {
		case err == nil && n >= 1 && n <= 65535:
			return n, ""
		case err == nil:
			return 0, fmt.Sprintf("%s port %d: must be 1-65535", kind, n)
		case v == "":
			return 0, "missing " + kind + " port"
		}
		if lo, hi, ok := strings.Cut(v, "-"); ok {
			if _, e1 := strconv.Atoi(lo); e1 == nil {
				if _, e2 := strconv.Atoi(hi); e2 == nil {
					return 0, fmt.Sprintf("%s port range %s: ranges are not supported, publish each port with its own --publish", kind, v)
				}
			}
		}
		return 0, fmt.Sprintf("%s port %q is not a number (want 1-65535)", kind, v)
	}
	if strings.Contains(s, "=") {
		for _, part := range strings.Split(s, ",") {
			k, v, ok := strings.Cut(part, "=")
			if !ok {
				return bad("want key=value fields")
			}
			switch strings.TrimSpace(k) {
			case "published":
				if strings.TrimSpace(v) == "" {
					break // the cluster picks one
				}
				n, why := port("published", v)
				if why != "" {
					return bad(why)
				}
				pc.Published = n
			case "target":
				n, why := port("target", v)
				if why != "" {
					return bad(why)
				}
				pc.Target = n
			case "protocol":
				pc.Protocol = strings.ToLower(strings.TrimSpace(v))
			case "mode":
				switch v {
				case api.PublishIngress:
				case api.PublishHost:
					pc.Mode = api.PublishHost
				default:
					return bad("mode must be ingress or host")
				}
			default:
				return bad("unknown field " + k)
			}
		}
	} else {
		ports := s
		if p, proto, ok := strings.Cut(s, "/"); ok {
			ports, pc.Protocol = p, strings.ToLower(proto)
		}
		pub, tgt, hasPub := strings.Cut(ports, ":")
		if !hasPub {
			tgt, pub = pub, ""
		}
		n, why := port("target", tgt)
		if why != "" {
			return bad(why)
		}
		pc.Target = n
		if hasPub {
			n, why := port("published", pub)
			if why != "" {
				return bad(why)
			}
			pc.Published = n
		}
	}
	if pc.Target == 0 {
		return bad("missing target port")
	}
	if pc.Protocol != "tcp" && pc.Protocol != "udp" {
		return bad("protocol must be tcp or udp")
	}
	return pc, nil
}

// constraintKeys are the exact keys a constraint may test; node.labels.* and
// engine.labels.* are accepted with any suffix.
var constraintKeys = map[string]bool{
	"node.id": true, "node.hostname": true, "node.role": true,
	"node.platform.os": true, "node.platform.arch": true,
}

// ParseConstraint checks "KEY==VALUE" or "KEY!=VALUE" and returns it with
// the spaces around the operator removed.
func ParseConstraint(s string) (string, error) {
	op := "=="
	i := strings.Index(s, "==")
	if j := strings.Index(s, "!="); j >= 0 && (i < 0 || j < i) {
		op, i = "!=", j
	}
	if i < 0 {
		return "", fmt.Errorf("%w %q: want KEY==VALUE or KEY!=VALUE", errBadConstraint, s)
	}
	key := strings.TrimSpace(s[:i])
	val := strings.TrimSpace(s[i+2:])
	switch {
	case key == "" || val == "":
		return "", fmt.Errorf("%w %q: empty key or value", errBadConstraint, s)
	case strings.ContainsFunc(key, unicode.IsSpace):
		return "", fmt.Errorf("%w %q: space in key", errBadConstraint, s)
	case strings.Contains(val, "=="), strings.Contains(val, "!="):
		return "", fmt.Errorf("%w %q: more than one operator", errBadConstraint, s)
	case constraintKeys[key]:
	case strings.HasPrefix(key, "node.labels.") && len(key) > len("node.labels."):
	case strings.HasPrefix(key, "engine.labels.") && len(key) > len("engine.labels."):
	default:
		return "", fmt.Errorf("%w %q: unknown key %q (node.id, node.hostname, node.role, node.labels.NAME)", errBadConstraint, s, key)
	}
	return key + op + val, nil
}

// parseEnv checks "KEY=VALUE"; a bare "KEY" takes the value from the
// caller's environment, as docker does, and is dropped when unset.
func parseEnv(s string) (string, bool, error) {
	k, _, ok := strings.Cut(s, "=")
	if k == "" || strings.ContainsFunc(k, unicode.IsSpace) {
		return "", false, fmt.Errorf("%w %q: bad variable name", errBadKeyValue, s)
	}
	if ok {
		return s, true, nil
	}
	if v, set := os.LookupEnv(k); set {
		return k + "=" + v, true, nil
	}
	return "", false, nil
}

// parseLabel splits "k=v" (or "k", empty value).
func parseLabel(s string) (string, string, error) {
	k, v, _ := strings.Cut(s, "=")
	k = strings.TrimSpace(k)
	if k == "" {
		return "", "", fmt.Errorf("%w %q: empty key", errBadKeyValue, s)
	}
	return k, v, nil
}

// envKey returns the variable name of "K=V".
func envKey(s string) string {
	k, _, _ := strings.Cut(s, "=")
	return k
}

// ParseSince reads a --since or --until value as docker's GetTimestamp does:
// a duration ("10m", meaning that long ago), an RFC 3339 time, a time
// without a zone in the local zone ("2024-05-06T07:08:09", "…T07:08",
// "2024-05-06"), or Unix seconds ("1700000000", "1700000000.5"). "0" is
// Unix 0, not a zero duration (docker's `--since 0`: all that is kept).
// Before, a time without a zone (as a user types it, or copies it from a
// table) was refused, and "0" meant now.
func ParseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil && s != "0" {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, layout := range localTimeLayouts {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	if secs, err := strconv.ParseFloat(s, 64); err == nil && secs >= 0 {
		return time.Unix(0, int64(secs*1e9)), nil
	}
	return time.Time{}, fmt.Errorf("%w %q: want a duration like 10m, an RFC 3339 time (2006-01-02T15:04:05Z, or without a zone for local time) or Unix seconds", errBadTime, s)
}

// localTimeLayouts are the times without a zone ParseSince takes, in the
// local zone (docker's rFC3339Local, its shorter forms and dateLocal).
var localTimeLayouts = []string{
	"2006-01-02T15:04:05.999999999",
	"2006-01-02T15:04:05",
	"2006-01-02T15:04",
	"2006-01-02",
}

// ParseTail accepts "all" (returns -1) or a non-negative count.
func ParseTail(s string) (int, error) {
	if s == "" || s == "all" {
		return -1, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid --tail %q: want all or a number", s)
	}
	return n, nil
}

// SplitWords splits a command line the way a shell would for simple cases:
// whitespace separates words, single and double quotes group, backslash
// escapes outside single quotes.
func SplitWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote rune
	escaped := false
	for _, r := range s {
		switch {
		case escaped:
			cur.WriteRune(r)
			escaped = false
		case quote == '\'':
			if r == '\'' {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\\':
			escaped, inWord = true, true
		case quote == '"':
			if r == '"' {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case unicode.IsSpace(r):
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 || escaped {
		return nil, fmt.Errorf("%w in %q", errBadQuote, s)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// ParseScale parses "NAME=N".
func ParseScale(s string) (string, uint64, error) {
	name, n, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return "", 0, fmt.Errorf("invalid scale %q: want NAME=REPLICAS", s)
	}
	v, err := strconv.ParseUint(n, 10, 64)
	if err != nil {
		return "", 0, fmt.Errorf("invalid scale %q: replicas must be a non-negative number", s)
	}
	return name, v, nil
}
