package ocispec

import (
	"reflect"
	goruntime "runtime"
	"slices"
	"testing"

	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestDefaultSeccompMatchesDocker(t *testing.T) {
	s, err := BuildSpec(baseInput())
	if err != nil {
		t.Fatal(err)
	}
	want, err := seccomp.GetDefaultProfile(s)
	if err != nil {
		t.Fatal(err)
	}
	got := s.Linux.Seccomp
	if !kernelRunsX32() {
		want.Architectures = slices.DeleteFunc(want.Architectures, func(a specs.Arch) bool { return a == specs.ArchX32 })
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("profile differs from Docker's default (less the ABIs the kernel cannot run)")
	}
	if goruntime.GOARCH == "amd64" && !slices.Contains(got.Architectures, specs.ArchX86) {
		t.Errorf("x86 (ia32) ABI dropped: %v", got.Architectures)
	}
	t.Logf("architectures %v, x32 runs: %v", got.Architectures, kernelRunsX32())
}

func TestDefaultSeccompCopies(t *testing.T) {
	a, err := BuildSpec(baseInput())
	if err != nil {
		t.Fatal(err)
	}
	a.Linux.Seccomp.Syscalls[0].Names[0] = "mangled"
	a.Linux.Seccomp.Architectures[0] = "mangled"
	b, err := BuildSpec(baseInput())
	if err != nil {
		t.Fatal(err)
	}
	if b.Linux.Seccomp.Syscalls[0].Names[0] == "mangled" || b.Linux.Seccomp.Architectures[0] == "mangled" {
		t.Fatal("BuildSpec hands out the cached profile, not a copy")
	}
}

func BenchmarkBuildSpec(b *testing.B) {
	in := baseInput()
	for i := 0; i < b.N; i++ {
		if _, err := BuildSpec(in); err != nil {
			b.Fatal(err)
		}
	}
}

func TestSeccompFor(t *testing.T) {
	tests := []struct {
		name            string
		capAdd, capDrop []string
		wantInitLoadsIt bool
		wantErr         bool
	}{
		{name: "Docker's default set", wantInitLoadsIt: true},
		{name: "a capability more", capAdd: []string{"NET_ADMIN"}, wantInitLoadsIt: true},
		{name: "capabilities less", capDrop: []string{"ALL"}, wantInitLoadsIt: true},
		{name: "CAP_SYS_ADMIN: it could mount over the program", capAdd: []string{"SYS_ADMIN"}},
		{name: "CAP_SYS_PTRACE: it could trace an exec's wrapper", capAdd: []string{"SYS_PTRACE"}},
		{name: "all of them", capAdd: []string{"ALL"}},
		{name: "unknown capability", capAdd: []string{"NOPE"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc, initLoadsIt, err := SeccompFor(tt.capAdd, tt.capDrop)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v", err)
			}
			if err != nil {
				return
			}
			if initLoadsIt != tt.wantInitLoadsIt {
				t.Errorf("init loads it = %v, want %v", initLoadsIt, tt.wantInitLoadsIt)
			}
			in := baseInput()
			in.CapAdd, in.CapDrop = tt.capAdd, tt.capDrop
			s, err := BuildSpec(in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(sc, s.Linux.Seccomp) {
				t.Error("the profile differs from the one BuildSpec gives runc")
			}
		})
	}
}

func TestBareProgram(t *testing.T) {
	base, _, err := SeccompFor(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		mod  func(*specs.LinuxSeccomp)
		want bool
	}{
		{name: "Docker's profile", mod: func(*specs.LinuxSeccomp) {}, want: true},
		{name: "flags", mod: func(sc *specs.LinuxSeccomp) { sc.Flags = []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagLog} }},
		{name: "listener", mod: func(sc *specs.LinuxSeccomp) { sc.ListenerPath = "/run/l.sock" }},
		{name: "notify by default", mod: func(sc *specs.LinuxSeccomp) { sc.DefaultAction = specs.ActNotify }},
		{name: "notify for one call", mod: func(sc *specs.LinuxSeccomp) { sc.Syscalls[3].Action = specs.ActNotify }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc := cloneSeccomp(base)
			tt.mod(sc)
			if got := bareProgram(sc); got != tt.want {
				t.Errorf("bareProgram = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWrapExec(t *testing.T) {
	loads := []string{InitPath, "-s", SeccompPath, "--"}
	defaults := &specs.LinuxCapabilities{Bounding: DefaultCapabilities, Effective: DefaultCapabilities, Permitted: DefaultCapabilities}
	noSetpcap := slices.DeleteFunc(slices.Clone(DefaultCapabilities), func(c string) bool { return c == "CAP_SETPCAP" })
	tests := []struct {
		name     string
		args     []string
		sc       *specs.LinuxSeccomp
		caps     *specs.LinuxCapabilities
		wantArgs []string // nil: not wrapped
		wantCaps []string // added to every set
	}{
		{name: "the init installs the filter", args: append(slices.Clone(loads), "sleep", "1"), caps: defaults,
			wantArgs: []string{InitPath, "-s", SeccompPath, "-x", "200000", "--", "id"}, wantCaps: []string{"CAP_SYS_ADMIN", "CAP_SETPCAP"}},
		{name: "a container without CAP_SETPCAP", args: append(slices.Clone(loads), "sleep", "1"),
			caps:     &specs.LinuxCapabilities{Bounding: noSetpcap, Effective: noSetpcap, Permitted: noSetpcap},
			wantArgs: []string{InitPath, "-s", SeccompPath, "-x", "200100", "--", "id"}, wantCaps: []string{"CAP_SYS_ADMIN", "CAP_SETPCAP"}},
		{name: "no capabilities at all", args: append(slices.Clone(loads), "sleep", "1"),
			wantArgs: []string{InitPath, "-s", SeccompPath, "-x", "200100", "--", "id"}, wantCaps: []string{"CAP_SYS_ADMIN", "CAP_SETPCAP"}},
		{name: "runc installs it", args: []string{InitPath, "--", "sleep", "1"}, sc: &specs.LinuxSeccomp{}, caps: defaults},
		{name: "no seccomp at all", args: []string{InitPath, "--", "sleep", "1"}, caps: defaults},
		{name: "the init's args but a profile too", args: append(slices.Clone(loads), "sleep"), sc: &specs.LinuxSeccomp{}, caps: defaults},
		{name: "another init", args: []string{"/sbin/tini", "-s", SeccompPath, "--", "x"}, caps: defaults},
		{name: "no command", args: loads, caps: defaults},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &specs.Spec{Process: &specs.Process{Args: tt.args, Capabilities: tt.caps}, Linux: &specs.Linux{Seccomp: tt.sc}}
			proc := *s.Process
			proc.Args = []string{"id"}
			wrapped := WrapExec(s, &proc)
			if wrapped != (tt.wantArgs != nil) || wrapped && !slices.Equal(proc.Args, tt.wantArgs) {
				t.Fatalf("wrapped %v, args %q; want %q", wrapped, proc.Args, tt.wantArgs)
			}
			if !wrapped {
				if proc.Capabilities != tt.caps || !slices.Equal(proc.Args, []string{"id"}) {
					t.Error("an exec not wrapped was changed")
				}
				return
			}
			c := proc.Capabilities
			for i, set := range [][]string{c.Bounding, c.Effective, c.Permitted, c.Inheritable, c.Ambient} {
				var base []string
				if tt.caps != nil {
					base = [][]string{tt.caps.Bounding, tt.caps.Effective, tt.caps.Permitted, tt.caps.Inheritable, tt.caps.Ambient}[i]
				}
				want := slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(base), tt.wantCaps...))))
				if got := slices.Sorted(slices.Values(set)); !slices.Equal(got, want) {
					t.Errorf("set %d = %v, want %v", i, got, want)
				}
			}
			if tt.caps != nil && (slices.Contains(tt.caps.Bounding, "CAP_SYS_ADMIN") || len(tt.caps.Ambient) > 0) {
				t.Error("the container's capabilities were changed in place")
			}
		})
	}
}
