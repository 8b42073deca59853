package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

// Timeouts of the harness's own waits.
const (
	// StartTimeout bounds how long Start waits for the agent's socket.
	StartTimeout = 30 * time.Second
	// StopTimeout bounds how long Stop waits after SIGTERM before SIGKILL.
	StopTimeout = 30 * time.Second
	// CLITimeout bounds one CLI call made without a context.
	CLITimeout = 30 * time.Second
)

// ErrNotRunning is returned when an operation needs a running agent.
var ErrNotRunning = errors.New("agent not running")

// Host is one network namespace on the cluster's bridge and the agent that
// runs in it. Its methods are safe for concurrent use; those taking a
// testing.TB must run on the test goroutine.
type Host struct {
	c *Cluster
	// Index counts hosts from 1; Name is "h<Index>".
	Index int
	Name  string
	// NS is the network namespace (also the agent's hostname, so node ls
	// tells hosts apart); Veth the root-namespace side of its link.
	NS, Veth string
	// IP is the host's address on the bridge, the agent's --advertise-addr.
	IP string
	// DataDir survives restarts; RunDir holds per-host runtime state.
	DataDir, RunDir string
	// Socket is the agent's API socket; LogPath its stdout+stderr, appended
	// across restarts.
	Socket, LogPath string

	mu     sync.Mutex
	proc   *process
	starts int
}

// process is one run of the agent; done closes when it has been reaped.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Addr returns the host's cluster address, IP:2377, as `join` takes it.
func (h *Host) Addr() string { return fmt.Sprintf("%s:%d", h.IP, ClusterPort) }

