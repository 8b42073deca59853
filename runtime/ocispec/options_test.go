package ocispec

import (
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
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
