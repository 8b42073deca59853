package containeropts

import (
	"fmt"
	"slices"
	"strings"
)

// AllCapabilities are the Linux capabilities by name, in kernel order
// (CAP_CHOWN is 0, CAP_CHECKPOINT_RESTORE 40). runc skips, with a warning,
// those a node's kernel does not have, so "ALL" may name them all.
var AllCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
	"CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
	"CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
	"CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
	"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

// AllCaps is the name that stands for every capability in --cap-add and
// --cap-drop, as in Docker.
const AllCaps = "ALL"

// NormalizeCapability returns the canonical spelling of a capability as
// Docker takes it (NET_ADMIN, cap_net_admin and CAP_NET_ADMIN are
// CAP_NET_ADMIN; all is ALL), or an error for a name that is no
// capability: runc would refuse the config, and every task would fail.
func NormalizeCapability(name string) (string, error) {
	c := strings.ToUpper(strings.TrimSpace(name))
	if c == AllCaps {
		return c, nil
	}
	if !strings.HasPrefix(c, "CAP_") {
		c = "CAP_" + c
	}
	if !slices.Contains(AllCapabilities, c) {
		return "", fmt.Errorf("unknown capability %q (want a name such as NET_ADMIN or CAP_NET_ADMIN, or ALL)", name)
	}
	return c, nil
}

// NormalizeCapabilities normalizes a list (NormalizeCapability), dropping
// repeats and keeping the order.
func NormalizeCapabilities(names []string) ([]string, error) {
	var out []string
	for _, n := range names {
		c, err := NormalizeCapability(n)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out, nil
}

// Capabilities applies adds and drops to base, Docker's way
// (TweakCapabilities): ALL in adds grants every capability but the
// dropped ones; otherwise ALL in drops starts from nothing but the added
// ones; otherwise base loses the dropped and gains the added ones. A
// capability both added and dropped is added, as in Docker.
func Capabilities(base, adds, drops []string) ([]string, error) {
	adds, err := NormalizeCapabilities(adds)
	if err != nil {
		return nil, fmt.Errorf("cap_add: %w", err)
	}
	drops, err = NormalizeCapabilities(drops)
	if err != nil {
		return nil, fmt.Errorf("cap_drop: %w", err)
	}
	if len(adds) == 0 && len(drops) == 0 {
		return slices.Clone(base), nil
	}
	var caps []string
	switch {
	case slices.Contains(adds, AllCaps):
		for _, c := range AllCapabilities {
			if !slices.Contains(drops, c) {
				caps = append(caps, c)
			}
		}
		return caps, nil
	case slices.Contains(drops, AllCaps):
	default:
		for _, c := range base {
			if !slices.Contains(drops, c) {
				caps = append(caps, c)
			}
		}
	}
	for _, c := range adds {
		if !slices.Contains(caps, c) {
			caps = append(caps, c)
		}
	}
	return caps, nil
}
