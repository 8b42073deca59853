package unpack

import "errors"

// Errors returned by Unpack and Decompress. Callers test them with
// errors.Is. runtime/image re-exports both (the same values), so its
// callers match them whether the store or the unpacker refused.
var (
	// ErrInvalidArchive: a tarball is malformed, truncated or hostile
	// (path escapes, device nodes, ...).
	ErrInvalidArchive = errors.New("invalid image archive")
	// ErrTooLarge: a layer exceeds Limits.
	ErrTooLarge = errors.New("layer exceeds limits")
)
