package agent

// The agent's config file. A packaged agent runs under systemd with one
// command line (`shoal agent --config /etc/shoal/agent.yaml`), so whatever
// an operator sets per machine lives in that file: every key is the name of
// a `shoal agent` flag, and a flag given on the command line wins over the
// file. The keys are read from the command's own flag list, so a flag added
// to `shoal agent` is a config key at once, with no table to keep in step.
//
// The file is checked before anything starts, and every refusal names the
// file, the line and the key: an unknown key (a typo would otherwise be
// silently ignored), a value of the wrong type, an address that is not one,
// an empty or relative path.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"go.yaml.in/yaml/v4"
)

// defaultConfigFile is read when `shoal agent` runs without --config and
// the file exists (the Debian package installs it).
const defaultConfigFile = "/etc/shoal/agent.yaml"

// maxConfigBytes bounds the config file: it is a handful of keys.
const maxConfigBytes = 1 << 20

// autoAdvertise as --advertise-addr picks the source address of the default
// route (the packaged config uses it, so a fresh install starts).
const autoAdvertise = "auto"

// errConfig marks a problem of the config file.
var errConfig = errors.New("invalid agent config")

// configEntry is one key of the file with where it was.
type configEntry struct {
	key   string
	line  int
	value *yaml.Node
}

// applyAgentConfig reads the agent's config file, checks every key and sets
// the flags the command line did not set. The file is the --config value;
// without --config, defaultConfigFile when it exists (def overrides that
// path in tests). On error nothing has been set.
func applyAgentConfig(c *cli.Context, def string) error {
	path := c.String("config")
	if !c.IsSet("config") {
		path = def
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return nil
		}
	}
	if path == "" {
		return fmt.Errorf("%w: --config is empty", errConfig)
	}
	b, err := readConfigFile(path)
	if err != nil {
		return err
	}
	flags := map[string]cli.Flag{}
	for _, f := range c.Command.Flags {
		flags[f.Names()[0]] = f
	}
	delete(flags, "help")
	values, err := parseAgentConfig(b, flags)
	if err != nil {
		return fmt.Errorf("%w %s: %w", errConfig, path, err)
	}
	for _, kv := range values {
		if c.IsSet(kv[0]) {
			continue // the command line wins
		}
		if err := c.Set(kv[0], kv[1]); err != nil {
			return fmt.Errorf("%w %s: %s: %w", errConfig, path, kv[0], err)
		}
	}
	return nil
}

// readConfigFile reads at most maxConfigBytes of path.
func readConfigFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errConfig, err)
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(f, maxConfigBytes+1)); err != nil {
		return nil, fmt.Errorf("%w %s: %w", errConfig, path, err)
	}
	if buf.Len() > maxConfigBytes {
		return nil, fmt.Errorf("%w %s: larger than %d bytes", errConfig, path, maxConfigBytes)
	}
	return buf.Bytes(), nil
}

