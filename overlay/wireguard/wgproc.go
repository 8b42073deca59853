package wireguard

// The agent's side of the WireGuard device process (package wgdevice).
//
// The device speaks wireguard-go's UAPI (the text protocol of `wg set` and
// `wg show`) on a unix socket: "set=1\n" + key=value lines + "\n", or
// "get=1\n\n", each answered by key=value lines ending "errno=N\n\n".
// PeersConfig and PeersUpdate already build "set" text, so the WireGuard
// type sends exactly what it used to give wireguard-go in-process. The
// socket is ours, not wireguard-go's ipc.UAPIListen, which hard-codes
// /var/run/wireguard/NAME.sock: one machine runs several agents in tests,
// and the socket belongs in the agent's data directory, root-only.
//
// Adoption (Decide, pure): a device that answers on the socket, whose TUN
// device exists under the wanted name and which holds this node's private
// key and port is the one this node's previous agent started: it is kept
// as it is, and its peers (read from it) are updated in place, so no
// session drops. Anything else is stopped and replaced: another key means
// another identity (a half-done rotation or a wiped data dir) and the new
// one must not inherit its sessions.
//
// Stopping: the process is found by the socket's peer credentials
// (SO_PEERCRED: who listened on it), held as a pidfd so a recycled pid can
// never be signalled, sent SIGTERM, and waited for (SIGKILL after a
// while). It is no child of a restarted agent, so the pidfd is also the
// only way to wait for it.

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/api/timerslack"
	"github.com/shoal-org/shoal/overlay/wgdevice"
)

const (
	// deviceStartTimeout bounds how long a started device may take to
	// answer on its socket.
	deviceStartTimeout = 15 * time.Second
	// deviceStopTimeout bounds the wait after SIGTERM (then SIGKILL).
	deviceStopTimeout = 5 * time.Second
	// uapiTimeout bounds one UAPI exchange.
	uapiTimeout = 10 * time.Second
	// uapiMaxReply caps a "get" answer (a few hundred bytes per peer).
	uapiMaxReply = 4 << 20
	// DeviceLogFile is the device process's log, beside its socket.
	DeviceLogFile = "device.log"
)

// ErrDevice: the WireGuard device process failed or answered an error.
var ErrDevice = errors.New("WireGuard device")

// deviceState is what a running device reports of itself (UAPI "get").
type deviceState struct {
	PrivateKey [32]byte
	ListenPort int
	Peers      [][32]byte // in the device's order
}

// parseDeviceState reads the device's key, port and peers out of UAPI
// "get" text. It is pure.
func parseDeviceState(text string) (deviceState, error) {
	var st deviceState
	for _, line := range strings.Split(text, "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		switch k {
		case "private_key", "public_key":
			b, err := hexKey(v)
			if err != nil {
				return deviceState{}, fmt.Errorf("%w: %s: %w", ErrDevice, k, err)
			}
			if k == "private_key" {
				st.PrivateKey = b
			} else {
				st.Peers = append(st.Peers, b)
			}
		case "listen_port":
			p, err := strconv.Atoi(v)
			if err != nil || p < 0 || p > 65535 {
				return deviceState{}, fmt.Errorf("%w: listen_port %q", ErrDevice, v)
			}
			st.ListenPort = p
		}
	}
	return st, nil
}

func hexKey(s string) ([32]byte, error) {
	var k [32]byte
	if len(s) != 64 {
		return k, ErrBadKey
	}
	for i := range k {
		v, err := strconv.ParseUint(s[2*i:2*i+2], 16, 8)
		if err != nil {
			return k, ErrBadKey
		}
		k[i] = byte(v)
	}
	return k, nil
}

