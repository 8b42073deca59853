// Package seccompprog keeps the seccomp programs runc compiles, so that a
// container's init can install its filter without runc compiling the
// profile again at every start (README.md).
//
// Why: runc compiles the profile with libseccomp in every `runc init` and
// every `runc exec`, about 20 ms of CPU each on a small VM, the largest
// single cost of a container start. The program is the same for every
// container with the same profile. Why capture it from runc instead of
// compiling it here: the program must be the one runc installs, bit for bit
// (libseccomp's rule order and runc's own -ENOSYS stub for system calls the
// profile does not know), and runc is the only thing that says what that is.
//
// How: for each profile, once, `runc create` of a bundle that has the
// profile and nothing to run; its `runc init` installs the filter and then
// blocks on the exec fifo without ever running anything. The program is
// read back from the kernel with ptrace (PTRACE_SECCOMP_GET_FILTER), the
// container deleted, and the program written to a file that containers
// bind-mount read-only (ocispec.SeccompPath).
package seccompprog

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Cache gives each profile's program file, capturing it the first time.
type Cache struct {
	// Runc is runc's executable; Dir holds the program files and a runc
	// state dir of its own (Dir/runc: the captures never show among the
	// agent's containers); CgroupParent is where a capture's cgroup goes.
	Runc, Dir, CgroupParent string
	// Init is the host path of the containers' init: programs are only
	// handed out when it can install them (InitLoads).
	Init string
	// Env is added to runc's environment (supervisor.RuncProcs).
	Env []string
	Log *slog.Logger

	mu       sync.Mutex
	entries  map[string]*entry
	initOnce sync.Once
	initOK   bool
}

// entry is one profile's program: being captured (done open), there
// (path), or failed (err, retried after retryAfter).
type entry struct {
	done     chan struct{}
	path     string
	err      error
	failedAt time.Time
}

// stale reports whether e is to be captured again: a failure old enough,
// or a program whose file is gone (someone emptied the dir). e's fields
// are read only once done is closed.
func (e *entry) stale() bool {
	select {
	case <-e.done:
	default:
		return false
	}
	if e.err != nil {
		return time.Since(e.failedAt) > retryAfter
	}
	_, err := os.Stat(e.path)
	return err != nil
}

// retryAfter is how long a failed capture is not tried again: meanwhile
// runc compiles the profile as it always did, and a machine where captures
// cannot work (no ptrace) does not pay a failed one per start.
const retryAfter = 5 * time.Minute

// captureTimeout bounds one capture (a runc create and delete).
const captureTimeout = 30 * time.Second

// Program returns the host path of the file with runc's program for
// profile, capturing it on the first call for that profile (concurrent
// callers wait for the one capture), or "" when there is none: the init
// cannot install programs, or the capture failed (logged). With "", the
// caller leaves the profile to runc.
func (c *Cache) Program(profile *specs.LinuxSeccomp) string {
	if !c.initLoads() {
		return ""
	}
	raw, err := json.Marshal(profile)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(raw)
	key := hex.EncodeToString(sum[:12])
	c.mu.Lock()
	if c.entries == nil {
		c.entries = map[string]*entry{}
	}
	e, ok := c.entries[key]
	if ok && e.stale() {
		ok = false
	}
	if !ok {
		e = &entry{done: make(chan struct{})}
		c.entries[key] = e
		c.mu.Unlock()
		e.path, e.err = c.capture(key, profile)
		if e.err != nil {
			e.failedAt = time.Now()
			c.Log.Warn("seccomp program not captured: runc compiles the profile at each start", "err", e.err)
		}
		close(e.done)
	} else {
		c.mu.Unlock()
		<-e.done
	}
	if e.err != nil {
		return ""
	}
	return e.path
}

// initLoads reports (once) whether Init can install a program: InitLoads.
func (c *Cache) initLoads() bool {
	c.initOnce.Do(func() {
		if c.initOK = InitLoads(c.Init); !c.initOK {
			c.Log.Info("the containers' init cannot install seccomp programs: runc compiles the profile at each start", "init", c.Init)
		}
	})
	return c.initOK
}

