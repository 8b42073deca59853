// Package overlayerr holds the sentinel errors the overlay's packages
// (overlay, overlay/wireguard, overlay/ipam) share, so that callers can
// test them with errors.Is whichever package returned them. The overlay
// re-exports the errors under their old
// names (overlay.ErrInvalidConfig is overlayerr.ErrInvalidConfig), so an
// error from the WireGuard side still matches the overlay's sentinel.
package overlayerr

import "errors"

// Sentinel errors shared by overlay and overlay/wireguard.
var (
	// ErrInvalidConfig: a configuration's Validate refused it.
	ErrInvalidConfig = errors.New("invalid overlay config")
	// ErrInvalidPeer: a peer given to SetPeers is malformed (its subnet is
	// outside the cluster CIDR, overlaps ours or another peer's, or its
	// underlay address is not IPv4).
	ErrInvalidPeer = errors.New("invalid overlay peer")
	// ErrPartial: SetPeers could program only part of the desired state; the
	// joined errors name the peers and the entries that failed.
	ErrPartial = errors.New("peers only partially programmed")
	// ErrClosed: the Overlay was closed.
	ErrClosed = errors.New("overlay closed")
)
