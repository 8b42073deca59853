// Package wgdevice is the process that holds a node's WireGuard device:
// the TUN device and the wireguard-go engine on it, outside the agent.
//
// Why a process of its own. Containers outlive the agent (the node
// supervisor holds them), and so do their bridges and veths; a TUN device
// does not: it exists as long as the file descriptor that made it, and
// wireguard-go's sessions live in the memory of the process running it.
// While the TUN and wireguard-go were the agent's, every agent restart (a
// rolling upgrade, a crash, kill -9) cut the node's encrypted networks off
// the other hosts until the new agent had rebuilt the device and
// handshaken again with every peer. Here they live in a small process
// started from the same binary under the name shoal-wg (Arg0): the agent
// configures it over wireguard-go's own configuration protocol (UAPI, the
// text `wg set` and `wg show` speak) on a root-only unix socket, and a new
// agent finds it there and adopts it (overlay.NewWireGuard), sessions and
// all.
//
// What it is given and how: the interface name, MTU, UDP port and socket
// path on its command line (nothing secret); the private key and the peers
// over the socket only, never in argv or the environment, which other users
// of the machine can read in /proc. The socket is 0600 in a 0700
// directory, and a connection from another uid is closed unread.
//
// When it ends: on SIGTERM or SIGINT (the agent's Close: no encrypted
// network left), when its TUN device is deleted (wireguard-go stops), and
// when its socket is gone from its path or replaced (checked once a
// second): the agent's cluster directory, which holds the socket, is
// deleted or moved aside when the node leaves the cluster, and that is
// enough to stop the device, whether or not an agent is running. It exits
// the same way wireguard-go's own daemon does when its UAPI socket is
// removed. Its TUN device goes with it.
//
// This package imports only the standard library, x/sys and wireguard-go,
// and its init runs the device before main when the binary was started as
// shoal-wg (as runtime/supervisor does), so the device process never
// initialises the agent's heavier packages it does not import.
package wgdevice

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
)

// Arg0 is the name the device process runs under.
const Arg0 = "shoal-wg"

// checkEvery is how often the process checks that its socket is still its
// own at its path.
const checkEvery = time.Second

// init runs the device when the binary was started as shoal-wg, before
// main and the package initialisers of everything this package does not
// import.
func init() {
	if len(os.Args) > 0 && IsInvocation(os.Args[0]) {
		os.Exit(Main(os.Args))
	}
}

// IsInvocation reports whether a process started as arg0 (os.Args[0]) is
// the WireGuard device process.
func IsInvocation(arg0 string) bool { return filepath.Base(arg0) == Arg0 }

// Args is the device process's command line for the given settings
// (argv[0] included); none of them is secret.
func Args(name string, mtu, port int, sock string) []string {
	return []string{Arg0, "--name", name, "--mtu", strconv.Itoa(mtu), "--port", strconv.Itoa(port), "--sock", sock}
}

type options struct {
	name      string
	mtu, port int
	sock      string
}

func parseArgs(argv []string) (options, error) {
	var o options
	for i := 1; i < len(argv); i++ {
		if i+1 >= len(argv) {
			return o, fmt.Errorf("argument %q needs a value", argv[i])
		}
		v := argv[i+1]
		var err error
		switch argv[i] {
		case "--name":
			o.name = v
		case "--mtu":
			o.mtu, err = strconv.Atoi(v)
		case "--port":
			o.port, err = strconv.Atoi(v)
		case "--sock":
			o.sock = v
		default:
			return o, fmt.Errorf("unknown argument %q", argv[i])
		}
		if err != nil {
			return o, fmt.Errorf("%s: %w", argv[i], err)
		}
		i++
	}
	switch {
	case o.name == "" || len(o.name) > 15:
		return o, fmt.Errorf("--name must be an interface name, got %q", o.name)
	case o.mtu < 576 || o.mtu > 65535:
		return o, fmt.Errorf("--mtu must be in 576..65535, got %d", o.mtu)
	case o.port < 1 || o.port > 65535:
		return o, fmt.Errorf("--port must be in 1..65535, got %d", o.port)
	case !filepath.IsAbs(o.sock):
		return o, fmt.Errorf("--sock must be an absolute path, got %q", o.sock)
	}
	return o, nil
}

// Main runs the device process and returns its exit code; argv is
// os.Args: shoal-wg --name NAME --mtu N --port N --sock PATH. It logs to
// stderr (the agent points it at a file beside the socket).
func Main(argv []string) int {
	o, err := parseArgs(argv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", Arg0, err)
		return 2
	}
	// Named in ps and top as it is in argv (its executable is
	// /proc/self/exe of the agent, which would show as "exe").
	if b, err := unix.BytePtrFromString(Arg0); err == nil {
		_ = unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(b)), 0, 0, 0)
	}
	if err := run(o); err != nil {
		fmt.Fprintf(os.Stderr, "%s %s: %v\n", Arg0, o.name, err)
		return 1
	}
	return 0
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().UTC().Format(time.RFC3339)+" "+Arg0+": "+format+"\n", args...)
}

