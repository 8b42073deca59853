package runtime

import (
	"context"
	"strings"
	"sync"
	"testing"

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
	want := pathsOnDisk(t, cfg, c.ID).netns
	net.mu.Lock()
	defer net.mu.Unlock()
	if !net.nsOK || net.Attached[c.ID] != want {
		t.Errorf("attach got netns %q (mounted %v)", net.Attached[c.ID], net.nsOK)
	}
	if len(net.Detached) == 0 || net.Detached[0] != c.ID {
		t.Errorf("detached %v after exit", net.Detached)
	}
}
