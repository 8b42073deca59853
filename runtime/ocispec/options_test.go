package ocispec

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/shoal-org/shoal/api"
)

// TestBuildSpecOptions: the service options of a container (read-only
// rootfs, capabilities, sysctls, rlimits) as the OCI config runc gets
// says them, and the values BuildSpec refuses.
func TestBuildSpecOptions(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(*SpecInput)
		wantErr string
		check   func(t *testing.T, s *specs.Spec)
	}{
		{
			name: "writable rootfs by default",
			check: func(t *testing.T, s *specs.Spec) {
				if s.Root.Readonly {
					t.Error("root read-only")
				}
			},
		},
		{
			name: "read-only rootfs, /etc files and mounts stay writable",
			mod:  func(in *SpecInput) { in.ReadOnlyRootfs = true },
			check: func(t *testing.T, s *specs.Spec) {
				if !s.Root.Readonly {
					t.Error("root not read-only")
				}
				for _, dst := range []string{"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/dev/shm"} {
					if m := mountOf(s, dst); m == nil || hasOption(m, "ro") {
						t.Errorf("mount %s = %+v, want it there and writable", dst, m)
					}
				}
			},
		},
		{
			name: "cap_add and cap_drop change the default set in bounding, effective and permitted",
			mod:  func(in *SpecInput) { in.CapAdd, in.CapDrop = []string{"NET_ADMIN"}, []string{"CAP_NET_RAW", "mknod"} },
			check: func(t *testing.T, s *specs.Spec) {
				c := s.Process.Capabilities
				for _, set := range [][]string{c.Bounding, c.Effective, c.Permitted} {
					if !slices.Contains(set, "CAP_NET_ADMIN") || slices.Contains(set, "CAP_NET_RAW") || slices.Contains(set, "CAP_MKNOD") ||
						!slices.Contains(set, "CAP_CHOWN") || len(set) != len(DefaultCapabilities)-1 {
						t.Errorf("cap set = %v", set)
					}
				}
				if len(c.Inheritable) != 0 || len(c.Ambient) != 0 {
					t.Errorf("inheritable %v ambient %v", c.Inheritable, c.Ambient)
				}
			},
		},
		{
			name: "cap_drop ALL keeps only the added ones",
			mod:  func(in *SpecInput) { in.CapAdd, in.CapDrop = []string{"NET_BIND_SERVICE"}, []string{"ALL"} },
			check: func(t *testing.T, s *specs.Spec) {
				if c := s.Process.Capabilities; !slices.Equal(c.Bounding, []string{"CAP_NET_BIND_SERVICE"}) || !slices.Equal(c.Effective, c.Bounding) {
					t.Errorf("caps = %+v", c)
				}
			},
		},
		{
			name: "sysctls",
			mod: func(in *SpecInput) {
				in.Sysctls = map[string]string{"net.core.somaxconn": "1024", "kernel.shmmax": "1"}
			},
			check: func(t *testing.T, s *specs.Spec) {
				if len(s.Linux.Sysctl) != 2 || s.Linux.Sysctl["net.core.somaxconn"] != "1024" || s.Linux.Sysctl["kernel.shmmax"] != "1" {
					t.Errorf("sysctl = %v", s.Linux.Sysctl)
				}
			},
		},
		{name: "host sysctl", mod: func(in *SpecInput) { in.Sysctls = map[string]string{"kernel.pid_max": "9"} }, wantErr: `"kernel.pid_max" is not namespaced`},
		{
			name: "ulimits are rlimits, -1 unlimited",
			mod: func(in *SpecInput) {
				in.Ulimits = []api.Ulimit{{Name: "nofile", Soft: 1024, Hard: 2048}, {Name: "core", Soft: 0, Hard: -1}}
			},
			check: func(t *testing.T, s *specs.Spec) {
				want := []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 1024, Hard: 2048}, {Type: "RLIMIT_CORE", Soft: 0, Hard: ^uint64(0)}}
				if !reflect.DeepEqual(s.Process.Rlimits, want) {
					t.Errorf("rlimits = %+v, want %+v", s.Process.Rlimits, want)
				}
			},
		},
		{
			name: "no ulimits, no rlimits",
			check: func(t *testing.T, s *specs.Spec) {
				if len(s.Process.Rlimits) != 0 {
					t.Errorf("rlimits = %+v", s.Process.Rlimits)
				}
			},
		},
		{name: "soft above hard", mod: func(in *SpecInput) { in.Ulimits = []api.Ulimit{{Name: "nproc", Soft: 2, Hard: 1}} }, wantErr: "soft limit 2 above the hard limit 1"},
		{name: "unknown capability", mod: func(in *SpecInput) { in.CapAdd = []string{"FLY"} }, wantErr: `cap_add: unknown capability "FLY"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := baseInput()
			if tt.mod != nil {
				tt.mod(&in)
			}
			s, err := BuildSpec(in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, s)
		})
	}
}

func hasOption(m *specs.Mount, opt string) bool {
	for _, o := range m.Options {
		if o == opt {
			return true
		}
	}
	return false
}