// parseAgentConfig checks a config file against the agent's flags and
// returns its values as flag strings, in file order. Pure.
func parseAgentConfig(b []byte, flags map[string]cli.Flag) ([][2]string, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, nil // empty file, or only comments
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: want a mapping of flag names to values (data-dir: /var/lib/shoal)", root.Line)
	}
	var entries []configEntry
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("line %d: keys are flag names", k.Line)
		}
		key := strings.TrimPrefix(k.Value, "--")
		if prev, dup := seen[key]; dup {
			return nil, fmt.Errorf("line %d: %s: given twice (first on line %d)", k.Line, key, prev)
		}
		seen[key] = k.Line
		entries = append(entries, configEntry{key: key, line: k.Line, value: v})
	}
	var errs []error
	var out [][2]string
	for _, e := range entries {
		s, err := configValue(e, flags)
		if err != nil {
			errs = append(errs, fmt.Errorf("line %d: %s: %w", e.line, e.key, err))
			continue
		}
		out = append(out, [2]string{e.key, s})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// configValue checks one entry and renders it as the flag's string value.
func configValue(e configEntry, flags map[string]cli.Flag) (string, error) {
	if e.key == "config" {
		return "", errors.New("unknown key: a config file cannot name another one")
	}
	f, ok := flags[e.key]
	if !ok {
		return "", fmt.Errorf("unknown key (the keys are the flags of `shoal agent`: %s)", strings.Join(configKeys(flags), ", "))
	}
	v := e.value
	if v.Kind != yaml.ScalarNode {
		return "", errors.New("want a single value")
	}
	if v.Tag == "!!null" {
		return "", errors.New("no value (remove the key to use the default)")
	}
	switch f.(type) {
	case *cli.BoolFlag:
		var b bool
		if err := v.Decode(&b); err != nil {
			return "", fmt.Errorf("%q is not true or false", v.Value)
		}
		return strconv.FormatBool(b), nil
	case *cli.DurationFlag:
		if _, err := time.ParseDuration(v.Value); err != nil {
			return "", fmt.Errorf("%q is not a duration (like 90s, 24h)", v.Value)
		}
		return v.Value, nil
	case *cli.IntFlag:
		n, err := strconv.Atoi(v.Value)
		if err != nil {
			return "", fmt.Errorf("%q is not a number", v.Value)
		}
		return strconv.Itoa(n), checkConfigValue(e.key, v.Value)
	default:
		return v.Value, checkConfigValue(e.key, v.Value)
	}
}

// checkConfigValue checks a value by what its key names. Flags on the
// command line get the same checks from node.Config.Validate; these name
// the key and come before anything starts.
func checkConfigValue(key, val string) error {
	switch {
	case key == "data-dir" || key == "socket":
		if val == "" {
			return errors.New("must not be empty")
		}
		if !filepath.IsAbs(strings.TrimPrefix(val, "unix://")) {
			return fmt.Errorf("%q is not an absolute path", val)
		}
	case key == "advertise-addr":
		if val == autoAdvertise {
			return nil
		}
		if ip := net.ParseIP(val); ip == nil || ip.IsUnspecified() {
			return fmt.Errorf("%q is not a usable IP address (or %q)", val, autoAdvertise)
		}
	case key == "listen-addr":
		if net.ParseIP(val) == nil {
			return fmt.Errorf("%q is not an IP address", val)
		}
	case strings.HasSuffix(key, "-addr"): // metrics-addr, ui-addr: IP:PORT
		host, port, err := net.SplitHostPort(val)
		if err != nil {
			return fmt.Errorf("%q is not IP:PORT", val)
		}
		if host != "" && net.ParseIP(host) == nil {
			return fmt.Errorf("%q: %q is not an IP address", val, host)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			return fmt.Errorf("%q: bad port %q", val, port)
		}
	case strings.HasSuffix(key, "-port"):
		if p, _ := strconv.Atoi(val); p <= 0 || p > 65535 {
			return fmt.Errorf("%s is out of range 1-65535", val)
		}
	case key == "log-level":
		switch strings.ToLower(val) {
		case "debug", "info", "warn", "error":
		default:
			return fmt.Errorf("%q: want debug, info, warn or error", val)
		}
	case key == "hostname":
		if val == "" {
			return errors.New("must not be empty")
		}
	}
	return nil
}

// configKeys lists the keys a config file may use.
func configKeys(flags map[string]cli.Flag) []string {
	keys := make([]string, 0, len(flags))
	for k := range flags {
		if k != "config" && k != "help" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// detectAdvertiseAddr returns the source address this host uses for its
// default route: what `--advertise-addr auto` means. Dialing UDP sends no
// packet; it only asks the kernel for a route.
func detectAdvertiseAddr() (string, error) {
	for _, probe := range []string{"192.0.2.1:9", "[2001:db8::1]:9"} {
		conn, err := net.Dial("udp", probe)
		if err != nil {
			continue
		}
		ip := conn.LocalAddr().(*net.UDPAddr).IP
		conn.Close()
		if ip != nil && !ip.IsUnspecified() && !ip.IsLoopback() {
			return ip.String(), nil
		}
	}
	return "", errors.New("--advertise-addr auto: this host has no default route; give the IP other nodes reach it at")
}