func run(o options) error {
	// The socket first: a second device for the same path fails here,
	// before it touches the interface of the one that answers.
	ln, err := listen(o.sock)
	if err != nil {
		return err
	}
	st, err := os.Lstat(o.sock)
	if err != nil {
		ln.Close()
		return fmt.Errorf("socket %s: %w", o.sock, err)
	}
	defer func() {
		ln.Close()
		if sameFile(o.sock, st) {
			_ = os.Remove(o.sock)
		}
	}()

	// tun.CreateTUN turns on the virtio header and with it TSO/GRO: TCP
	// arrives as 64 KiB segments and leaves coalesced
	// (overlay/wireguard_routed.go).
	td, err := tun.CreateTUN(o.name, o.mtu)
	if err != nil {
		return fmt.Errorf("create TUN device %s: %w", o.name, err)
	}
	verbosef := func(string, ...any) {}
	if os.Getenv("SHOAL_WG_VERBOSE") != "" {
		verbosef = logf
	}
	dev := device.NewDevice(td, conn.NewDefaultBind(), &device.Logger{
		Verbosef: verbosef,
		Errorf:   func(format string, args ...any) { logf(format, args...) },
	})
	defer dev.Close()
	// The port now, so that a port in use fails the start (the agent sees
	// the exit and this log) rather than a later configuration step.
	if err := dev.IpcSet(fmt.Sprintf("listen_port=%d\n", o.port)); err != nil {
		return fmt.Errorf("listen on UDP port %d: %w", o.port, err)
	}
	if err := dev.Up(); err != nil {
		return fmt.Errorf("start WireGuard on UDP port %d: %w", o.port, err)
	}
	logf("up: device %s, mtu %d, port %d, socket %s", o.name, o.mtu, o.port, o.sock)

	go serve(ln, dev)

	sigCh := make(chan os.Signal, 1)
	signal.Notify(sigCh, syscall.SIGTERM, syscall.SIGINT)
	tick := time.NewTicker(checkEvery)
	defer tick.Stop()
	for {
		select {
		case s := <-sigCh:
			logf("stopping on %v", s)
			return nil
		case <-dev.Wait():
			logf("stopping: the device closed (its TUN device was removed?)")
			return nil
		case <-tick.C:
			if !sameFile(o.sock, st) {
				logf("stopping: socket %s is gone or replaced", o.sock)
				return nil
			}
		}
	}
}

// sameFile reports whether path is still the file st describes.
func sameFile(path string, st os.FileInfo) bool {
	now, err := os.Lstat(path)
	return err == nil && os.SameFile(now, st)
}

// listen makes the root-only UAPI socket at path: its directory is
// created 0700 if missing, a socket nobody answers on is replaced, one
// that answers is left alone (another device holds it).
func listen(path string) (*net.UnixListener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("socket directory: %w", err)
	}
	if st, err := os.Lstat(dir); err != nil || !st.IsDir() || st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("socket directory %s must be a directory of mode 0700", dir)
	}
	// sockaddr_un holds 108 bytes: reach a longer path through the
	// directory's descriptor.
	name := path
	if len(path) >= 100 {
		fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("socket directory: %w", err)
		}
		defer unix.Close(fd)
		name = fmt.Sprintf("/proc/self/fd/%d/%s", fd, filepath.Base(path))
	}
	addr := &net.UnixAddr{Name: name, Net: "unix"}
	old := unix.Umask(0o077)
	defer unix.Umask(old)
	ln, err := net.ListenUnix("unix", addr)
	if err != nil && errors.Is(err, syscall.EADDRINUSE) {
		if c, derr := net.DialTimeout("unix", name, time.Second); derr == nil {
			c.Close()
			return nil, fmt.Errorf("socket %s: another device answers on it", path)
		}
		if rerr := os.Remove(path); rerr != nil {
			return nil, fmt.Errorf("remove stale socket: %w", rerr)
		}
		ln, err = net.ListenUnix("unix", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	// Only this process removes the path it made (not a successor that
	// replaced it): unlinking on Close is off, run removes it if still its.
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("socket mode: %w", err)
	}
	return ln, nil
}

// serve hands each connection of this uid to wireguard-go's UAPI handler.
func serve(ln *net.UnixListener, dev *device.Device) {
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		if !sameUID(c) {
			c.Close()
			continue
		}
		go dev.IpcHandle(c)
	}
}

// sameUID reports whether the peer of c runs as this process's uid.
func sameUID(c *net.UnixConn) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return false
	}
	return int(cred.Uid) == os.Getuid()
}
