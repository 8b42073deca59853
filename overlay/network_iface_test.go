package overlay

import "github.com/shoal-org/shoal/runtime"

// The runtime plugs containers in through runtime.Network; overlay must not
// import runtime in product code, so the check lives in a test.
var _ runtime.Network = (*Overlay)(nil)
