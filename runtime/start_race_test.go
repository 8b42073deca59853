package runtime

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/shoal-org/shoal/api"
	shoalnetns "github.com/shoal-org/shoal/runtime/netns"
)

// vethNetwork is a Network that really plugs containers in, as the overlay
// does: a veth pair whose host side lives in a throwaway "host" namespace
// and whose peer is moved into the container's namespace as eth0, with an
// address and lo up.
type vethNetwork struct {
	mu  sync.Mutex
	h   *netlink.Handle
	seq atomic.Uint32
}

func newVethNetwork(t testing.TB) *vethNetwork {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hostns")
	if err := shoalnetns.Create(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = shoalnetns.Remove(path) })
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(); ns.Close() })
	return &vethNetwork{h: h}
}

func (v *vethNetwork) Attach(_ context.Context, id, netnsPath string) (string, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	cns, err := netns.GetFromPath(netnsPath)
	if err != nil {
		return "", err
	}
	defer cns.Close()
	ch, err := netlink.NewHandleAt(cns)
	if err != nil {
		return "", err
	}
	defer ch.Close()
	n := v.seq.Add(1)
	ip := net.IPv4(10, 99, byte(n>>8), byte(n))
	attrs := netlink.NewLinkAttrs()
	attrs.Name = "v" + id[:10]
	if err := v.h.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: "eth0", PeerNamespace: netlink.NsFd(cns)}); err != nil {
		return "", fmt.Errorf("add veth: %w", err)
	}
	host, err := v.h.LinkByName(attrs.Name)
	if err != nil {
		return "", err
	}
	if err := v.h.LinkSetUp(host); err != nil {
		return "", err
	}
	eth0, err := ch.LinkByName("eth0")
	if err != nil {
		return "", err
	}
	if err := ch.AddrAdd(eth0, &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: net.CIDRMask(16, 32)}}); err != nil {
		return "", err
	}
	if err := ch.LinkSetUp(eth0); err != nil {
		return "", err
	}
	return ip.String(), nil
}

func (v *vethNetwork) Detach(_ context.Context, id, _ string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if l, err := v.h.LinkByName("v" + id[:10]); err == nil {
		return v.h.LinkDel(l)
	}
	return nil
}

// TestConcurrentStartsStayRunning starts many long-running containers at
// once, each plugged into a real veth, as a service scale-up does, and
// checks that every one of them is still running a few seconds later:
// nothing may end a container that nobody stopped. SHOAL_TEST_ROUNDS=N
// repeats it N times (the default 2 keeps the suite short).
func TestConcurrentStartsStayRunning(t *testing.T) {
	cfg := testConfig(t)
	cfg.Network = newVethNetwork(t)
	h := startHarness(t, cfg)
	rounds, n := 2, 40
	if s := os.Getenv("SHOAL_TEST_ROUNDS"); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
	for round := 0; round < rounds; round++ {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		ids := make([]string, n)
		var wg sync.WaitGroup
		for j := 0; j < n; j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := h.rt.RunContainer(ctx, Spec{Image: "busybox", Command: []string{"sleep", "100000"}})
				if err != nil {
					t.Errorf("round %d container %d: %v", round, j, err)
					return
				}
				ids[j] = c.ID
			}()
		}
		wg.Wait()
		cancel()
		time.Sleep(3 * time.Second)
		bad := 0
		for _, c := range h.rt.List() {
			if c.State != api.ContainerRunning {
				bad++
				t.Errorf("round %d: container %s is %s (exit %d, %q) after %s", round, ShortID(c.ID), c.State, c.ExitCode, c.Error, c.FinishedAt.Sub(c.StartedAt))
			}
		}
		removeAll(t, h, ids)
		if bad > 0 || t.Failed() {
			return
		}
	}
}

// TestRemoveOfStartingContainerRefused is the reconciler's race: it lists
// the containers, sees one in state "created" (its start is in flight),
// and decides to remove it as left over; by the time it acts, the start
// has finished. A non-forced Remove must then refuse (ErrRunning) instead
// of killing the container, both when it comes in mid-start and when it
// comes after RunContainer returned.
func TestRemoveOfStartingContainerRefused(t *testing.T) {
	cfg := testConfig(t)
	cfg.Network = newVethNetwork(t)
	h := startHarness(t, cfg)
	const n = 8
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("racer%d", i)
		late := i%2 == 1 // remove after RunContainer returned (a preempted reconciler)
		started := make(chan struct{})
		wg.Add(2)
		go func() {
			defer wg.Done()
			defer close(started)
			if _, err := h.rt.RunContainer(ctx, Spec{Name: name, Image: "busybox", Command: []string{"sleep", "100000"}}); err != nil {
				t.Errorf("run %s: %v", name, err)
			}
		}()
		go func() {
			defer wg.Done()
			var id string
			for id == "" && ctx.Err() == nil { // the reconciler's List
				for _, c := range h.rt.List() {
					if c.Name == name && c.State == api.ContainerCreated {
						id = c.ID
					}
				}
				if id == "" {
					time.Sleep(time.Millisecond)
				}
			}
			if late {
				<-started
			}
			err := h.rt.Remove(ctx, id, false)
			if !errors.Is(err, ErrRunning) {
				t.Errorf("remove of %s seen created (late %v): got %v, want ErrRunning", name, late, err)
			}
		}()
	}
	wg.Wait()
	for _, c := range h.rt.List() {
		if c.State != api.ContainerRunning {
			t.Errorf("%s is %s (exit %d)", c.Name, c.State, c.ExitCode)
		}
	}
}
