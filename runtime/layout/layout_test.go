package layout

import (
	"path/filepath"
	"testing"
)

func TestFor(t *testing.T) {
	const root, id = "/var/lib/shoal/runtime", "abc123"
	d := root + "/containers/" + id
	run := "/run/shoal/containers-n1/" + id
	tests := []struct {
		name   string
		runDir string
		want   Paths
	}{
		{"old layout: all in the container's dir, the netns in Root/netns", "", Paths{
			Dir: d, Upper: d + "/upper", Work: d + "/work", State: d + "/state", Log: d + "/log", Record: d + "/container.json",
			Run: "", Bundle: d, Rootfs: d + "/rootfs", Config: d + "/config.json",
			Hosts: d + "/hosts", Hostname: d + "/hostname", Resolv: d + "/resolv.conf",
			InitLog: d + "/init.log", PidFile: d + "/init.pid", HealthPid: d + "/health.pid",
			Netns: root + "/netns/" + id,
		}},
		{"run Dir: the bundle and volatile files there, the rest in the container's dir", run, Paths{
			Dir: d, Upper: d + "/upper", Work: d + "/work", State: d + "/state", Log: d + "/log", Record: d + "/container.json",
			Run: run, Bundle: run, Rootfs: run + "/rootfs", Config: run + "/config.json",
			Hosts: run + "/hosts", Hostname: run + "/hostname", Resolv: run + "/resolv.conf",
			InitLog: run + "/init.log", PidFile: run + "/init.pid", HealthPid: run + "/health.pid",
			Netns: run + "/netns",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := For(root, id, tt.runDir)
			if got != tt.want {
				t.Errorf("For(%q, %q, %q) =\n%+v\nwant\n%+v", root, id, tt.runDir, got, tt.want)
			}
			// BuildSpec gets RootfsPath "rootfs", relative to the bundle.
			if got.Rootfs != filepath.Join(got.Bundle, "rootfs") {
				t.Errorf("rootfs %s is not the bundle's", got.Rootfs)
			}
		})
	}
}

// TestWithEtcTmpfs: a run dir's /etc files move to Run/etc, the old
// layout keeps them in the container's dir.
func TestWithEtcTmpfs(t *testing.T) {
	const root, id = "/var/lib/shoal/runtime", "abc123"
	run := "/run/shoal/containers-n1/" + id
	want := For(root, id, run)
	want.Etc = run + "/etc"
	want.Hosts, want.Hostname, want.Resolv = run+"/etc/hosts", run+"/etc/hostname", run+"/etc/resolv.conf"
	if got := For(root, id, run).WithEtcTmpfs(); got != want {
		t.Errorf("run dir:\n%+v\nwant\n%+v", got, want)
	}
	if old := For(root, id, ""); old.WithEtcTmpfs() != old {
		t.Errorf("old layout: %+v", old.WithEtcTmpfs())
	}
}

func TestRunDirFor(t *testing.T) {
	tests := []struct {
		runRoot string
		takes   bool
		want    string
	}{
		{"/run/shoal/containers-n1", true, "/run/shoal/containers-n1/abc"},
		{"/run/shoal/containers-n1", false, ""}, // a supervisor from before Request.Bundle: the old layout
		{"", true, ""},                          // no RunRoot: the old layout
		{"", false, ""},
	}
	for _, tt := range tests {
		if got := RunDirFor(tt.runRoot, "abc", tt.takes); got != tt.want {
			t.Errorf("RunDirFor(%q, abc, %v) = %q, want %q", tt.runRoot, tt.takes, got, tt.want)
		}
	}
}

func TestValidRunDir(t *testing.T) {
	for _, tt := range []struct {
		id, runDir string
		want       bool
	}{
		{"abc", "", true},
		{"abc", "/run/x/abc", true},
		{"abc", "/run/x/abd", false},
		{"abc", "run/x/abc", false},
		{"abc", "/run/x/../abc", false},
		{"abc", "/run/x/abc/", false},
		{"abc", "/", false},
		{"..", "/run/..", false},
	} {
		if got := ValidRunDir(tt.runDir, tt.id); got != tt.want {
			t.Errorf("validRunDir(id %q, run dir %q) = %v, want %v", tt.id, tt.runDir, got, tt.want)
		}
	}
}
