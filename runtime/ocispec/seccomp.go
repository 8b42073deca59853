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
	"fmt"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/api/containeropts"
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

// Capabilities that keep a container's init from installing its seccomp
// filter in runc's place (SeccompFor), and the one an exec's wrapper needs
// to give up another.
const (
	capSysAdmin  = "CAP_SYS_ADMIN"
	capSysPtrace = "CAP_SYS_PTRACE"
	capSetpcap   = "CAP_SETPCAP"
)

// SeccompFor returns the seccomp profile BuildSpec gives a container with
// these capability changes, and whether its init may install runc's
// program of it instead of runc (SpecInput.SeccompProgram).
//
// Why not with CAP_SYS_ADMIN: such a container may mount, so it could put
// a file of its own over SeccompPath or InitPath, and every later `shoal
// exec` and health probe, which get their filter from the init in the
// container, would run under a filter the container chose. Without it the
// two read-only bind mounts are the host's files; and CAP_SYS_ADMIN is
// what an exec's wrapper holds to keep the container's processes from
// tracing it before its filter is on (WrapExec). Why not with
// CAP_SYS_PTRACE: it would let them trace the wrapper all the same.
// Profiles with flags, a listener or a notify action are left to runc
// too: the init installs a bare program, with no flags and no listener.
func SeccompFor(capAdd, capDrop []string) (*specs.LinuxSeccomp, bool, error) {
	caps, err := containeropts.Capabilities(DefaultCapabilities, capAdd, capDrop)
	if err != nil {
		return nil, false, fmt.Errorf("%w: %w", ErrInvalidSpec, err)
	}
	sc, err := defaultSeccomp(&specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: caps}}})
	if err != nil {
		return nil, false, fmt.Errorf("default seccomp profile: %w", err)
	}
	return sc, initMayLoad(caps) && bareProgram(sc), nil
}

// initMayLoad reports whether a container with these capabilities may have
// its init install its filter (SeccompFor says why not).
func initMayLoad(caps []string) bool {
	return !slices.Contains(caps, capSysAdmin) && !slices.Contains(caps, capSysPtrace)
}

// bareProgram reports whether sc compiles to a filter installed with no
// flags and no listener.
func bareProgram(sc *specs.LinuxSeccomp) bool {
	if len(sc.Flags) > 0 || sc.ListenerPath != "" || sc.DefaultAction == specs.ActNotify {
		return false
	}
	return !slices.ContainsFunc(sc.Syscalls, func(c specs.LinuxSyscall) bool { return c.Action == specs.ActNotify })
}

// initArgs is how the init starts a container's command: InitPath --,
// or InitPath -s SeccompPath -- when it installs the seccomp filter.
func initArgs(loadsFilter bool) []string {
	if loadsFilter {
		return []string{InitPath, "-s", SeccompPath, "--"}
	}
	return []string{InitPath, "--"}
}

// WrapExec makes proc, a process to exec in the container of spec s
// (`shoal exec`, a health probe, their settings taken from s), run through
// the container's init in its exec mode when the init installs the
// container's seccomp filter: runc finds no profile in s and would install
// none. It reports whether it did.
//
// The wrapper runs unfiltered from its execve to its seccomp(2) while the
// container's processes run, and they could trace it (same user, the same
// capabilities) and take it over. So proc gets CAP_SYS_ADMIN, which no
// process of the container can have (SeccompFor), and CAP_SETPCAP, which
// the wrapper needs to drop the first from its bounding set, in every set
// (the ambient one too, so that a wrapper run as another user than root
// keeps them through its execve). Once the filter is on, before CMD, the
// init gives up CAP_SYS_ADMIN, CAP_SETPCAP when the container lacks it
// (-x, a hex mask of capability numbers), and its inheritable and ambient
// sets, which containers' specs leave empty (runtime/init/shoal-init.c).
func WrapExec(s *specs.Spec, proc *specs.Process) bool {
	if s.Process == nil || s.Linux == nil || s.Linux.Seccomp != nil {
		return false
	}
	loads := initArgs(true)
	if len(s.Process.Args) <= len(loads) || !slices.Equal(s.Process.Args[:len(loads)], loads) {
		return false
	}
	caps := specs.LinuxCapabilities{}
	if proc.Capabilities != nil {
		caps = *proc.Capabilities
	}
	mask := uint64(1) << unix.CAP_SYS_ADMIN
	if !slices.Contains(caps.Bounding, capSetpcap) {
		mask |= 1 << unix.CAP_SETPCAP
	}
	for _, name := range []string{capSysAdmin, capSetpcap} {
		for _, set := range []*[]string{&caps.Bounding, &caps.Effective, &caps.Permitted, &caps.Inheritable, &caps.Ambient} {
			if !slices.Contains(*set, name) {
				*set = append(slices.Clone(*set), name)
			}
		}
	}
	proc.Capabilities = &caps
	proc.Args = slices.Concat(loads[:len(loads)-1], []string{"-x", strconv.FormatUint(mask, 16), "--"}, proc.Args)
	return true
}
