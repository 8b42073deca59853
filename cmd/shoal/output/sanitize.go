package output

// What other nodes wrote reaches an admin's terminal: a node's hostname,
// version and address, a task's error, event attributes. A node with a
// valid certificate could put terminal escapes there (OSC 52 writes the
// clipboard, CSI sequences clear or rewrite lines to hide a row), so
// tables, event lines and log prefixes print control characters as \xNN.
// A container's own log lines stay raw, as docker prints them.

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Sanitize returns s with C0 and C1 control characters other than tab and
// newline (and with DEL and invalid UTF-8) written as \xNN.
func Sanitize(s string) string {
	if !needsEscape(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\t' || r == '\n':
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f || r >= 0x80 && r <= 0x9f:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// needsEscape reports whether Sanitize would change s.
func needsEscape(s string) bool {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 || r != '\t' && r != '\n' && (r < 0x20 || r == 0x7f || r >= 0x80 && r <= 0x9f) {
			return true
		}
		i += n
	}
	return false
}

// SafeWriter returns a writer that sanitizes what is written to w. Each
// Write is sanitized whole: the table and event writers write whole cells
// and lines, so a UTF-8 sequence is never split between writes.
func SafeWriter(w io.Writer) io.Writer { return safeWriter{w} }

type safeWriter struct{ w io.Writer }

func (s safeWriter) Write(p []byte) (int, error) {
	if !needsEscape(string(p)) {
		return s.w.Write(p)
	}
	if _, err := io.WriteString(s.w, Sanitize(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}
