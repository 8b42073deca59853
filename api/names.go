package api

import "fmt"

// MaxServiceNameLen is the longest service name: one DNS label (RFC 1123).
const MaxServiceNameLen = 63

// ServiceNameProblem returns why name cannot name a service, or "".
//
// A service name is what containers resolve through the embedded DNS
// (`web`, `tasks.web`), so it must be one DNS label: 1-63 letters, digits,
// '-' and '_', starting and ending with a letter or digit (swarmkit's rule).
// '_' is RFC 1123's one exception here: stacks name their services
// STACK_NAME (DESIGN.md), and the embedded DNS answers such names. A dot
// would make `a.b` a two-label name and `tasks.a.b` ambiguous. Names that
// differ only in case are one DNS name: the state machine refuses the second.
// The API (spec validation) and the state machine share this rule.
func ServiceNameProblem(name string) string { return labelProblem("service", name) }

// NetworkNameProblem returns why name cannot name a network, or "": the
// service rule (a network's name is a DNS label too: it names the network
// in specs, compose files and the embedded DNS's views), worded for a
// network.
func NetworkNameProblem(name string) string { return labelProblem("network", name) }

// AliasProblem returns why name cannot be a service's network alias
// (ServiceSpec.NetworkAliases), or "": the service rule, since an alias
// resolves like the service's name.
func AliasProblem(name string) string { return labelProblem("network alias", name) }

// labelProblem is the rule of ServiceNameProblem for a kind of name.
func labelProblem(kind, name string) string {
	if name == "" {
		return "must not be empty"
	}
	if len(name) > MaxServiceNameLen {
		return fmt.Sprintf("longer than %d characters (a %s name is a DNS label)", MaxServiceNameLen, kind)
	}
	alnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' }
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !alnum(c) && c != '-' && c != '_' {
			return fmt.Sprintf("character %q not allowed (a %s name is a DNS label: letters, digits, '-' and '_')", c, kind)
		}
	}
	if !alnum(name[0]) {
		return "must start with a letter or digit"
	}
	if !alnum(name[len(name)-1]) {
		return "must end with a letter or digit"
	}
	return ""
}

// MaxHostnameLen is the longest node hostname (a DNS name).
const MaxHostnameLen = 253

// HostnameProblem returns why h cannot be a node's hostname, or "". A
// node names itself when it joins, and its hostname is printed by `node
// ls`, matched by `node.hostname` constraints and accepted wherever a node
// is named: so it is held to a DNS name's characters (letters, digits,
// '-', '_' and '.'), with no control characters to reach an admin's
// terminal.
func HostnameProblem(h string) string {
	if h == "" {
		return "must not be empty"
	}
	if len(h) > MaxHostnameLen {
		return fmt.Sprintf("longer than %d characters", MaxHostnameLen)
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Sprintf("character %q not allowed (letters, digits, '-', '_' and '.')", c)
		}
	}
	return ""
}

// ShortID is the 12-character form of an ID (node, task, container,
// serial) that logs, messages and `shoal ps` show.
func ShortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
