package image

import (
	"errors"

	"github.com/shoal-org/shoal/runtime/image/unpack"
)

// Errors returned by the store and the unpacker. Callers test them with
// errors.Is; every returned error wraps one of these when the cause is known.
// ErrInvalidArchive and ErrTooLarge are the unpacker's own values, so one
// errors.Is matches a refusal from either package.
var (
	// ErrInvalidArchive: a tarball, archive, descriptor or config is
	// malformed, truncated or hostile (path escapes, device nodes, ...).
	ErrInvalidArchive = unpack.ErrInvalidArchive
	// ErrTooLarge: a layer exceeds Limits, or a manifest, index or image
	// config is larger than any real one (16 MiB).
	ErrTooLarge = unpack.ErrTooLarge
	// ErrDigestMismatch: content does not hash to the digest it was
	// announced with. Nothing is stored.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrNotFound: no image, tag or blob matches.
	ErrNotFound = errors.New("not found")
	// ErrAmbiguous: an ID prefix matches several images.
	ErrAmbiguous = errors.New("ambiguous image reference")
	// ErrInvalidRef: a reference or digest string is malformed.
	ErrInvalidRef = errors.New("invalid reference")
	// ErrUnknownMediaType: a layer or config has a media type we cannot unpack.
	ErrUnknownMediaType = errors.New("unknown media type")
	// ErrInUse: the image is used by a container (Config.InUse said so).
	ErrInUse = errors.New("image in use")
	// ErrUnauthorized: a registry refused a pull (HTTP 401 or 403): the
	// credentials are missing or wrong.
	ErrUnauthorized = errors.New("registry refused the credentials")
	// ErrNoSpace: a blob would leave the store's file system almost full.
	ErrNoSpace = errors.New("not enough free disk space")
)
