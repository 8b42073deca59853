// Package ocispec turns a container's settings into an OCI runtime spec
// (config.json for runc): Docker's default isolation, the standard and
// user mounts, cgroup limits and the seccomp profile. It is pure apart from
// reading the rootfs's passwd/group files (ResolveUser) and the kernel's
// x32 support (once); the runtime writes what it returns.
package ocispec

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/api/containeropts"
)

// Sentinel errors of spec building; the runtime returns them as its own
// (runtime.ErrNoCommand, runtime.ErrInvalidSpec are these values).
var (
	// ErrNoCommand: neither the spec nor the image says what to run.
	ErrNoCommand = errors.New("no command specified")
	// ErrInvalidSpec: a container spec is malformed (bad name, user, limits).
	ErrInvalidSpec = errors.New("invalid container spec")
)

// InitPath is where the init is bind-mounted (read-only) in containers.
const InitPath = "/.shoal/init"

// SeccompPath is where the seccomp program of a container whose init
// installs its filter is bind-mounted (read-only): SpecInput.SeccompProgram.
const SeccompPath = "/.shoal/seccomp"

// DefaultPath is the PATH a container gets when its image sets none.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// DefaultCapabilities is Docker's default capability set. Containers get it in
// the bounding, effective and permitted sets (not inheritable nor ambient).
var DefaultCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// MaskedPaths and ReadonlyPaths are Docker's defaults.
var (
	MaskedPaths = []string{
		"/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
		"/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
	}
	ReadonlyPaths = []string{
		"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
	}
)

// cpuPeriod is the CFS period used to turn nano CPUs into a quota.
const cpuPeriod = 100000

// SpecInput is everything BuildSpec needs; every path is a host path except
// Cwd. The caller resolves the image, user, command and environment first
// (see ResolveCommand, MergeEnv, ResolveUser).
type SpecInput struct {
	Hostname   string
	RootfsPath string // absolute, or relative to the bundle dir
	Args       []string
	Env        []string
	Cwd        string
	UID, GID   uint32
	ExtraGIDs  []uint32
	Limits     api.Resources
	// MemoryReservation is the memory soft limit (runc writes
	// memory.soft_limit_in_bytes, or memory.low on cgroup v2): under
	// memory pressure the kernel reclaims containers above theirs first.
	// Docker sets it from a service's memory reservation; 0: none.
	MemoryReservation int64
	CgroupsPath       string // CgroupParent/<id>
	// NetnsPath is the named network namespace to join; empty makes runc
	// create a fresh one.
	NetnsPath string
	// InitBinary is bind-mounted read-only at InitPath and runs as PID 1:
	// InitPath -- Args...
	InitBinary string
	// HostsPath, HostnamePath and ResolvConfPath are bind-mounted over the
	// container's /etc files when set.
	HostsPath      string
	HostnamePath   string
	ResolvConfPath string
	NoSeccomp      bool
	// SeccompProgram is the host file with the program runc compiles for
	// this container's seccomp profile (runtime/seccompprog). When set, the
	// profile stays out of the spec, the file is bind-mounted read-only at
	// SeccompPath and the init installs it before anything else runs
	// (InitPath -s SeccompPath -- Args...): what runc installs, without
	// runc compiling it at every start. Only for a container SeccompFor
	// says may (no CAP_SYS_ADMIN).
	SeccompProgram string
	// Files are secret and config files on a host tmpfs (runtime/secretfs's Prepare).
	Files []FileMount
	// Mounts are the user's mounts, after the standard ones; volume
	// sources are directories of VolumesDir (see ociMounts).
	Mounts     []api.Mount
	VolumesDir string
	// ReadOnlyRootfs makes runc remount the rootfs read-only once every
	// mount is in place (root.readonly): the mounts above keep their
	// own modes.
	ReadOnlyRootfs bool
	// CapAdd and CapDrop change DefaultCapabilities, Docker's way
	// (containeropts.Capabilities).
	CapAdd, CapDrop []string
	// Sysctls are written by runc in the container's namespaces
	// (containeropts.SysctlProblem says which may be).
	Sysctls map[string]string
	// Ulimits become the process's rlimits (containeropts.UlimitProblem).
	Ulimits []api.Ulimit
}

