package specflags

import "fmt"

// UsageError is a mistake in the command line: bad flag, wrong argument
// count, unparsable value. It exits with code 2.
type UsageError struct {
	Err error
	// Cmd is the full command name for the "See 'shoal CMD --help'" hint.
	Cmd string
}

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// UsageErrorf makes a UsageError.
func UsageErrorf(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}
