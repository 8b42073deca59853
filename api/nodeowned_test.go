package api

import "testing"

// TestCopyOwnedNodeFieldsWireGuard: the WireGuard fields a node publishes
// about itself, the backend among them, are its own; the leader's are not.
func TestCopyOwnedNodeFieldsWireGuard(t *testing.T) {
	src := Node{ID: "x", Addr: "10.0.0.9", WireGuardKey: "K", WireGuardKeyEpoch: 3, WireGuardNextKey: "N", WireGuardNextEpoch: 5, WireGuardBackend: "kernel"}
	dst := Node{ID: "n", Addr: "10.0.0.1", WireGuardBackend: "userspace"}
	CopyOwnedNodeFields(&dst, src)
	want := Node{ID: "n", Addr: "10.0.0.1", WireGuardKey: "K", WireGuardKeyEpoch: 3, WireGuardNextKey: "N", WireGuardNextEpoch: 5, WireGuardBackend: "kernel"}
	if dst.ID != want.ID || dst.Addr != want.Addr || dst.WireGuardKey != want.WireGuardKey || dst.WireGuardKeyEpoch != want.WireGuardKeyEpoch ||
		dst.WireGuardNextKey != want.WireGuardNextKey || dst.WireGuardNextEpoch != want.WireGuardNextEpoch || dst.WireGuardBackend != want.WireGuardBackend {
		t.Fatalf("got %+v", dst)
	}
}