// initUsage is part of shoal-init's usage line since it takes -s and -x
// (the init's binary holds it as is: runtime/init/shoal-init.c).
const initUsage = "shoal-init [-s FILTER [-x CAPS]] -- CMD"

// InitLoads reports whether the init binary at path installs a seccomp
// program given with -s and gives up capabilities given with -x: Shoal's
// init from this version on. Another init (tini, an older shoal-init)
// would take -s for the command, or not know -x.
func InitLoads(path string) bool {
	b, err := os.ReadFile(path)
	return err == nil && bytes.Contains(b, []byte(initUsage))
}

// capture makes profile's program file, Dir/KEY.bpf, from a runc create.
func (c *Cache) capture(key string, profile *specs.LinuxSeccomp) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), captureTimeout)
	defer cancel()
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return "", fmt.Errorf("create %s: %w", c.Dir, err)
	}
	work, err := os.MkdirTemp(c.Dir, "capture-")
	if err != nil {
		return "", fmt.Errorf("capture dir: %w", err)
	}
	defer os.RemoveAll(work)
	id := "seccomp-" + key
	spec := captureSpec(profile, filepath.Join(c.CgroupParent, id))
	raw, err := json.Marshal(spec)
	if err != nil {
		return "", fmt.Errorf("encode capture config: %w", err)
	}
	// runc create looks for the command in the rootfs; an empty file,
	// which could not run even if anything started it.
	if err := os.Mkdir(filepath.Join(work, "rootfs"), 0o700); err != nil {
		return "", fmt.Errorf("capture rootfs: %w", err)
	}
	if err := os.WriteFile(filepath.Join(work, "rootfs", neverRun), nil, 0o500); err != nil {
		return "", fmt.Errorf("capture rootfs: %w", err)
	}
	if err := os.WriteFile(filepath.Join(work, "config.json"), raw, 0o600); err != nil {
		return "", fmt.Errorf("write capture config: %w", err)
	}
	root := filepath.Join(c.Dir, "runc")
	// runc's output goes to a file: the capture's runc init inherits it
	// and holds it open until it is deleted, so a pipe would never end.
	runc := func(args ...string) error {
		out, err := os.CreateTemp(work, "runc-out-")
		if err != nil {
			return fmt.Errorf("runc output: %w", err)
		}
		defer out.Close()
		cmd := exec.CommandContext(ctx, c.Runc, append([]string{"--root", root}, args...)...)
		cmd.Env = append(os.Environ(), c.Env...)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Run(); err != nil {
			msg, _ := os.ReadFile(out.Name())
			return fmt.Errorf("runc %s: %w: %s", args[0], err, strings.TrimSpace(string(msg)))
		}
		return nil
	}
	_ = runc("delete", "--force", id) // one a killed agent left behind
	pidFile := filepath.Join(work, "pid")
	if err := runc("create", "--bundle", work, "--pid-file", pidFile, id); err != nil {
		return "", err
	}
	defer func() {
		if err := runc("delete", "--force", id); err != nil {
			c.Log.Warn("delete seccomp capture container", "id", id, "err", err)
		}
	}()
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return "", fmt.Errorf("capture pid: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return "", fmt.Errorf("capture pid %q: %w", b, err)
	}
	prog, err := Dump(pid)
	if err != nil {
		return "", err
	}
	path := filepath.Join(c.Dir, key+".bpf")
	tmp := path + ".tmp"
	// World-readable: a container's processes read it as whatever user
	// they run as. It holds nothing but the public profile, compiled.
	if err := os.WriteFile(tmp, prog, 0o644); err != nil {
		return "", fmt.Errorf("write seccomp program: %w", err)
	}
	if err := os.Chmod(tmp, 0o644); err != nil { // past the umask
		return "", fmt.Errorf("chmod seccomp program: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("write seccomp program: %w", err)
	}
	return path, nil
}

// neverRun is the capture container's command, an empty file.
const neverRun = "never-run"

