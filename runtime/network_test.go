package runtime

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/netns"
)

// FakeNetwork records Attach/Detach calls and hands out one fixed address.
type FakeNetwork struct {
	mu       sync.Mutex
	IP       string
	Attached map[string]string // container ID -> netns path
	Detached []string
	nsOK     bool
}

func (f *FakeNetwork) Attach(_ context.Context, id, nsPath string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Attached == nil {
		f.Attached = map[string]string{}
	}
	f.Attached[id] = nsPath
	f.nsOK = netns.IsMount(nsPath)
	return f.IP, nil
}

func (f *FakeNetwork) Detach(_ context.Context, id, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Detached = append(f.Detached, id)
	return nil
}

func TestNetworkHook(t *testing.T) {
	cfg := testConfig(t)
	net := &FakeNetwork{IP: "10.42.7.9"}
	cfg.Network = net
	h := startHarness(t, cfg)
	c := h.run(t, Spec{Image: "busybox", Hostname: "web", Command: []string{"sh", "-c", "grep web /etc/hosts; cat /etc/resolv.conf >/dev/null; ip -o link | grep -c lo"}})
	if c.IP != "10.42.7.9" {
		t.Errorf("container IP %q", c.IP)
	}
	c = h.wait(t, c.ID)
	logs := h.logs(t, c.ID)
	if !strings.Contains(logs, "10.42.7.9\tweb") {
		t.Errorf("hosts inside the container: %q", logs)
	}
	want := pathsOnDisk(t, cfg, c.ID).Netns
	net.mu.Lock()
	if !net.nsOK || net.Attached[c.ID] != want {
		t.Errorf("attach got netns %q (mounted %v)", net.Attached[c.ID], net.nsOK)
	}
	net.mu.Unlock()
	// The exit is published first; the network is released right after it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		net.mu.Lock()
		detached := slices.Clone(net.Detached)
		net.mu.Unlock()
		if len(detached) > 0 {
			if detached[0] != c.ID {
				t.Errorf("detached %v after exit, want %s", detached, c.ID)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("network not released 10 s after the exit")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// slowDetachNetwork logs attaches and detaches in order, and takes a while
// to detach, as a real release does under load.
type slowDetachNetwork struct {
	mu    sync.Mutex
	delay time.Duration
	log   []string
}

func (n *slowDetachNetwork) Attach(_ context.Context, id, _ string) (string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.log = append(n.log, "attach "+id)
	return "10.42.7.10", nil
}

func (n *slowDetachNetwork) Detach(_ context.Context, id, _ string) error {
	time.Sleep(n.delay)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.log = append(n.log, "detach "+id)
	return nil
}

// TestRestartWaitsForRelease: the exit is published before the network of
// the run that ended is released; a restart right after the exit must wait
// for that release, or the old run's cleanup would release the new run's
// attachment.
func TestRestartWaitsForRelease(t *testing.T) {
	cfg := testConfig(t)
	net := &slowDetachNetwork{delay: 300 * time.Millisecond}
	cfg.Network = net
	h := startHarness(t, cfg)
	c := h.run(t, Spec{Image: "busybox", Command: []string{"true"}})
	h.wait(t, c.ID)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := h.rt.Start(ctx, c.ID); err != nil {
		t.Fatalf("restart: %v", err)
	}
	net.mu.Lock()
	got := slices.Clone(net.log)
	net.mu.Unlock()
	want := []string{"attach " + c.ID, "detach " + c.ID, "attach " + c.ID}
	if !slices.Equal(got, want) {
		t.Fatalf("network calls %v, want %v", got, want)
	}
}

// TestAdoptFinishesRelease: an agent that published an exit and died before
// the release (runc's state still there) leaves it to the next agent, which
// deletes the runc state and releases the network when it adopts the
// container.
func TestAdoptFinishesRelease(t *testing.T) {
	cfg := testConfig(t)
	net := &FakeNetwork{IP: "10.42.7.11"}
	cfg.Network = net
	a := startHarness(t, cfg)
	c := a.run(t, Spec{Image: "busybox", Command: []string{"true"}})
	a.wait(t, c.ID)
	poll(t, "the release", 10*time.Second, func() bool {
		net.mu.Lock()
		defer net.mu.Unlock()
		return len(net.Detached) == 1
	})
	a.stop()
	// What a death between the exit and the release leaves: runc state.
	bundle := filepath.Dir(pathsOnDisk(t, cfg, c.ID).Config)
	// runc's stdio is a file: the created init keeps it open.
	logf, err := os.Create(filepath.Join(t.TempDir(), "runc-create.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("runc", "--root", cfg.RuncRoot, "create", "--bundle", bundle, c.ID)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Run(); err != nil {
		out, _ := os.ReadFile(logf.Name())
		t.Fatalf("runc create: %v: %s", err, out)
	}
	b := startHarness(t, cfg)
	if _, err := os.Stat(filepath.Join(cfg.RuncRoot, c.ID)); err == nil {
		t.Errorf("runc state of the exited container left after adoption")
	}
	net.mu.Lock()
	detached := slices.Clone(net.Detached)
	net.mu.Unlock()
	if len(detached) != 2 {
		t.Errorf("network released %d times, want 2 (the exit, the adoption): %v", len(detached), detached)
	}
	if got, err := b.rt.Get(c.ID); err != nil || got.State != api.ContainerExited {
		t.Errorf("adopted %+v, %v; want exited", got, err)
	}
}

// TestCreatedContainerPluggedAfterReboot: a container created but not
// started before a reboot gets a new network namespace at its start, and
// must be attached to the network in it (the record's IP from the create
// is no interface): it started with loopback only.
func TestCreatedContainerPluggedAfterReboot(t *testing.T) {
	cfg := testConfig(t)
	cfg.Network = &FakeNetwork{IP: "10.42.7.9"}
	a := startHarness(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := a.rt.Create(ctx, Spec{Image: "busybox", Name: "later", Hostname: "later", Command: []string{"grep", "later", "/etc/hosts"}})
	if err != nil {
		t.Fatal(err)
	}
	a.stop()
	simulateReboot(t, cfg)

	// After the reboot the network hands out another address.
	net := &FakeNetwork{IP: "10.42.7.10"}
	cfg.Network = net
	b := startHarness(t, cfg)
	started, err := b.rt.Start(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	b.wait(t, c.ID)
	net.mu.Lock()
	ns, attached := net.Attached[c.ID]
	nsOK := net.nsOK
	net.mu.Unlock()
	if !attached || !nsOK || ns != pathsOnDisk(t, cfg, c.ID).Netns {
		t.Fatalf("not attached in its new namespace: attached %v at %q (mounted %v)", attached, ns, nsOK)
	}
	if started.IP != "10.42.7.10" {
		t.Errorf("container IP %q, want the network's 10.42.7.10", started.IP)
	}
	if logs := b.logs(t, c.ID); !strings.Contains(logs, "10.42.7.10\tlater") {
		t.Errorf("hosts inside the container: %q", logs)
	}
}