// Start runs `shoal agent --data-dir DIR --advertise-addr IP --socket SOCK`
// plus the cluster's and the given extra args in the host's namespace, and
// waits until the socket accepts connections. It fails if an agent is
// already running or the agent exits or times out before listening.
func (h *Host) Start(args ...string) error {
	h.mu.Lock()
	if h.proc != nil {
		h.mu.Unlock()
		return fmt.Errorf("start %s: agent already running (pid %d)", h.Name, h.proc.cmd.Process.Pid)
	}
	_ = os.Remove(h.Socket) // a stale socket from a killed agent
	logf, err := os.OpenFile(h.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		h.mu.Unlock()
		return fmt.Errorf("start %s: open log: %w", h.Name, err)
	}
	h.starts++
	argv := []string{
		"--uts", "--", // own hostname, so nodes are told apart
		"nsenter", "--net=/run/netns/" + h.NS, "--",
		"/bin/sh", "-c", `hostname "$0" && exec "$@"`, h.NS,
		h.c.Bin, "agent", "--data-dir", h.DataDir, "--advertise-addr", h.IP, "--socket", h.Socket,
	}
	argv = append(argv, h.c.opts.agentArgs...)
	argv = append(argv, args...)
	argv = append(argv, strings.Fields(os.Getenv(EnvAgentArgs))...)
	fmt.Fprintf(logf, "=== harness: start #%d at %s: %s\n", h.starts, time.Now().Format(time.RFC3339Nano), strings.Join(argv[9:], " "))
	cmd := exec.Command("unshare", argv...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+h.RunDir)
	cmd.Env = append(cmd.Env, h.c.opts.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		h.mu.Unlock()
		return fmt.Errorf("start %s: %w", h.Name, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	h.proc = p
	h.mu.Unlock()

	// The reaper owns the process: it is the only caller of Wait and it
	// clears h.proc, so every later Start sees the exit.
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		h.mu.Lock()
		if h.proc == p {
			h.proc = nil
		}
		h.mu.Unlock()
		close(p.done)
	}()

	deadline := time.Now().Add(StartTimeout)
	for {
		select {
		case <-p.done:
			return fmt.Errorf("start %s: agent exited before listening (%v); log tail:\n%s", h.Name, p.err, h.LogTail(30))
		default:
		}
		if conn, err := net.DialTimeout("unix", h.Socket, time.Second); err == nil {
			conn.Close()
			return nil
		}
		if time.Now().After(deadline) {
			h.kill(syscall.SIGKILL)
			return fmt.Errorf("start %s: socket %s not answering after %s; log tail:\n%s", h.Name, h.Socket, StartTimeout, h.LogTail(30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// MustStart is Start that fails t on error.
func (h *Host) MustStart(t testing.TB, args ...string) {
	t.Helper()
	if err := h.Start(args...); err != nil {
		t.Fatal(err)
	}
}

// Running reports whether the agent process is alive (not yet reaped).
func (h *Host) Running() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.proc != nil
}

// PID returns the agent's process ID, or 0 when it is not running.
func (h *Host) PID() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.proc == nil {
		return 0
	}
	return h.proc.cmd.Process.Pid
}

// kill sends sig to the agent and waits (up to StopTimeout) until it has been
// reaped. It reports whether the agent exited in time; a missing agent counts
// as exited.
func (h *Host) kill(sig syscall.Signal) bool {
	h.mu.Lock()
	p := h.proc
	h.mu.Unlock()
	if p == nil {
		return true
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return true
	case <-time.After(StopTimeout):
		return false
	}
}

// KillProcess sends SIGKILL to the agent and waits until it is gone. The
// link stays up; containers it started keep running. Idempotent.
func (h *Host) KillProcess() error {
	if !h.kill(syscall.SIGKILL) {
		return fmt.Errorf("kill %s: agent did not exit", h.Name)
	}
	return nil
}

// Kill pulls the plug: it sets the host's link down and SIGKILLs the agent,
// so peers see neither a goodbye nor any packet. Restart brings it back.
func (h *Host) Kill() error {
	errLink := h.CutLink()
	return errors.Join(errLink, h.KillProcess())
}

// Stop sends SIGTERM and waits for the agent to exit; after StopTimeout it
// sends SIGKILL and returns an error. Idempotent.
func (h *Host) Stop() error {
	if h.kill(syscall.SIGTERM) {
		return nil
	}
	h.kill(syscall.SIGKILL)
	return fmt.Errorf("stop %s: agent ignored SIGTERM for %s", h.Name, StopTimeout)
}

// Restart stops a running agent (SIGTERM), brings the link up and starts the
// agent again on the same data dir with args.
func (h *Host) Restart(args ...string) error {
	if err := h.Stop(); err != nil {
		return err
	}
	if err := h.RestoreLink(); err != nil {
		return err
	}
	return h.Start(args...)
}

// CutLink sets the bridge side of the host's veth down: the host keeps its
// addresses but no packet passes. Idempotent.
func (h *Host) CutLink() error { return setLink(h.Veth, false) }

// RestoreLink undoes CutLink. Idempotent.
func (h *Host) RestoreLink() error { return setLink(h.Veth, true) }

// RuncRoots returns the runc roots found under the host's data and runtime
// dirs (directories holding ID/state.json), for cleanup and inspection.
func (h *Host) RuncRoots() []string {
	roots := findRuncRoots(h.DataDir, 4)
	return append(roots, findRuncRoots(h.RunDir, 4)...)
}

// LogTail returns the last n lines of the agent's log (all runs).
func (h *Host) LogTail(n int) string {
	b, err := os.ReadFile(h.LogPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// CLIError is a CLI call that ran and exited non-zero (or was killed).
type CLIError struct {
	Args   []string
	Host   string
	Stderr string
	Err    error
}

func (e *CLIError) Error() string {
	return fmt.Sprintf("shoal %s on %s: %v: %s", strings.Join(e.Args, " "), e.Host, e.Err, strings.TrimSpace(e.Stderr))
}

func (e *CLIError) Unwrap() error { return e.Err }

// CLI runs `shoal --host unix://SOCK args...` in the root namespace and
// returns its stdout and stderr; err is a *CLIError when it exits non-zero.
// It is bounded by CLITimeout.
func (h *Host) CLI(args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), CLITimeout)
	defer cancel()
	return h.CLIContext(ctx, args...)
}

// CLIContext is CLI bounded by ctx instead of CLITimeout.
func (h *Host) CLIContext(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	argv := append([]string{"--host", "unix://" + h.Socket}, args...)
	cmd := exec.CommandContext(ctx, h.c.Bin, argv...)
	cmd.Env = append(os.Environ(), "SHOAL_HOST=unix://"+h.Socket)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), errb.String(), &CLIError{Args: args, Host: h.Name, Stderr: errb.String(), Err: err}
	}
	return out.String(), errb.String(), nil
}

// MustCLI runs CLI and fails t on error; it returns stdout.
func (h *Host) MustCLI(t testing.TB, args ...string) string {
	t.Helper()
	out, _, err := h.CLI(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// JSON runs a listing or inspecting command with `--format json` and decodes
// its stdout into v. The flag goes after the command words (`node ls`,
// `status`), before any positional argument, as urfave/cli requires.
func (h *Host) JSON(v any, args ...string) error {
	out, _, err := h.CLI(WithFormatJSON(args)...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		return fmt.Errorf("shoal %s on %s: decode JSON: %w: %q", strings.Join(args, " "), h.Name, err, truncate(out, 300))
	}
	return nil
}

// commandGroups are the CLI commands that take a subcommand.
var commandGroups = map[string]bool{"node": true, "service": true, "image": true, "stack": true, "container": true, "volume": true}

// WithFormatJSON inserts `--format json` after the command words of args.
func WithFormatJSON(args []string) []string {
	n := 1
	if len(args) > 1 && commandGroups[args[0]] {
		n = 2
	}
	if n > len(args) {
		n = len(args)
	}
	out := append([]string{}, args[:n]...)
	out = append(out, "--format", "json")
	return append(out, args[n:]...)
}

// Status returns `shoal status` of this host.
func (h *Host) Status() (api.Status, error) {
	var st api.Status
	err := h.JSON(&st, "status")
	return st, err
}

// Nodes returns `shoal node ls` as this host sees it.
func (h *Host) Nodes() ([]api.Node, error) {
	var nodes []api.Node
	err := h.JSON(&nodes, "node", "ls")
	return nodes, err
}

// Node returns `shoal node inspect ID` as this host sees it.
func (h *Host) Node(id string) (api.Node, error) {
	var n api.Node
	err := h.JSON(&n, "node", "inspect", id)
	return n, err
}

// NodeID returns this host's node ID from `status`, failing t on error.
func (h *Host) NodeID(t testing.TB) string {
	t.Helper()
	st, err := h.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.NodeID == "" {
		t.Fatalf("%s: status has no node_id", h.Name)
	}
	return st.NodeID
}

// Token returns the join token printed by `shoal token`, failing t on error.
func (h *Host) Token(t testing.TB) string {
	t.Helper()
	tok := strings.TrimSpace(h.MustCLI(t, "token"))
	if tok == "" || strings.ContainsAny(tok, " \n") {
		t.Fatalf("%s: `shoal token` printed %q, want the token alone", h.Name, tok)
	}
	return tok
}

// Join runs `shoal join --token TOKEN VIA_IP:2377` on this host.
func (h *Host) Join(token string, via *Host) error {
	_, _, err := h.CLI("join", "--token", token, via.Addr())
	return err
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// ContainerNetns returns the network namespace file of a container on h: in
// its run dir beside the agent's socket (runtime.Config.RunRoot), or, for a
// container made without one, in the data dir.
func (h *Host) ContainerNetns(containerID string) string {
	if m, _ := filepath.Glob(filepath.Join(h.RunDir, "containers-*", containerID, "netns")); len(m) == 1 {
		return m[0]
	}
	return filepath.Join(h.DataDir, "runtime", "netns", containerID)
}

// Reboot does to the host what a power cycle does, then starts the agent
// again with args. While the link is cut, every process of the host dies
// (the agent, its supervisor, every container), every mount under its dirs
// goes, RunDir (a tmpfs on a real node: the socket, runc's state, the
// containers' run dirs, secrets) is emptied, and the namespace loses every
// device but lo and eth0, its nftables rules and IP forwarding. DataDir is
// kept, as a disk is.
func (h *Host) Reboot(args ...string) error {
	if err := h.PowerOff(); err != nil {
		return err
	}
	return h.Start(args...)
}

// PowerOff is the first half of Reboot: the host as a power cut leaves it,
// its link up again and its agent not running (Start boots it).
func (h *Host) PowerOff() error {
	if err := h.CutLink(); err != nil {
		return err
	}
	if !h.kill(syscall.SIGKILL) {
		return fmt.Errorf("reboot %s: agent did not exit", h.Name)
	}
	for _, root := range h.RuncRoots() {
		for _, id := range runcIDs(root) {
			if out, err := run("runc", "--root", root, "delete", "--force", id); err != nil {
				return fmt.Errorf("reboot %s: runc delete %s: %w %s", h.Name, id, err, out)
			}
		}
	}
	if err := h.killNetnsProcesses(); err != nil {
		return err
	}
	if err := unmountUnder(h.DataDir, h.RunDir); err != nil {
		return fmt.Errorf("reboot %s: %w", h.Name, err)
	}
	entries, err := os.ReadDir(h.RunDir)
	if err != nil {
		return fmt.Errorf("reboot %s: %w", h.Name, err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(h.RunDir, e.Name())); err != nil {
			return fmt.Errorf("reboot %s: empty the run dir: %w", h.Name, err)
		}
	}
	out, err := run("ip", "-n", h.NS, "-o", "link", "show")
	if err != nil {
		return fmt.Errorf("reboot %s: list links: %w", h.Name, err)
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if name == "lo" || name == "eth0" {
			continue
		}
		if out, err := run("ip", "-n", h.NS, "link", "del", name); err != nil && !strings.Contains(out, "Cannot find device") {
			return fmt.Errorf("reboot %s: delete link %s: %w %s", h.Name, name, err, out)
		}
	}
	for _, cmd := range [][]string{{"nft", "flush", "ruleset"}, {"sysctl", "-qw", "net.ipv4.ip_forward=0"}} {
		if out, err := run("ip", append([]string{"netns", "exec", h.NS}, cmd...)...); err != nil {
			return fmt.Errorf("reboot %s: %s: %w %s", h.Name, strings.Join(cmd, " "), err, out)
		}
	}
	removeAgentCgroups(h.DataDir)
	return h.RestoreLink()
}

// killNetnsProcesses SIGKILLs every process in the host's namespace (the
// agent's supervisor and device processes) and waits until they are gone.
func (h *Host) killNetnsProcesses() error {
	out, err := run("ip", "netns", "pids", h.NS)
	if err != nil {
		return fmt.Errorf("reboot %s: list processes: %w", h.Name, err)
	}
	var pids []int
	for _, f := range strings.Fields(out) {
		if pid, err := strconv.Atoi(f); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			pids = append(pids, pid)
		}
	}
	deadline := time.Now().Add(StopTimeout)
	for _, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				return fmt.Errorf("reboot %s: process %d outlived SIGKILL", h.Name, pid)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return nil
}

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses.
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}