// BuildSpec turns in into an OCI runtime spec: Docker's default isolation
// (capabilities, masked and read-only paths, no-new-privileges, seccomp),
// the standard mounts, cgroup limits, and the tiny init as process 1 running
// in.Args. It has no side effects.
func BuildSpec(in SpecInput) (*specs.Spec, error) {
	if len(in.Args) == 0 {
		return nil, ErrNoCommand
	}
	if in.RootfsPath == "" || in.InitBinary == "" {
		return nil, fmt.Errorf("%w: rootfs and init binary are required", ErrInvalidSpec)
	}
	if in.Limits.MemoryBytes < 0 || in.Limits.NanoCPUs < 0 || in.Limits.Pids < 0 {
		return nil, fmt.Errorf("%w: negative limits", ErrInvalidSpec)
	}
	if in.Limits.MemoryBytes > 0 && in.Limits.MemoryBytes < api.MinMemoryLimit {
		return nil, fmt.Errorf("%w: memory limit %d below the 6MiB minimum", ErrInvalidSpec, in.Limits.MemoryBytes)
	}
	if in.MemoryReservation < 0 || in.Limits.MemoryBytes > 0 && in.MemoryReservation > in.Limits.MemoryBytes {
		return nil, fmt.Errorf("%w: memory reservation %d: want 0 to the memory limit %d", ErrInvalidSpec, in.MemoryReservation, in.Limits.MemoryBytes)
	}
	cwd := in.Cwd
	if cwd == "" {
		cwd = "/"
	}
	if !path.IsAbs(cwd) {
		cwd = "/" + cwd
	}
	mounts, err := Mounts(in)
	if err != nil {
		return nil, err
	}
	caps, err := containeropts.Capabilities(DefaultCapabilities, in.CapAdd, in.CapDrop)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidSpec, err)
	}
	if in.SeccompProgram != "" {
		if in.NoSeccomp {
			return nil, fmt.Errorf("%w: a seccomp program without seccomp", ErrInvalidSpec)
		}
		if !initMayLoad(caps) {
			return nil, fmt.Errorf("%w: the init cannot install the filter of a container with %s or %s", ErrInvalidSpec, capSysAdmin, capSysPtrace)
		}
	}
	args := append(initArgs(in.SeccompProgram != ""), in.Args...)
	// 0, as Docker sets it: runc leaves an unset score as its own, which
	// is the agent's (-500 under scripts/packaging/shoal.service), so
	// every container, and every process exec'd in one (execproc copies
	// this Process), would be spared by the OOM killer before the host's
	// own processes.
	oomScoreAdj := 0

	s := &specs.Spec{
		Version:  specs.Version,
		Hostname: in.Hostname,
		Root:     &specs.Root{Path: in.RootfsPath, Readonly: in.ReadOnlyRootfs},
		Process: &specs.Process{
			Args: args,
			Env:  slices.Clone(in.Env),
			Cwd:  cwd,
			User: specs.User{UID: in.UID, GID: in.GID, AdditionalGids: slices.Clone(in.ExtraGIDs)},
			Capabilities: &specs.LinuxCapabilities{
				Bounding:  caps,
				Effective: slices.Clone(caps),
				Permitted: slices.Clone(caps),
			},
			NoNewPrivileges: true,
			OOMScoreAdj:     &oomScoreAdj,
		},
		Mounts: mounts,
		Linux: &specs.Linux{
			CgroupsPath: in.CgroupsPath,
			Resources:   resources(in.Limits, in.MemoryReservation),
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace},
				{Type: specs.MountNamespace},
				{Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace},
				{Type: specs.NetworkNamespace, Path: in.NetnsPath},
			},
			MaskedPaths:   slices.Clone(MaskedPaths),
			ReadonlyPaths: slices.Clone(ReadonlyPaths),
		},
	}
	for _, k := range slices.Sorted(maps.Keys(in.Sysctls)) {
		if p := containeropts.SysctlProblem(k, in.Sysctls[k]); p != "" {
			return nil, fmt.Errorf("%w: sysctl %s", ErrInvalidSpec, p)
		}
	}
	if len(in.Sysctls) > 0 {
		s.Linux.Sysctl = maps.Clone(in.Sysctls)
	}
	if p := containeropts.UlimitsProblems("ulimits", in.Ulimits); len(p) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrInvalidSpec, strings.Join(p, "; "))
	}
	for _, u := range in.Ulimits {
		typ, _ := containeropts.RlimitType(u.Name)
		s.Process.Rlimits = append(s.Process.Rlimits, specs.POSIXRlimit{
			Type: typ, Soft: containeropts.RlimitValue(u.Soft), Hard: containeropts.RlimitValue(u.Hard)})
	}
	if !in.NoSeccomp && in.SeccompProgram == "" {
		sc, err := defaultSeccomp(s)
		if err != nil {
			return nil, fmt.Errorf("default seccomp profile: %w", err)
		}
		s.Linux.Seccomp = sc
	}
	return s, nil
}