// Decide says whether a running device is adopted (kept, peers and
// sessions included) or replaced, and why: running is what it reported
// (parseErr an error reading that), link the type of the link bearing the
// device's name in its namespace ("" none), want the node's key pair and
// port the wanted UDP port. It is pure.
func Decide(running deviceState, parseErr error, link string, want KeyPair, port int) (adopt bool, why string) {
	switch {
	case parseErr != nil:
		return false, "unreadable state: " + parseErr.Error()
	case link == "":
		return false, "its TUN device is missing"
	case link != "tuntap":
		return false, "the device name is a " + link + " link, not a TUN device"
	case running.PrivateKey == [32]byte{}:
		return false, "it has no private key (its start was cut short)"
	case running.PrivateKey != clampKey(want.Private):
		return false, "it holds another private key"
	case running.ListenPort != port:
		return false, fmt.Sprintf("it listens on port %d, not %d", running.ListenPort, port)
	}
	return true, "same key, port and interface"
}

// clampKey is an X25519 private key as wireguard-go keeps (and reports)
// it: clamped (RFC 7748); crypto/ecdh clamps only when it uses a key.
func clampKey(k [32]byte) [32]byte {
	k[0] &= 248
	k[31] = (k[31] & 127) | 64
	return k
}

// linkType is the type of the link named name in the current namespace,
// "" when there is none.
func linkType(name string) string {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return ""
	}
	return l.Type()
}

// spawn starts the device process from this binary (wgdevice's init hook
// takes over before main) in the current network namespace and waits
// until it answers on its socket. A leftover link with the device's name
// is removed first.
func (w *WireGuard) spawn() error {
	if h, err := netlink.NewHandle(); err == nil {
		if l, err := h.LinkByName(w.cfg.Name); err == nil {
			// A leftover (a device process killed before it could close
			// its TUN device) or a stranger with our name.
			w.cfg.Logger.Warn("wireguard: removing a stale device", "device", w.cfg.Name, "type", l.Type())
			_ = h.LinkDel(l)
		}
		h.Close()
	}
	dir := filepath.Dir(w.sock)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("WireGuard socket directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("WireGuard socket directory: %w", err)
	}
	logPath := filepath.Join(dir, DeviceLogFile)
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("open WireGuard device log: %w", err)
	}
	defer logf.Close()
	cmd := &exec.Cmd{
		Path:   "/proc/self/exe",
		Args:   wgdevice.Args(w.cfg.Name, w.cfg.MTU, w.cfg.Port, w.sock),
		Stdout: logf,
		Stderr: logf,
		// Its own process group: no signal meant for the agent's group
		// (a terminal's ^C, a kill of the group) reaches it. Not its own
		// session: with sched_autogroup each session is scheduled as one
		// group, and a session of its own gave wireguard-go a share of
		// the CPU equal to the whole rest of the node's (the agent, and
		// whatever traffic it carries), which cost 15-20 % of encrypted
		// throughput in BenchmarkWireGuardThroughput. In the agent's
		// session it is scheduled as it was inside the agent.
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	// The default timer slack, not the agent's coarse one (api/timerslack).
	if err := timerslack.Start(cmd); err != nil {
		return fmt.Errorf("%w: start: %w", ErrDevice, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }() // reaps it whenever it ends
	deadline := time.Now().Add(deviceStartTimeout)
	for {
		if c, err := UAPIDial(w.sock); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("%w: exited at start: %s", ErrDevice, logTail(logPath))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			return fmt.Errorf("%w: no answer on %s after %s: %s", ErrDevice, w.sock, deviceStartTimeout, logTail(logPath))
		}
	}
}

// logTail is the end of the device's log, for errors.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log)"
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 512 {
		s = s[len(s)-512:]
	}
	return s
}

// UAPIDial connects to a device's socket.
func UAPIDial(sock string) (*net.UnixConn, error) {
	addr, release := shortSockPath(sock)
	defer release()
	c, err := net.DialTimeout("unix", addr, uapiTimeout)
	if err != nil {
		return nil, err
	}
	return c.(*net.UnixConn), nil
}

