package servicespec

import "errors"

// Sentinel errors of the spec rules. Callers match them with errors.Is; the
// wrapped message names the offending field or service.
var (
	// ErrInvalidSpec is returned by Validate; the message lists every
	// problem found, each prefixed by the field it concerns.
	ErrInvalidSpec = errors.New("invalid service spec")
	// ErrPortInUse is returned by CheckPortClash when another service
	// already publishes the same port and protocol.
	ErrPortInUse = errors.New("published port already in use")
)