func resources(l api.Resources, reservation int64) *specs.LinuxResources {
	r := &specs.LinuxResources{
		Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
	}
	if l.MemoryBytes > 0 || reservation > 0 {
		r.Memory = &specs.LinuxMemory{}
	}
	if l.MemoryBytes > 0 {
		m := l.MemoryBytes
		r.Memory.Limit = &m
	}
	if reservation > 0 {
		r.Memory.Reservation = &reservation
	}
	if l.NanoCPUs > 0 {
		period := uint64(cpuPeriod)
		// Not NanoCPUs * cpuPeriod / 1e9: the product overflows int64.
		quota := l.NanoCPUs / (1e9 / cpuPeriod)
		if quota < 1000 { // the kernel's minimum quota is 1ms
			quota = 1000
		}
		r.CPU = &specs.LinuxCPU{Period: &period, Quota: &quota}
	}
	if l.Pids > 0 {
		p := l.Pids
		r.Pids = &specs.LinuxPids{Limit: &p}
	}
	return r
}

// Mounts is the mount list BuildSpec puts in the spec, in runc's order: the
// standard mounts, the /etc and init bind mounts, the user's mounts, then
// the prepared files. It reads only in's mount fields (HostsPath,
// HostnamePath, ResolvConfPath, InitBinary, SeccompProgram, Mounts,
// VolumesDir, Files), so the runtime can ask for it before the rest of the
// input is known (it decides the rootfs's mountpoints layer from it).
func Mounts(in SpecInput) ([]specs.Mount, error) {
	userMounts, err := ociMounts(in.Mounts, in.VolumesDir)
	if err != nil {
		return nil, err
	}
	ms := append(defaultMounts(in), append(userMounts, fileMounts(in.Files)...)...)
	// Parents before children, as docker orders them: runc mounts in
	// order, so a volume at /etc (or /run) listed after /etc/hosts (or a
	// secret under /run/secrets) hid the file, and the container lost its
	// name resolution (found by the anet audit). Stable: mounts of one
	// depth keep their order.
	slices.SortStableFunc(ms, func(a, b specs.Mount) int {
		return cmp.Compare(mountDepth(a.Destination), mountDepth(b.Destination))
	})
	return ms, nil
}

// mountDepth is how many names destination has ("/etc/hosts": 2).
func mountDepth(destination string) int {
	return len(strings.FieldsFunc(path.Clean(destination), func(r rune) bool { return r == '/' }))
}

func defaultMounts(in SpecInput) []specs.Mount {
	ms := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
	}
	bind := func(dst, src string, ro bool) {
		if src == "" {
			return
		}
		opts := []string{"rbind", "rprivate", "nosuid", "nodev"}
		if ro {
			opts = append(opts, "ro")
		}
		ms = append(ms, specs.Mount{Destination: dst, Type: "bind", Source: src, Options: opts})
	}
	bind("/etc/hosts", in.HostsPath, false)
	bind("/etc/hostname", in.HostnamePath, false)
	bind("/etc/resolv.conf", in.ResolvConfPath, false)
	bind(InitPath, in.InitBinary, true)
	bind(SeccompPath, in.SeccompProgram, true)
	return ms
}

// ResolveCommand combines the spec's and the image's entrypoint and command
// with Docker's rules: a spec entrypoint replaces the image's and drops the
// image's Cmd; a spec command replaces the image's Cmd.
func ResolveCommand(img api.ImageConfig, entrypoint, command []string) ([]string, error) {
	ep := img.Entrypoint
	cmd := img.Cmd
	if len(entrypoint) > 0 {
		ep = entrypoint
		cmd = nil
	}
	if len(command) > 0 {
		cmd = command
	}
	args := append(slices.Clone(ep), cmd...)
	if len(args) == 0 {
		return nil, ErrNoCommand
	}
	return args, nil
}

// MergeEnv builds a container's environment: PATH (DefaultPath unless the
// image or spec sets one), HOSTNAME, then the image's variables overridden by
// the spec's. Entries without '=' in spec are dropped. Order is stable.
func MergeEnv(imageEnv, specEnv []string, hostname string) []string {
	var keys []string
	vals := map[string]string{}
	set := func(kv string) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return
		}
		if _, seen := vals[k]; !seen {
			keys = append(keys, k)
		}
		vals[k] = v
	}
	set("PATH=" + DefaultPath)
	if hostname != "" {
		set("HOSTNAME=" + hostname)
	}
	for _, kv := range imageEnv {
		set(kv)
	}
	for _, kv := range specEnv {
		set(kv)
	}
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, k+"="+vals[k])
	}
	return out
}