// UAPIGet returns the device's state as UAPI "get" text.
func UAPIGet(sock string) (string, error) {
	return uapiDo(sock, "get=1\n\n")
}

// uapiSet applies UAPI "set" text (key=value lines, each ending "\n").
func uapiSet(sock, text string) error {
	_, err := uapiDo(sock, "set=1\n"+text+"\n")
	return err
}

// uapiDo sends one request and returns the answer's lines without the
// errno line; a non-zero errno is an error.
func uapiDo(sock, req string) (string, error) {
	c, err := UAPIDial(sock)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrDevice, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(uapiTimeout))
	if _, err := c.Write([]byte(req)); err != nil {
		return "", fmt.Errorf("%w: send: %w", ErrDevice, err)
	}
	br := bufio.NewReader(c)
	var b strings.Builder
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return "", fmt.Errorf("%w: read answer: %w", ErrDevice, err)
		}
		if line == "\n" {
			return "", fmt.Errorf("%w: answer without errno", ErrDevice)
		}
		if v, ok := strings.CutPrefix(line, "errno="); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n != 0 {
				return "", fmt.Errorf("%w: errno %s", ErrDevice, strings.TrimSpace(v))
			}
			return b.String(), nil
		}
		if b.Len()+len(line) > uapiMaxReply {
			return "", fmt.Errorf("%w: answer longer than %d bytes", ErrDevice, uapiMaxReply)
		}
		b.WriteString(line)
	}
}

// stopDevice stops the device process answering on sock and waits until
// it is gone (SIGTERM, SIGKILL after timeout). No answer on sock: nothing
// to stop.
func stopDevice(sock string, timeout time.Duration) error {
	c, err := UAPIDial(sock)
	if err != nil {
		return nil
	}
	pid, err := PeerPid(c)
	if err != nil {
		c.Close()
		return fmt.Errorf("%w: who holds %s: %w", ErrDevice, sock, err)
	}
	// The pidfd before letting go of the connection: while it is open
	// the process holds its end and the pid is its own.
	pfd, err := unix.PidfdOpen(pid, 0)
	c.Close()
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil
		}
		return fmt.Errorf("%w: pidfd of %d: %w", ErrDevice, pid, err)
	}
	defer unix.Close(pfd)
	if err := unix.PidfdSendSignal(pfd, unix.SIGTERM, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("%w: signal %d: %w", ErrDevice, pid, err)
	}
	if waitPidfd(pfd, timeout) {
		return nil
	}
	_ = unix.PidfdSendSignal(pfd, unix.SIGKILL, nil, 0)
	if waitPidfd(pfd, timeout) {
		return nil
	}
	return fmt.Errorf("%w: process %d does not exit", ErrDevice, pid)
}

// waitPidfd reports whether the process of pfd exited within d.
func waitPidfd(pfd int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left < 0 {
			left = 0
		}
		fds := []unix.PollFd{{Fd: int32(pfd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(left/time.Millisecond))
		if err == nil && n > 0 {
			return true
		}
		if (err != nil && !errors.Is(err, unix.EINTR)) || time.Now().After(deadline) {
			return false
		}
	}
}

// PeerPid is the pid of the process that listens on c's peer socket.
func PeerPid(c *net.UnixConn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, cerr
	}
	if cred.Pid <= 0 {
		return 0, fmt.Errorf("no peer process")
	}
	return int(cred.Pid), nil
}

// shortSockPath returns a name under which a unix socket at p can be
// reached despite sockaddr_un's 108 bytes: p itself when it fits, else p
// through /proc/self/fd of its directory; release closes that directory.
func shortSockPath(p string) (string, func()) {
	if len(p) < 100 {
		return p, func() {}
	}
	fd, err := unix.Open(filepath.Dir(p), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return p, func() {}
	}
	return fmt.Sprintf("/proc/self/fd/%d/%s", fd, filepath.Base(p)), func() { unix.Close(fd) }
}
