package containeropts

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// MaxHostname is the longest hostname a container can have: the kernel's
// HOST_NAME_MAX is 64 bytes with the NUL.
const MaxHostname = 63

// HostnameProblem returns why h cannot be a container's hostname, or "":
// dot-separated labels of letters, digits and '-' (not first or last in
// a label), at most MaxHostname characters. Swarm's templates
// ({{.Task.Slot}}) are not expanded: refused rather than taken literally.
func HostnameProblem(h string) string {
	if strings.Contains(h, "{{") {
		return fmt.Sprintf("%q: templates are not supported", h)
	}
	if h == "" || len(h) > MaxHostname {
		return fmt.Sprintf("%q: want 1 to %d characters", h, MaxHostname)
	}
	for _, l := range strings.Split(h, ".") {
		if p := labelProblem(l); p != "" {
			return fmt.Sprintf("%q: %s", h, p)
		}
	}
	return ""
}

// labelProblem returns why l is not a DNS label (RFC 1123), or "".
func labelProblem(l string) string {
	if l == "" {
		return "empty label"
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Sprintf("character %q not allowed (letters, digits, '-' and '.')", c)
		}
	}
	if l[0] == '-' || l[len(l)-1] == '-' {
		return fmt.Sprintf("label %q must start and end with a letter or digit", l)
	}
	return ""
}

// ParseExtraHost parses an extra /etc/hosts entry as Docker's --host takes
// it, HOST:IP or HOST=IP (an IPv6 address may be in brackets), and returns
// it as HOST:IP, the form the runtime writes (ocispec.HostsFile).
func ParseExtraHost(s string) (string, error) {
	sep := ":"
	if strings.Contains(s, "=") {
		sep = "="
	}
	host, ip, ok := strings.Cut(strings.TrimSpace(s), sep)
	if !ok {
		return "", fmt.Errorf("%q: want HOST:IP, e.g. db:10.0.0.5", s)
	}
	host = strings.TrimSpace(host)
	ip = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(ip), "["), "]")
	e := host + ":" + ip
	if p := ExtraHostProblem(e); p != "" {
		return "", errors.New(p)
	}
	return e, nil
}

// ExtraHostProblem returns why e (HOST:IP) cannot be a line of a
// container's /etc/hosts, or "": the host a hostname, the address an IP
// (Docker's host-gateway is not known to Shoal).
func ExtraHostProblem(e string) string {
	host, ip, ok := strings.Cut(e, ":")
	if !ok {
		return fmt.Sprintf("%q: want HOST:IP", e)
	}
	if strings.Contains(host, "{{") || host == "" || len(host) > 253 {
		return fmt.Sprintf("%q: host %q: want a hostname", e, host)
	}
	for _, l := range strings.Split(host, ".") {
		if p := labelProblem(l); p != "" {
			return fmt.Sprintf("%q: host %q: %s", e, host, p)
		}
	}
	if ip == "host-gateway" {
		return fmt.Sprintf("%q: host-gateway is not supported: give the address", e)
	}
	if _, err := netip.ParseAddr(ip); err != nil {
		return fmt.Sprintf("%q: address %q: want an IPv4 or IPv6 address", e, ip)
	}
	return ""
}
