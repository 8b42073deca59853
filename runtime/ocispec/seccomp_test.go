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
