package main

import (
	"reflect"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
)

// TestCLIAutoscale: create starts at the minimum unless --replicas says
// otherwise, update changes or removes the config, bad values exit 2.
func TestCLIAutoscale(t *testing.T) {
	f := newFakeAgent(t)
	if _, errOut, code := runCLI(t, f.host, "", "service", "create", "-d", "--name", "web", "--autoscale", "min=2,max=10,cpu=70%", "busybox"); code != 0 {
		t.Fatalf("create: exit %d: %s", code, errOut)
	}
	if a := f.lastSpec.Autoscale; a == nil || *a != (api.AutoscaleConfig{Min: 2, Max: 10, CPUPercent: 70}) || f.lastSpec.Replicas != 2 {
		t.Fatalf("create sent replicas %d autoscale %+v", f.lastSpec.Replicas, f.lastSpec.Autoscale)
	}
	if _, errOut, code := runCLI(t, f.host, "", "service", "update", "-d", "--autoscale", "min=1,max=4,memory=80%", "web"); code != 0 {
		t.Fatalf("update: exit %d: %s", code, errOut)
	}
	if a := f.lastSpec.Autoscale; a == nil || *a != (api.AutoscaleConfig{Min: 1, Max: 4, MemoryPercent: 80}) || f.lastSpec.Replicas != 2 {
		t.Fatalf("update sent replicas %d autoscale %+v", f.lastSpec.Replicas, f.lastSpec.Autoscale)
	}
	if _, errOut, code := runCLI(t, f.host, "", "service", "update", "-d", "--autoscale", "off", "web"); code != 0 {
		t.Fatalf("update off: exit %d: %s", code, errOut)
	}
	if f.lastSpec.Autoscale != nil {
		t.Fatalf("off sent autoscale %+v", f.lastSpec.Autoscale)
	}

	g := newFakeAgent(t)
	if _, errOut, code := runCLI(t, g.host, "", "service", "create", "-d", "--name", "web", "--replicas", "4", "--autoscale", "min=2,max=10,cpu=70%", "busybox"); code != 0 {
		t.Fatalf("create with replicas: exit %d: %s", code, errOut)
	}
	if g.lastSpec.Replicas != 4 {
		t.Fatalf("create with --replicas 4 sent %d", g.lastSpec.Replicas)
	}
	_, errOut, code := runCLI(t, g.host, "", "service", "create", "-d", "--name", "bad", "--autoscale", "min=2,max=1,cpu=70%", "busybox")
	if code != 2 || !strings.Contains(errOut, "--autoscale: max=1: must be at least min (2)") {
		t.Fatalf("bad autoscale: exit %d: %s", code, errOut)
	}
}

// TestCLIServiceMounts: --mount on create, --mount-add/--mount-rm on update
// (by target) reach the agent as the spec's mounts; a bad mount sends
// nothing.
func TestCLIServiceMounts(t *testing.T) {
	f := newFakeAgent(t)
	_, errOut, code := runCLI(t, f.host, "", "service", "create", "-d", "--name", "web",
		"--mount", "type=volume,source=data,target=/data", "--mount", "type=tmpfs,target=/run", "busybox", "sleep", "1000")
	want := []api.Mount{{Type: "volume", Source: "data", Target: "/data"}, {Type: "tmpfs", Target: "/run"}}
	if code != 0 || !reflect.DeepEqual(f.lastSpec.Mounts, want) {
		t.Fatalf("create: exit %d %s, mounts %+v", code, errOut, f.lastSpec.Mounts)
	}
	_, errOut, code = runCLI(t, f.host, "", "service", "update", "-d", "--mount-rm", "/run/",
		"--mount-add", "type=bind,source=/srv,target=/data,readonly", "web")
	want = []api.Mount{{Type: "bind", Source: "/srv", Target: "/data", ReadOnly: true}}
	if code != 0 || !reflect.DeepEqual(f.lastSpec.Mounts, want) {
		t.Fatalf("update: exit %d %s, mounts %+v", code, errOut, f.lastSpec.Mounts)
	}
	f.lastSpec = api.ServiceSpec{}
	_, errOut, code = runCLI(t, f.host, "", "service", "create", "-d", "--name", "x", "--mount", "type=bind,source=rel,target=/x", "busybox")
	if code != 2 || !strings.Contains(errOut, "--mount") || f.lastSpec.Name != "" {
		t.Fatalf("bad mount: exit %d, stderr %q, sent %+v", code, errOut, f.lastSpec)
	}
}
