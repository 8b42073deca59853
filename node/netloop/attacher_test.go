package netloop

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

// TestAttacherWithoutOverlays: before the loop brought anything up, a
// container on the default network only gets loopback (no address, no
// error), one that names another network is refused with ErrNetworkDown
// once it did not come up within the attacher's wait, and the attacher is
// not ready.
func TestAttacherWithoutOverlays(t *testing.T) {
	n := Attacher{Wait: time.Millisecond}
	if n.Ready() || n.Default() != nil || n.IPs("c1") != nil {
		t.Fatal("an empty attacher claims an overlay")
	}
	ip, err := n.Attach(context.Background(), "c1", "/proc/1/ns/net")
	if err != nil || ip != "" {
		t.Fatalf("default network without overlay: %q, %v; want loopback only", ip, err)
	}
	ctx := WithNetworks(context.Background(), []string{"netb"})
	if _, err := n.Attach(ctx, "c1", "/proc/1/ns/net"); !errors.Is(err, ErrNetworkDown) {
		t.Fatalf("a network that is not up: %v, want ErrNetworkDown", err)
	}
	ctx = WithNetworks(context.Background(), []string{api.DefaultNetwork, "netb"})
	if _, err := n.Attach(ctx, "c1", "/proc/1/ns/net"); !errors.Is(err, ErrNetworkDown) {
		t.Fatalf("the default network and one that is not up: %v, want ErrNetworkDown", err)
	}
	if err := n.Detach(context.Background(), "c1", "/proc/1/ns/net"); err != nil {
		t.Fatalf("detach of an unknown container: %v", err)
	}
}

func TestWithNetworks(t *testing.T) {
	if got := networksOf(context.Background()); !slices.Equal(got, []string{api.DefaultNetwork}) {
		t.Fatalf("no networks in the context: %v, want the default", got)
	}
	if got := networksOf(WithNetworks(context.Background(), nil)); !slices.Equal(got, []string{api.DefaultNetwork}) {
		t.Fatalf("an empty list: %v, want the default", got)
	}
	want := []string{"neta", api.DefaultNetwork}
	if got := networksOf(WithNetworks(context.Background(), want)); !slices.Equal(got, want) {
		t.Fatalf("networks %v, want %v in order", got, want)
	}
}
