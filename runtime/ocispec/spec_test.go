package ocispec

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/api"
)

func baseInput() SpecInput {
	return SpecInput{
		Hostname:       "abc",
		RootfsPath:     "rootfs",
		Args:           []string{"sleep", "10"},
		Env:            []string{"PATH=/bin"},
		Cwd:            "/work",
		CgroupsPath:    "/shoal-n1/abc",
		NetnsPath:      "/var/lib/shoal/runtime/netns/abc",
		InitBinary:     "/usr/bin/tini-static",
		HostsPath:      "/d/hosts",
		HostnamePath:   "/d/hostname",
		ResolvConfPath: "/d/resolv.conf",
	}
}

func mountOf(s *specs.Spec, dst string) *specs.Mount {
	for i := range s.Mounts {
		if s.Mounts[i].Destination == dst {
			return &s.Mounts[i]
		}
	}
	return nil
}

func TestBuildSpec(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(*SpecInput)
		wantErr bool
		check   func(t *testing.T, s *specs.Spec)
	}{
		{
			name: "process runs the init with the user command",
			check: func(t *testing.T, s *specs.Spec) {
				want := []string{InitPath, "--", "sleep", "10"}
				if !reflect.DeepEqual(s.Process.Args, want) {
					t.Errorf("args = %q, want %q", s.Process.Args, want)
				}
				if s.Process.Cwd != "/work" || s.Hostname != "abc" || s.Root.Path != "rootfs" {
					t.Errorf("cwd/hostname/root = %q %q %q", s.Process.Cwd, s.Hostname, s.Root.Path)
				}
				if !s.Process.NoNewPrivileges {
					t.Error("NoNewPrivileges not set")
				}
				// 0, not unset: runc leaves an unset one as the agent's
				// (-500 under the Debian unit), which the OOM killer would
				// then spare over the host's own processes.
				if s.Process.OOMScoreAdj == nil || *s.Process.OOMScoreAdj != 0 {
					t.Errorf("OOMScoreAdj = %v, want 0", s.Process.OOMScoreAdj)
				}
			},
		},
		{
			name: "docker default capabilities, none inheritable or ambient",
			check: func(t *testing.T, s *specs.Spec) {
				c := s.Process.Capabilities
				for _, set := range [][]string{c.Bounding, c.Effective, c.Permitted} {
					if !reflect.DeepEqual(set, DefaultCapabilities) {
						t.Errorf("cap set = %v", set)
					}
				}
				if len(c.Inheritable) != 0 || len(c.Ambient) != 0 {
					t.Errorf("inheritable %v ambient %v", c.Inheritable, c.Ambient)
				}
				if slices.Contains(c.Bounding, "CAP_SYS_ADMIN") || slices.Contains(c.Bounding, "CAP_NET_ADMIN") {
					t.Error("privileged capability granted")
				}
			},
		},
		{
			name: "namespaces with the agent's netns by path",
			check: func(t *testing.T, s *specs.Spec) {
				got := map[specs.LinuxNamespaceType]string{}
				for _, ns := range s.Linux.Namespaces {
					got[ns.Type] = ns.Path
				}
				want := map[specs.LinuxNamespaceType]string{
					specs.PIDNamespace: "", specs.MountNamespace: "", specs.IPCNamespace: "",
					specs.UTSNamespace: "", specs.NetworkNamespace: "/var/lib/shoal/runtime/netns/abc",
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("namespaces = %v", got)
				}
			},
		},
		{
			name: "masked and read-only paths",
			check: func(t *testing.T, s *specs.Spec) {
				if !slices.Contains(s.Linux.ReadonlyPaths, "/proc/sys") || !slices.Contains(s.Linux.MaskedPaths, "/proc/kcore") {
					t.Errorf("ro %v masked %v", s.Linux.ReadonlyPaths, s.Linux.MaskedPaths)
				}
			},
		},
		{
			name: "seccomp default profile",
			check: func(t *testing.T, s *specs.Spec) {
				if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != specs.ActErrno || len(s.Linux.Seccomp.Syscalls) == 0 {
					t.Fatalf("seccomp = %+v", s.Linux.Seccomp)
				}
			},
		},
		{
			name: "seccomp can be disabled",
			mod:  func(in *SpecInput) { in.NoSeccomp = true },
			check: func(t *testing.T, s *specs.Spec) {
				if s.Linux.Seccomp != nil {
					t.Error("seccomp set")
				}
			},
		},
		{
			name: "the init installs the seccomp program",
			mod:  func(in *SpecInput) { in.SeccompProgram = "/run/shoal/seccomp/k.bpf" },
			check: func(t *testing.T, s *specs.Spec) {
				if s.Linux.Seccomp != nil {
					t.Error("the profile is in the spec: runc would compile it as well")
				}
				if want := []string{InitPath, "-s", SeccompPath, "--", "sleep", "10"}; !slices.Equal(s.Process.Args, want) {
					t.Errorf("args = %q, want %q", s.Process.Args, want)
				}
				if m := mountOf(s, SeccompPath); m == nil || m.Source != "/run/shoal/seccomp/k.bpf" || !slices.Contains(m.Options, "ro") {
					t.Errorf("program mount = %+v", m)
				}
				if !s.Process.NoNewPrivileges {
					t.Error("no no_new_privs: the init could not install the filter")
				}
				proc := *s.Process
				proc.Args = []string{"true"}
				if !WrapExec(s, &proc) || !slices.Equal(proc.Args, []string{InitPath, "-s", SeccompPath, "-x", "200000", "--", "true"}) {
					t.Errorf("an exec's args = %q", proc.Args)
				}
			},
		},
		{
			name:    "no seccomp program for a container with CAP_SYS_ADMIN",
			mod:     func(in *SpecInput) { in.SeccompProgram = "/p.bpf"; in.CapAdd = []string{"SYS_ADMIN"} },
			wantErr: true,
		},
		{
			name:    "no seccomp program for a container with CAP_SYS_PTRACE",
			mod:     func(in *SpecInput) { in.SeccompProgram = "/p.bpf"; in.CapAdd = []string{"SYS_PTRACE"} },
			wantErr: true,
		},
		{
			name:    "no seccomp program without seccomp",
			mod:     func(in *SpecInput) { in.SeccompProgram = "/p.bpf"; in.NoSeccomp = true },
			wantErr: true,
		},
		{
			name: "standard and shoal mounts",
			check: func(t *testing.T, s *specs.Spec) {
				for _, dst := range []string{"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup",
					"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", InitPath} {
					if mountOf(s, dst) == nil {
						t.Errorf("no mount at %s", dst)
					}
				}
				if m := mountOf(s, "/sys"); !slices.Contains(m.Options, "ro") {
					t.Errorf("/sys not ro: %v", m.Options)
				}
				if m := mountOf(s, InitPath); m.Source != "/usr/bin/tini-static" || !slices.Contains(m.Options, "ro") {
					t.Errorf("init mount = %+v", m)
				}
				if proc := *s.Process; WrapExec(s, &proc) {
					t.Errorf("an exec wrapped for a container runc filters: %q", proc.Args)
				}
				// Nothing the agent or the supervisor reads is mounted in
				// the container: no state or log dir.
				for _, m := range s.Mounts {
					if strings.HasPrefix(m.Destination, "/.shoal/") && m.Destination != InitPath {
						t.Errorf("unexpected shoal mount %+v", m)
					}
				}
			},
		},
		{
			name: "no limits, devices denied",
			check: func(t *testing.T, s *specs.Spec) {
				r := s.Linux.Resources
				if r.Memory != nil || r.CPU != nil || r.Pids != nil {
					t.Errorf("unexpected limits %+v", r)
				}
				if len(r.Devices) != 1 || r.Devices[0].Allow || r.Devices[0].Access != "rwm" {
					t.Errorf("devices = %+v", r.Devices)
				}
				if s.Linux.CgroupsPath != "/shoal-n1/abc" {
					t.Errorf("cgroups path = %q", s.Linux.CgroupsPath)
				}
			},
		},
		{
			name: "memory, cpu and pids limits",
			mod: func(in *SpecInput) {
				in.Limits = api.Resources{MemoryBytes: 64 << 20, NanoCPUs: 500_000_000, Pids: 100}
			},
			check: func(t *testing.T, s *specs.Spec) {
				r := s.Linux.Resources
				if *r.Memory.Limit != 64<<20 {
					t.Errorf("memory = %d", *r.Memory.Limit)
				}
				if *r.CPU.Period != 100000 || *r.CPU.Quota != 50000 {
					t.Errorf("cpu = %d/%d", *r.CPU.Quota, *r.CPU.Period)
				}
				if *r.Pids.Limit != 100 {
					t.Errorf("pids = %d", *r.Pids.Limit)
				}
			},
		},
		{
			// As docker from a service's reservation: runc writes it as
			// memory.soft_limit_in_bytes (cgroup v1) or memory.low (v2).
			name: "memory reservation is the soft limit",
			mod:  func(in *SpecInput) { in.Limits.MemoryBytes, in.MemoryReservation = 64<<20, 32<<20 },
			check: func(t *testing.T, s *specs.Spec) {
				m := s.Linux.Resources.Memory
				if m == nil || m.Reservation == nil || *m.Reservation != 32<<20 || *m.Limit != 64<<20 {
					t.Errorf("memory = %+v, want limit 64 MiB and reservation 32 MiB", m)
				}
			},
		},
		{
			name: "memory reservation without a limit",
			mod:  func(in *SpecInput) { in.MemoryReservation = 32 << 20 },
			check: func(t *testing.T, s *specs.Spec) {
				m := s.Linux.Resources.Memory
				if m == nil || m.Reservation == nil || *m.Reservation != 32<<20 || m.Limit != nil {
					t.Errorf("memory = %+v, want only a reservation of 32 MiB", m)
				}
			},
		},
		{
			name: "no memory settings, no memory resources",
			check: func(t *testing.T, s *specs.Spec) {
				if s.Linux.Resources.Memory != nil {
					t.Errorf("memory = %+v, want none", s.Linux.Resources.Memory)
				}
			},
		},
		{
			name: "tiny cpu share is clamped to the kernel minimum",
			mod:  func(in *SpecInput) { in.Limits.NanoCPUs = 1000 },
			check: func(t *testing.T, s *specs.Spec) {
				if *s.Linux.Resources.CPU.Quota != 1000 {
					t.Errorf("quota = %d", *s.Linux.Resources.CPU.Quota)
				}
			},
		},
		{
			// 100,000 CPUs: NanoCPUs * period overflowed int64 and the
			// negative quota was clamped to 1 ms, a hundredth of a CPU.
			name: "a huge cpu limit does not overflow the quota",
			mod:  func(in *SpecInput) { in.Limits.NanoCPUs = 100_000 * 1e9 },
			check: func(t *testing.T, s *specs.Spec) {
				if q := *s.Linux.Resources.CPU.Quota; q != 100_000*100000 {
					t.Errorf("quota = %d, want %d", q, 100_000*100000)
				}
			},
		},
		{
			name: "user and relative cwd",
			mod: func(in *SpecInput) {
				in.UID, in.GID, in.ExtraGIDs, in.Cwd = 1000, 100, []uint32{5}, "app"
			},
			check: func(t *testing.T, s *specs.Spec) {
				u := s.Process.User
				if u.UID != 1000 || u.GID != 100 || !reflect.DeepEqual(u.AdditionalGids, []uint32{5}) {
					t.Errorf("user = %+v", u)
				}
				if s.Process.Cwd != "/app" {
					t.Errorf("cwd = %q", s.Process.Cwd)
				}
			},
		},
		{name: "no command", mod: func(in *SpecInput) { in.Args = nil }, wantErr: true},
		{name: "memory below minimum", mod: func(in *SpecInput) { in.Limits.MemoryBytes = 1 << 20 }, wantErr: true},
		{name: "negative pids", mod: func(in *SpecInput) { in.Limits.Pids = -1 }, wantErr: true},
		{name: "reservation above the limit", mod: func(in *SpecInput) { in.Limits.MemoryBytes, in.MemoryReservation = 32<<20, 64<<20 }, wantErr: true},
		{name: "negative reservation", mod: func(in *SpecInput) { in.MemoryReservation = -1 }, wantErr: true},
		{name: "missing init", mod: func(in *SpecInput) { in.InitBinary = "" }, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := baseInput()
			if tt.mod != nil {
				tt.mod(&in)
			}
			s, err := BuildSpec(in)
			if tt.wantErr {
				if err == nil {
					t.Fatal("want error")
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

func TestResolveCommand(t *testing.T) {
	img := api.ImageConfig{Entrypoint: []string{"/ep"}, Cmd: []string{"a", "b"}}
	tests := []struct {
		name     string
		img      api.ImageConfig
		ep, cmd  []string
		want     []string
		wantFail bool
	}{
		{"image only", img, nil, nil, []string{"/ep", "a", "b"}, false},
		{"spec cmd replaces image cmd", img, nil, []string{"c"}, []string{"/ep", "c"}, false},
		{"spec entrypoint drops image cmd", img, []string{"/x"}, nil, []string{"/x"}, false},
		{"spec entrypoint and cmd", img, []string{"/x"}, []string{"y"}, []string{"/x", "y"}, false},
		{"cmd only image", api.ImageConfig{Cmd: []string{"sh"}}, nil, nil, []string{"sh"}, false},
		{"nothing to run", api.ImageConfig{}, nil, nil, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ResolveCommand(tt.img, tt.ep, tt.cmd)
			if tt.wantFail != (err != nil) {
				t.Fatalf("err = %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %q want %q", got, tt.want)
			}
		})
	}
}

func TestMergeEnv(t *testing.T) {
	tests := []struct {
		name        string
		image, spec []string
		hostname    string
		want        []string
	}{
		{"defaults", nil, nil, "h", []string{"PATH=" + DefaultPath, "HOSTNAME=h"}},
		{"image path wins over default", []string{"PATH=/x", "A=1"}, nil, "h", []string{"PATH=/x", "HOSTNAME=h", "A=1"}},
		{"spec overrides image", []string{"A=1", "B=2"}, []string{"A=3", "C=4", "bad"}, "", []string{"PATH=" + DefaultPath, "A=3", "B=2", "C=4"}},
		{"empty value kept", nil, []string{"E="}, "", []string{"PATH=" + DefaultPath, "E="}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := MergeEnv(tt.image, tt.spec, tt.hostname); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %q want %q", got, tt.want)
			}
		})
	}
}

func TestResolveUser(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc", "passwd"), []byte("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc", "group"), []byte("root:x:0:\napp:x:1000:\nwheel:x:10:app,other\nnogroup:x:65534:\n"), 0o644)
	tests := []struct {
		user     string
		uid, gid uint32
		extra    []uint32
		wantErr  bool
	}{
		{"", 0, 0, nil, false},
		{"0", 0, 0, nil, false},
		{"app", 1000, 1000, []uint32{10}, false},
		{"1000", 1000, 1000, []uint32{10}, false},
		{"app:wheel", 1000, 10, nil, false},
		{"app:5", 1000, 5, nil, false},
		{"4242", 4242, 0, nil, false},
		{"4242:4242", 4242, 4242, nil, false},
		{"nobody", 65534, 65534, nil, false},
		{"ghost", 0, 0, nil, true},
		{"app:ghosts", 0, 0, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.user, func(t *testing.T) {
			uid, gid, extra, err := ResolveUser(root, tt.user)
			if tt.wantErr != (err != nil) {
				t.Fatalf("err = %v", err)
			}
			if err != nil {
				return
			}
			if uid != tt.uid || gid != tt.gid || !reflect.DeepEqual(extra, tt.extra) {
				t.Errorf("got %d:%d %v want %d:%d %v", uid, gid, extra, tt.uid, tt.gid, tt.extra)
			}
		})
	}
	// No /etc/passwd at all: numeric users still work.
	if uid, gid, _, err := ResolveUser(t.TempDir(), "7:8"); err != nil || uid != 7 || gid != 8 {
		t.Errorf("numeric without passwd: %d:%d %v", uid, gid, err)
	}
}

func TestHostsAndResolvConf(t *testing.T) {
	h := HostsFile("web1", "10.42.1.5", []string{"db:10.0.0.9", "bad"})
	for _, want := range []string{"127.0.0.1\tlocalhost", "10.42.1.5\tweb1", "10.0.0.9\tdb"} {
		if !strings.Contains(h, want) {
			t.Errorf("hosts lacks %q:\n%s", want, h)
		}
	}
	if h := HostsFile("web1", "", nil); !strings.Contains(h, "127.0.1.1\tweb1") {
		t.Errorf("hosts without ip:\n%s", h)
	}
	host := "nameserver 127.0.0.53\nnameserver 1.1.1.1\nsearch example.org\noptions edns0\n"
	got := ResolvConf(host, nil)
	if strings.Contains(got, "127.0.0.53") || !strings.Contains(got, "nameserver 1.1.1.1") || !strings.Contains(got, "search example.org") {
		t.Errorf("resolv.conf:\n%s", got)
	}
	got = ResolvConf(host, []string{"10.42.1.1"})
	if strings.Contains(got, "1.1.1.1") || !strings.Contains(got, "nameserver 10.42.1.1") {
		t.Errorf("resolv.conf with dns:\n%s", got)
	}
}

// TestResolveUserStaysInRootfs: /etc/passwd and /etc/group are read as the
// container sees them: an absolute /etc symlink, or a passwd that is a
// relative symlink, resolves inside the rootfs, never to a file of the
// host (an image or a running container can make either).
func TestResolveUserStaysInRootfs(t *testing.T) {
	host := t.TempDir() // a directory of the host, outside the rootfs
	if err := os.MkdirAll(filepath.Join(host, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(host, "etc", "passwd"), []byte("hostonly:x:4242:4343::/:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	write := func(p, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, p string) {
		t.Helper()
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}

	// /etc -> <host>/etc: inside the rootfs that path does not exist.
	out := t.TempDir()
	link(filepath.Join(host, "etc"), filepath.Join(out, "etc"))
	if uid, _, _, err := ResolveUser(out, "hostonly"); err == nil {
		t.Errorf("a user of the host's file, through an /etc link out of the rootfs: uid %d", uid)
	}

	// /etc -> /real-etc (absolute): the rootfs's /real-etc.
	abs := t.TempDir()
	write(filepath.Join(abs, "real-etc", "passwd"), "inroot:x:77:78::/:/bin/sh\n")
	write(filepath.Join(abs, "real-etc", "group"), "extra:x:79:inroot\n")
	link("/real-etc", filepath.Join(abs, "etc"))
	if uid, gid, extra, err := ResolveUser(abs, "inroot"); err != nil || uid != 77 || gid != 78 || !reflect.DeepEqual(extra, []uint32{79}) {
		t.Errorf("through an absolute /etc link inside the rootfs: %d:%d %v %v, want 77:78 [79]", uid, gid, extra, err)
	}

	// /etc/passwd -> ../../../../usr/share/base/passwd: climbs no higher
	// than the rootfs's /.
	rel := t.TempDir()
	write(filepath.Join(rel, "usr", "share", "base", "passwd"), "relative:x:88:89::/:/bin/sh\n")
	if err := os.MkdirAll(filepath.Join(rel, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	link("../../../../usr/share/base/passwd", filepath.Join(rel, "etc", "passwd"))
	if uid, gid, _, err := ResolveUser(rel, "relative"); err != nil || uid != 88 || gid != 89 {
		t.Errorf("through a relative passwd link inside the rootfs: %d:%d %v, want 88:89", uid, gid, err)
	}
}

// TestResolveUserNeverOpensAFIFO: a FIFO at /etc/passwd, there from the
// start or swapped in while the user is resolved (a running container,
// for `exec -u`), reads as no file; it never blocks the open (exec -u and
// create hung for ever).
func TestResolveUserNeverOpensAFIFO(t *testing.T) {
	rootfs := t.TempDir()
	etc := filepath.Join(rootfs, "etc")
	if err := os.Mkdir(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	passwd := filepath.Join(etc, "passwd")
	resolve := func(what string) error {
		t.Helper()
		type result struct {
			uid uint32
			err error
		}
		done := make(chan result, 1)
		go func() {
			uid, _, _, err := ResolveUser(rootfs, "app")
			done <- result{uid, err}
		}()
		select {
		case r := <-done:
			return r.err
		case <-time.After(5 * time.Second):
			t.Fatalf("ResolveUser blocked %s", what)
		}
		return nil
	}
	if err := unix.Mkfifo(passwd, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := resolve("on a FIFO at /etc/passwd"); err == nil {
		t.Error("a user found in a FIFO")
	}

	// The race: a regular file when looked at, a FIFO when opened.
	stop := make(chan struct{})
	swapped := make(chan struct{})
	go func() {
		defer close(swapped)
		reg, fifo := filepath.Join(etc, "reg"), filepath.Join(etc, "fifo")
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = os.WriteFile(reg, []byte("app:x:1000:1000::/:/bin/sh\n"), 0o644)
			_ = os.Rename(reg, passwd)
			_ = unix.Mkfifo(fifo, 0o644)
			_ = os.Rename(fifo, passwd)
		}
	}()
	defer func() { close(stop); <-swapped }()
	deadline := time.Now().Add(2 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		_ = resolve(fmt.Sprintf("on attempt %d, /etc/passwd swapped between a file and a FIFO", i))
	}
}
