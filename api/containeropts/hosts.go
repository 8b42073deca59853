package containeropts

import (
	"fmt"
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