// captureSpec is a bundle config whose runc init installs profile's filter
// and never runs anything: it is only ever created, never started. It
// has its own mount, pid, ipc and uts namespaces and a cgroup, /proc and
// no capability.
func captureSpec(profile *specs.LinuxSeccomp, cgroupsPath string) *specs.Spec {
	return &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: "rootfs"},
		// runc init reads its own fds in /proc before it installs the
		// filter.
		Mounts: []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}}},
		Process: &specs.Process{
			Args:            []string{"/" + neverRun},
			Cwd:             "/",
			NoNewPrivileges: true,
			Capabilities:    &specs.LinuxCapabilities{},
		},
		Linux: &specs.Linux{
			CgroupsPath: cgroupsPath,
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.MountNamespace},
				{Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
			},
			Seccomp: profile,
		},
	}
}

// Dump returns the seccomp program installed last on process pid, which
// must have exactly one filter more than this process (the one it
// installed itself, over the ones it inherited from us): anything else
// means the newest filter is not known to be the one wanted.
func Dump(pid int) ([]byte, error) {
	mine, err := filterCount("self")
	if err != nil {
		return nil, err
	}
	theirs, err := filterCount(strconv.Itoa(pid))
	if err != nil {
		return nil, err
	}
	if theirs != mine+1 {
		return nil, fmt.Errorf("process %d has %d seccomp filters, want %d", pid, theirs, mine+1)
	}
	type result struct {
		prog []byte
		err  error
	}
	ch := make(chan result, 1)
	// ptrace requests must all come from the thread that attached. The
	// goroutine keeps its thread locked to the end when a step fails, so
	// that the thread exits with it and a tracee it may still hold goes
	// with it.
	go func() {
		goruntime.LockOSThread()
		prog, err := dumpLocked(pid)
		if err == nil {
			goruntime.UnlockOSThread()
		}
		ch <- result{prog, err}
	}()
	r := <-ch
	return r.prog, r.err
}

func dumpLocked(pid int) ([]byte, error) {
	if err := unix.PtraceSeize(pid); err != nil {
		return nil, fmt.Errorf("ptrace seize %d: %w", pid, err)
	}
	if err := unix.PtraceInterrupt(pid); err != nil {
		return nil, fmt.Errorf("ptrace interrupt %d: %w", pid, err)
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, unix.WALL, nil); err != nil {
		return nil, fmt.Errorf("wait for %d to stop: %w", pid, err)
	}
	if !ws.Stopped() {
		return nil, fmt.Errorf("process %d did not stop: %v", pid, ws)
	}
	n, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SECCOMP_GET_FILTER, uintptr(pid), 0, 0, 0, 0)
	if errno != 0 {
		return nil, fmt.Errorf("read seccomp filter of %d: %w", pid, errno)
	}
	if n == 0 || n > maxInsns {
		return nil, fmt.Errorf("seccomp filter of %d has %d instructions", pid, n)
	}
	prog := make([]unix.SockFilter, n)
	got, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SECCOMP_GET_FILTER, uintptr(pid), 0,
		uintptr(unsafe.Pointer(&prog[0])), 0, 0)
	if errno != 0 || got != n {
		return nil, fmt.Errorf("read seccomp filter of %d: %d of %d instructions: %v", pid, got, n, errno)
	}
	if err := unix.PtraceDetach(pid); err != nil {
		return nil, fmt.Errorf("ptrace detach %d: %w", pid, err)
	}
	return Encode(prog), nil
}

// maxInsns is the kernel's limit on one classic BPF program (BPF_MAXINSNS).
const maxInsns = 4096

// Encode is prog as the init reads it and the kernel takes it: the
// instructions' bytes in host order.
func Encode(prog []unix.SockFilter) []byte {
	return bytes.Clone(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(prog))), len(prog)*int(unsafe.Sizeof(prog[0]))))
}

// filterCount reads the Seccomp_filters line of /proc/WHO/status (Linux
// 5.9 on; without it nothing is captured).
func filterCount(who string) (int, error) {
	f, err := os.Open(filepath.Join("/proc", who, "status"))
	if err != nil {
		return 0, fmt.Errorf("seccomp filters of %s: %w", who, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Seccomp_filters:"); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("seccomp filters of %s: %w", who, err)
	}
	return 0, errors.New("the kernel does not count seccomp filters (/proc/PID/status Seccomp_filters)")
}
