package ocispec

// Why this file: runc compiles the seccomp profile with libseccomp inside
// every container's `runc init`, and that compile is the largest single CPU
// cost of a container start (about 30 ms of a 70 ms start on a small VM).
// Its cost grows with the number of architectures in the profile: Docker's
// default profile lists x86_64, x86 and x32 on amd64, and each one is a full
// copy of the rule set. Two things keep it down without weakening anything:
//
//   - The profile is converted from moby/profiles once per capability set
//     and cached; BuildSpec hands out deep copies.
//   - The x32 ABI is left out when the running kernel cannot execute x32
//     system calls (CONFIG_X86_X32_ABI off, as on most kernels today). Rules
//     for an ABI the kernel rejects can never match a real system call.
//     Without x32 in the filter, libseccomp treats an x32-numbered call as a
//     foreign architecture (the filter's bad-arch action) instead of letting
//     the kernel answer ENOSYS: stricter, never looser. The x86 (ia32) ABI
//     stays, so 32-bit programs behave as under Docker.

import (
	"errors"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"

	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

var seccompCache struct {
	mu       sync.Mutex
	byCaps   map[string]*specs.LinuxSeccomp
	x32Once  sync.Once
	x32Works bool
}

// defaultSeccomp returns Docker's default profile for s's capabilities,
// without the ABIs this kernel cannot run. The result is the caller's to
// modify.
func defaultSeccomp(s *specs.Spec) (*specs.LinuxSeccomp, error) {
	key := ""
	if s.Process != nil && s.Process.Capabilities != nil {
		key = strings.Join(s.Process.Capabilities.Bounding, ",")
	}
	seccompCache.mu.Lock()
	sc, ok := seccompCache.byCaps[key]
	if !ok {
		var err error
		if sc, err = seccomp.GetDefaultProfile(s); err != nil {
			seccompCache.mu.Unlock()
			return nil, err
		}
		if !kernelRunsX32() {
			sc.Architectures = slices.DeleteFunc(sc.Architectures, func(a specs.Arch) bool { return a == specs.ArchX32 })
		}
		if seccompCache.byCaps == nil {
			seccompCache.byCaps = map[string]*specs.LinuxSeccomp{}
		}
		seccompCache.byCaps[key] = sc // never modified after this
	}
	seccompCache.mu.Unlock()
	return cloneSeccomp(sc), nil
}

// kernelRunsX32 reports whether this kernel executes x32 system calls. It
// probes once with an x32-numbered getpid: a kernel without the x32 ABI
// answers ENOSYS. Anything else (success, or EPERM from a seccomp filter
// around the agent) counts as "runs x32", which keeps the full profile.
func kernelRunsX32() bool {
	if goruntime.GOARCH != "amd64" {
		return false // the profile has no x32 entry elsewhere
	}
	seccompCache.x32Once.Do(func() {
		const x32SyscallBit = 0x40000000
		_, _, errno := unix.RawSyscall(x32SyscallBit|39 /* getpid on x86_64 and x32 */, 0, 0, 0)
		seccompCache.x32Works = !errors.Is(errno, unix.ENOSYS)
	})
	return seccompCache.x32Works
}

// cloneSeccomp deep-copies a profile so that callers cannot alter the cache.
func cloneSeccomp(in *specs.LinuxSeccomp) *specs.LinuxSeccomp {
	out := *in
	out.Architectures = slices.Clone(in.Architectures)
	out.Flags = slices.Clone(in.Flags)
	out.DefaultErrnoRet = clonePtr(in.DefaultErrnoRet)
	out.Syscalls = make([]specs.LinuxSyscall, len(in.Syscalls))
	for i, sc := range in.Syscalls {
		sc.Names = slices.Clone(sc.Names)
		sc.Args = slices.Clone(sc.Args)
		sc.ErrnoRet = clonePtr(sc.ErrnoRet)
		out.Syscalls[i] = sc
	}
	return &out
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
