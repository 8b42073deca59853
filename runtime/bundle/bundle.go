// Package bundle writes a container's OCI bundle files: its /etc/hosts,
// /etc/hostname and /etc/resolv.conf (on a small tmpfs of their own, see
// Write), and its config.json, built by
// ocispec.BuildSpec from the container's settings, its image's config and
// the runtime's (Host). The runtime writes them when it creates a
// container, and again when a start after a reboot finds the run dir
// empty, from the container's record: both go through Write, so the two
// come out the same (TestRebootEmptiesRunDir).
//
// It exists apart from the runtime because it needs of a container only
// its settings and its paths (runtime/layout), not its life.
package bundle

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/layout"
	"github.com/shoal-org/shoal/runtime/ocispec"
	"github.com/shoal-org/shoal/runtime/rootfs"
)

// Host is what the bundles of one runtime share, from its Config.
type Host struct {
	InitBinary   string
	VolumesDir   string
	CgroupParent string
	// ResolvConf is the host file the containers' resolv.conf derives
	// from. DNSFunc, asked at each Write, else DNS, replace its
	// nameservers (the runtime's Config fields of those names).
	ResolvConf string
	DNS        []string
	DNSFunc    func() []string
	NoSeccomp  bool
	// SeccompProgram, when set, gives the host file with runc's program
	// for a seccomp profile, or "" (runtime/seccompprog's Cache.Program):
	// a container that may (ocispec.SeccompFor) then has its init install
	// it, and runc compiles nothing at its start.
	SeccompProgram func(*specs.LinuxSeccomp) string
}

// seccompProgram is the program file for a container with these
// capability changes, or "" when runc is to compile its profile.
func (h Host) seccompProgram(capAdd, capDrop []string) string {
	if h.NoSeccomp || h.SeccompProgram == nil {
		return ""
	}
	profile, initMay, err := ocispec.SeccompFor(capAdd, capDrop)
	if err != nil || !initMay {
		return "" // a bad capability is BuildSpec's to report
	}
	return h.SeccompProgram(profile)
}

// nameservers returns the nameservers containers get: DNSFunc's answer,
// else DNS (empty: those of ResolvConf).
func (h Host) nameservers() []string {
	if h.DNSFunc != nil {
		if ns := h.DNSFunc(); len(ns) > 0 {
			return ns
		}
	}
	return h.DNS
}

// Input is what a container's bundle files are made of, besides the
// runtime's Host: the runtime gathers it for a new container, and from a
// container's record for a rebuild.
type Input struct {
	ID, Hostname, IP string
	Args             []string
	Image            api.ImageConfig
	// From the container's spec.
	User, Workdir   string
	Env, ExtraHosts []string
	Limits          api.Resources
	// MemoryReservation: Spec.MemoryReservation.
	MemoryReservation int64
	Files             []ocispec.FileMount
	Mounts            []api.Mount
	ReadOnly          bool
	CapAdd, CapDrop   []string
	Sysctls           map[string]string
	Ulimits           []api.Ulimit

	uid, gid  uint32
	extraGIDs []uint32
}

// ResolveUser looks the spec's user (else the image's) up in the mounted
// rootfs at p. Write uses what it found.
func (b *Input) ResolveUser(p layout.Paths) error {
	user := b.User
	if user == "" {
		user = b.Image.User
	}
	var err error
	b.uid, b.gid, b.extraGIDs, err = ocispec.ResolveUser(p.Rootfs, user)
	return err
}

// MountInput is the part of a container's spec input that decides its
// mounts (and so its mountpoints layer).
func MountInput(h Host, p layout.Paths, b Input) ocispec.SpecInput {
	return ocispec.SpecInput{
		InitBinary:     h.InitBinary,
		SeccompProgram: h.seccompProgram(b.CapAdd, b.CapDrop),
		HostsPath:      p.Hosts,
		HostnamePath:   p.Hostname,
		ResolvConfPath: p.Resolv,
		Files:          b.Files,
		Mounts:         b.Mounts,
		VolumesDir:     h.VolumesDir,
	}
}

// EtcRoom is what a container may add to its /etc files on their tmpfs
// (layout.Paths.Etc), beyond what Write puts there.
const EtcRoom = 1 << 20

// etcInodes is the tmpfs's inode limit: its root and the three files,
// and room for nothing much else (the container sees only the files).
const etcInodes = 8

// Write writes the container's /etc files and its bundle config at p.
// With aside, the config is written beside and renamed into place, so
// that a config that is there is complete.
//
// When p has an Etc dir, the files go on a fresh tmpfs mounted there
// (replacing whatever was mounted), of their size plus EtcRoom: the
// container keeps them writable, but what it writes is bounded, charged
// to its memory cgroup, and lands neither in the run dir's file system
// (the host's /run) nor on a disk. The tmpfs stays mounted until the
// container's removal takes it down (rootfs.Unmount(p.Etc)), a failed
// Write's too; the next Write replaces it.
func Write(h Host, p layout.Paths, b Input, aside bool) error {
	hostResolv, _ := os.ReadFile(h.ResolvConf)
	files := map[string]string{
		p.Hosts:    ocispec.HostsFile(b.Hostname, b.IP, b.ExtraHosts),
		p.Hostname: b.Hostname + "\n",
		p.Resolv:   ocispec.ResolvConf(string(hostResolv), h.nameservers()),
	}
	if p.Etc != "" {
		size := EtcRoom
		for _, content := range files {
			size += len(content) + os.Getpagesize() // a file's last page is whole
		}
		if err := mountEtc(p.Etc, size); err != nil {
			return err
		}
	}
	for f, content := range files {
		if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", f, err)
		}
	}
	in := MountInput(h, p, b)
	in.Hostname = b.Hostname
	in.RootfsPath = "rootfs"
	in.Args = b.Args
	in.Env = ocispec.MergeEnv(b.Image.Env, b.Env, b.Hostname)
	in.Cwd = b.Workdir
	if in.Cwd == "" {
		in.Cwd = b.Image.WorkingDir
	}
	in.UID, in.GID, in.ExtraGIDs = b.uid, b.gid, b.extraGIDs
	in.Limits, in.MemoryReservation = b.Limits, b.MemoryReservation
	in.CgroupsPath = filepath.Join(h.CgroupParent, b.ID)
	in.NetnsPath = p.Netns
	in.NoSeccomp = h.NoSeccomp
	in.ReadOnlyRootfs = b.ReadOnly
	in.CapAdd, in.CapDrop = b.CapAdd, b.CapDrop
	in.Sysctls = b.Sysctls
	in.Ulimits = b.Ulimits
	s, err := ocispec.BuildSpec(in)
	if err != nil {
		return err
	}
	raw, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encode bundle config: %w", err)
	}
	target := p.Config
	if aside {
		target += ".new"
	}
	if err := os.WriteFile(target, raw, 0o600); err != nil {
		return fmt.Errorf("write bundle config: %w", err)
	}
	if aside {
		return os.Rename(target, p.Config)
	}
	return nil
}

// mountEtc mounts a fresh tmpfs of size bytes at dir, after taking down
// what an earlier attempt left mounted there.
func mountEtc(dir string, size int) error {
	if err := rootfs.Unmount(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := rootfs.Tmpfs(dir, size, etcInodes); err != nil {
		return fmt.Errorf("/etc files: %w", err)
	}
	return nil
}