// ResolveUser turns a Docker user string (uid, uid:gid, name, name:group,
// empty = root) into numeric IDs, looking names up in the rootfs's
// /etc/passwd and /etc/group, read as the container sees them and never
// from outside the rootfs (readColonFile). Supplementary groups are the
// groups that list the user by name. Missing files are fine for numeric
// users.
func ResolveUser(rootfs, user string) (uid, gid uint32, extra []uint32, err error) {
	if user == "" {
		user = "0"
	}
	userPart, groupPart, hasGroup := strings.Cut(user, ":")
	passwd := readColonFile(rootfs, "/etc/passwd")
	groups := readColonFile(rootfs, "/etc/group")

	name := ""
	if n, perr := strconv.ParseUint(userPart, 10, 32); perr == nil {
		uid = uint32(n)
		for _, f := range passwd {
			if len(f) >= 4 && f[2] == userPart {
				name = f[0]
				if g, e := strconv.ParseUint(f[3], 10, 32); e == nil {
					gid = uint32(g)
				}
				break
			}
		}
	} else {
		found := false
		for _, f := range passwd {
			if len(f) >= 4 && f[0] == userPart {
				u, e1 := strconv.ParseUint(f[2], 10, 32)
				g, e2 := strconv.ParseUint(f[3], 10, 32)
				if e1 != nil || e2 != nil {
					continue
				}
				uid, gid, name, found = uint32(u), uint32(g), f[0], true
				break
			}
		}
		if !found {
			return 0, 0, nil, fmt.Errorf("%w: unable to find user %s: no matching entries in passwd file", ErrInvalidSpec, userPart)
		}
	}
	if hasGroup {
		if g, perr := strconv.ParseUint(groupPart, 10, 32); perr == nil {
			gid = uint32(g)
		} else {
			found := false
			for _, f := range groups {
				if len(f) >= 3 && f[0] == groupPart {
					if g, e := strconv.ParseUint(f[2], 10, 32); e == nil {
						gid, found = uint32(g), true
						break
					}
				}
			}
			if !found {
				return 0, 0, nil, fmt.Errorf("%w: unable to find group %s: no matching entries in group file", ErrInvalidSpec, groupPart)
			}
		}
	}
	if name != "" && !hasGroup {
		for _, f := range groups {
			if len(f) < 4 {
				continue
			}
			g, e := strconv.ParseUint(f[2], 10, 32)
			if e != nil || uint32(g) == gid {
				continue
			}
			if slices.Contains(strings.Split(f[3], ","), name) {
				extra = append(extra, uint32(g))
			}
		}
	}
	return uid, gid, extra, nil
}

// readColonFile reads the passwd-style file p of rootfs as fields, as the
// container sees it (ReadFileInRoot: links resolve inside the rootfs, only
// a regular file is read, its first 4 MiB). A missing, unreadable or
// non-regular file reads as empty.
func readColonFile(rootfs, p string) [][]string {
	b, err := ReadFileInRoot(rootfs, p, 4<<20)
	if err != nil {
		return nil
	}
	var out [][]string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, strings.Split(line, ":"))
	}
	return out
}

// HostsFile renders a container's /etc/hosts.
func HostsFile(hostname, ip string, extra []string) string {
	var b strings.Builder
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	if ip != "" {
		fmt.Fprintf(&b, "%s\t%s\n", ip, hostname)
	} else if hostname != "" {
		fmt.Fprintf(&b, "127.0.1.1\t%s\n", hostname)
	}
	for _, e := range extra {
		// Docker's --add-host form is host:ip.
		h, addr, ok := strings.Cut(e, ":")
		if !ok || h == "" || addr == "" {
			continue
		}
		fmt.Fprintf(&b, "%s\t%s\n", addr, h)
	}
	return b.String()
}

// ResolvConf renders a container's /etc/resolv.conf from the host's: loopback
// nameservers are dropped (they do not exist inside the netns), dns (when
// set) replaces the nameservers, and 8.8.8.8 style fallbacks are not added.
func ResolvConf(host string, dns []string) string {
	var b strings.Builder
	for _, line := range strings.Split(host, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "nameserver" {
			if len(dns) > 0 || strings.HasPrefix(f[1], "127.") || f[1] == "::1" {
				continue
			}
		}
		if strings.TrimSpace(line) == "" {
			continue
		}
		b.WriteString(strings.TrimSpace(line))
		b.WriteByte('\n')
	}
	for _, ns := range dns {
		fmt.Fprintf(&b, "nameserver %s\n", ns)
	}
	return b.String()
}
