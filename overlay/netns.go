package overlay

import "github.com/shoal-org/shoal/overlay/linkutil"

// inNS runs fn in the programmed namespace. Netlink calls never need this
// (the handle is bound to the namespace); it is for /proc/sys/net, which
// shows the namespace of the calling thread. With no Config.NetNS, fn runs
// directly.
func (o *Overlay) inNS(fn func() error) error {
	if !o.ns.IsOpen() {
		return fn()
	}
	return linkutil.DoInNS(o.ns, fn)
}
