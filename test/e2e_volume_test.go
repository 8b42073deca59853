package test

// End-to-end tests of mounts, named volumes and `shoal exec`: real agents,
// real containers under runc, driven through the CLI.

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

const volTimeout = 2 * time.Minute

// exitCodeOf returns the exit code of a failed CLI call (0 for success).
func exitCodeOf(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("not an exit status: %v", err)
	}
	return ee.ExitCode()
}

// runningTask waits for svc to have one running task and returns it.
func runningTask(t *testing.T, h *harness.Host, svc string, not string) api.Task {
	t.Helper()
	var got api.Task
	harness.Eventually(t, volTimeout, func() (bool, string) {
		for _, tk := range tasksOf(t, h, svc) {
			if tk.DesiredState == api.TaskRunning && tk.State == api.TaskRunning && tk.ID != not {
				got = tk
				return true, ""
			}
		}
		return false, "no running task"
	}, "%s running", svc)
	return got
}

// execOut runs `shoal exec` and returns its stdout, failing t on error.
func execOut(t *testing.T, h *harness.Host, args ...string) string {
	t.Helper()
	return h.MustCLI(t, append([]string{"exec"}, args...)...)
}

func volumeOf(t *testing.T, h *harness.Host, name string) (api.Volume, error) {
	t.Helper()
	var v api.Volume
	err := h.JSON(&v, "volume", "inspect", name)
	return v, err
}

// TestVolumeSurvivesUpdateAndAgentKill: what a task writes in a named
// volume is still there for the task that replaces it (service update
// --force) and after the agent is killed with SIGKILL and started again;
// the volume cannot be removed while a container uses it and can once the
// service is gone.
func TestVolumeSurvivesUpdateAndAgentKill(t *testing.T) {
	harness.Context(t, testTimeout)
	c, _ := svcCluster(t, 1)
	h := c.Host(1)
	h.MustCLI(t, "service", "create", "-d", "--name", "vol", "--stop-grace-period", "1s",
		"--mount", "type=volume,source=data,target=/data",
		"bb:1", "sh", "-c", "echo start >> /data/starts; exec sleep 3600")
	first := runningTask(t, h, "vol", "")

	v, err := volumeOf(t, h, "data")
	if err != nil {
		t.Fatal(err)
	}
	if !v.InUse || v.Name != "data" || !filepath.IsAbs(v.Mountpoint) {
		t.Fatalf("volume inspect: %+v", v)
	}
	var list []api.Volume
	if err := h.JSON(&list, "volume", "ls"); err != nil || len(list) != 1 || list[0].Name != "data" {
		t.Fatalf("volume ls: %+v %v", list, err)
	}
	starts := func(want int) harness.Condition {
		return func() (bool, string) {
			b, err := os.ReadFile(filepath.Join(v.Mountpoint, "starts"))
			n := strings.Count(string(b), "start\n")
			return err == nil && n == want, strings.TrimSpace(string(b))
		}
	}
	harness.Eventually(t, volTimeout, starts(1), "first task wrote the volume")

	h.MustCLI(t, "service", "update", "-d", "--force", "vol")
	second := runningTask(t, h, "vol", first.ID)
	harness.Eventually(t, volTimeout, starts(2), "the replacement task sees the first one's file")
	if out := execOut(t, h, "vol.1", "cat", "/data/starts"); out != "start\nstart\n" {
		t.Fatalf("exec cat /data/starts = %q", out)
	}

	if err := h.KillProcess(); err != nil {
		t.Fatal(err)
	}
	h.MustStart(t)
	c.WaitReady(t, formTimeout, 1)
	// The re-adopted task still sees the data; so does a fresh task.
	harness.Eventually(t, volTimeout, func() (bool, string) {
		out, stderr, err := h.CLI("exec", "vol.1", "cat", "/data/starts")
		return err == nil && out == "start\nstart\n", out + stderr
	}, "exec after the agent restart")
	h.MustCLI(t, "service", "update", "-d", "--force", "vol")
	runningTask(t, h, "vol", second.ID)
	harness.Eventually(t, volTimeout, starts(3), "a task started after the agent restart sees the old data")

	_, _, err = h.CLI("volume", "rm", "data")
	mustFail(t, err, "volume rm while in use", "in use")
	if _, err := volumeOf(t, h, "data"); err != nil {
		t.Fatalf("refused volume rm removed the volume: %v", err)
	}
	h.MustCLI(t, "service", "rm", "vol")
	harness.Eventually(t, volTimeout, func() (bool, string) {
		_, stderr, err := h.CLI("volume", "rm", "data")
		return err == nil, stderr
	}, "volume rm once the service is gone")
	if _, err := os.Stat(v.Mountpoint); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("volume dir after rm: %v", err)
	}
	if err := h.JSON(&list, "volume", "ls"); err != nil || len(list) != 0 {
		t.Fatalf("volume ls after rm: %+v %v", list, err)
	}
}

// TestMountsBindTmpfsAndExec: a missing bind source fails the task with an
// error naming the mount; bad mounts are refused before anything is
// created; a tmpfs mount is a tmpfs; exec relays output, input and the
// exit code, and gives a real terminal with -t.
func TestMountsBindTmpfsAndExec(t *testing.T) {
	harness.Context(t, testTimeout)
	c, _ := svcCluster(t, 1)
	h := c.Host(1)

	for _, bad := range []struct{ mount, words string }{
		{"type=bind,source=relative/dir,target=/x", "absolute"},
		{"type=volume,source=v,target=/proc/x", "reserved"},
		{"type=tmpfs,target=data", "absolute"},
	} {
		_, _, err := h.CLI("service", "create", "-d", "--name", "bad", "--mount", bad.mount, "bb:1", "sleep", "60")
		mustFail(t, err, "--mount "+bad.mount, bad.words)
	}
	var svcs []api.Service
	if err := h.JSON(&svcs, "service", "ls"); err != nil || len(svcs) != 0 {
		t.Fatalf("refused creates left services: %+v %v", svcs, err)
	}

	// shoal run mounts too; its volume stays after the container.
	h.MustCLI(t, "run", "--rm", "--mount", "type=volume,source=runvol,target=/d", "bb:1", "sh", "-c", "echo x > /d/f")
	if v, err := volumeOf(t, h, "runvol"); err != nil || v.InUse {
		t.Fatalf("volume of a finished run --rm: %+v %v", v, err)
	} else if b, err := os.ReadFile(filepath.Join(v.Mountpoint, "f")); err != nil || string(b) != "x\n" {
		t.Fatalf("volume data of run: %q %v", b, err)
	}
	h.MustCLI(t, "volume", "rm", "runvol")

	// A volume at /etc: the container's own hosts file and resolver still
	// show through it (mounted after their parent, as docker orders
	// mounts), not the volume's copies. Before, the volume hid them and
	// the container lost its name resolution.
	etc := h.MustCLI(t, "run", "--rm", "--mount", "type=volume,source=etcvol,target=/etc", "bb:1",
		"sh", "-c", `grep -c "$(hostname)" /etc/hosts; grep -c '^nameserver' /etc/resolv.conf`)
	if f := strings.Fields(etc); len(f) != 2 || f[0] == "0" || f[1] == "0" {
		t.Fatalf("hosts and resolv.conf under a volume at /etc: %q, want the container's own (hostname and a nameserver)", etc)
	}
	h.MustCLI(t, "volume", "rm", "etcvol")

	missing := "/nonexistent-shoal-e2e/src"
	h.MustCLI(t, "service", "create", "-d", "--name", "bindfail", "--restart-condition", "none",
		"--mount", "type=bind,source="+missing+",target=/x", "bb:1", "sleep", "60")
	harness.Eventually(t, volTimeout, func() (bool, string) {
		for _, tk := range tasksOf(t, h, "bindfail") {
			if api.TaskTerminal(tk.State) && strings.Contains(tk.Error, missing) && strings.Contains(tk.Error, "target=/x") {
				return true, ""
			}
		}
		return false, "no failed task naming the mount"
	}, "task with a missing bind source fails")

	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "hello"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.MustCLI(t, "service", "create", "-d", "--name", "tmp", "--stop-grace-period", "1s",
		"--mount", "type=tmpfs,target=/scratch,tmpfs-size=1M",
		"--mount", "type=bind,source="+src+",target=/host,readonly",
		"bb:1", "sleep", "3600")
	runningTask(t, h, "tmp", "")

	mounts := execOut(t, h, "tmp.1", "grep", "/scratch", "/proc/mounts")
	if !strings.HasPrefix(mounts, "tmpfs /scratch tmpfs ") || !strings.Contains(mounts, "size=1024k") {
		t.Fatalf("/scratch in /proc/mounts: %q", mounts)
	}
	if out := execOut(t, h, "tmp.1", "cat", "/host/hello"); out != "from the host\n" {
		t.Fatalf("bind mount: %q", out)
	}
	_, _, err := h.CLI("exec", "tmp.1", "touch", "/host/x")
	if code := exitCodeOf(t, err); code == 0 {
		t.Fatal("wrote into a readonly bind mount")
	}

	// exec without a terminal: output, exit code, env, workdir, user.
	out, _, err := h.CLI("exec", "tmp.1", "sh", "-c", "echo hi; echo oops >&2; exit 3")
	if code := exitCodeOf(t, err); code != 3 || out != "hi\n" {
		t.Fatalf("exec exit 3: code %d stdout %q (%v)", code, out, err)
	}
	if out := execOut(t, h, "-e", "GREETING=hey", "-w", "/scratch", "-u", "1000:1000", "tmp.1",
		"sh", "-c", "echo $GREETING $(pwd) $(id -u):$(id -g)"); out != "hey /scratch 1000:1000\n" {
		t.Fatalf("exec -e -w -u: %q", out)
	}
	// -i relays stdin, and its end.
	cmd := exec.Command(c.Bin, "--host", "unix://"+h.Socket, "exec", "-i", "tmp.1", "sh", "-c", "tr a-z A-Z; echo done")
	cmd.Stdin = strings.NewReader("piped input\n")
	if b, err := cmd.Output(); err != nil || string(b) != "PIPED INPUT\ndone\n" {
		t.Fatalf("exec -i: %q %v", b, err)
	}
	_, _, err = h.CLI("exec", "tmp.1", "no-such-command")
	if code := exitCodeOf(t, err); code != 127 {
		t.Fatalf("exec of a missing command: exit %d, want 127 (%v)", code, err)
	}
	_, _, err = h.CLI("exec", "nosuch.1", "true")
	mustFail(t, err, "exec in an unknown container", "no such container")

	// With -t the process has a terminal: run the CLI itself on a pty
	// (script) and ask for the process's tty.
	if _, err := exec.LookPath("script"); err != nil {
		t.Fatalf("script (bsdutils) is needed for the TTY test: %v", err)
	}
	cli := c.Bin + " --host unix://" + h.Socket
	got, code := underScript(t, cli+" exec -t tmp.1 sh -c 'tty; exit 5'")
	if !strings.Contains(got, "/dev/pts/") || code != 5 {
		t.Fatalf("exec -t: exit %d, output %q; want a /dev/pts/N and exit 5", code, got)
	}
	// -it: keys typed on the CLI's terminal reach the process's terminal.
	got, code = underScriptInput(t, cli+" exec -it tmp.1 sh", "echo typed-$((6*7))\nexit 7\n")
	if !strings.Contains(got, "typed-42") || code != 7 {
		t.Fatalf("exec -it: exit %d, output %q", code, got)
	}
	// The terminal has the CLI's size, and follows its resizes (SIGWINCH).
	if got, _ := underScript(t, "stty cols 100 rows 40; "+cli+" exec -t tmp.1 stty size"); !strings.Contains(got, "40 100") {
		t.Fatalf("exec -t size: %q, want 40 100", got)
	}
	got, code = underScript(t, "stty cols 100 rows 40; "+cli+
		` exec -t tmp.1 sh -c 'while [ "$(stty size)" != "50 120" ]; do sleep 0.1; done; echo resized' & sleep 1; stty cols 120 rows 50; wait $!`)
	if !strings.Contains(got, "resized") || code != 0 {
		t.Fatalf("exec -t resize: exit %d, output %q", code, got)
	}
}

// underScript runs a shell command line on a pseudo-terminal (script from
// bsdutils) and returns its output (without CRs) and exit code.
func underScript(t *testing.T, line string) (string, int) {
	t.Helper()
	return underScriptInput(t, line, "")
}

// underScriptInput is underScript with input typed on the terminal.
func underScriptInput(t *testing.T, line, input string) (string, int) {
	t.Helper()
	if _, err := exec.LookPath("script"); err != nil {
		t.Fatalf("script (bsdutils) is needed for the TTY tests: %v", err)
	}
	pr, pw, err := os.Pipe() // script's stdin: open until the command ends
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	ctx, cancel := context.WithTimeout(context.Background(), volTimeout)
	defer cancel()
	sc := exec.CommandContext(ctx, "script", "-qec", line, "/dev/null")
	sc.Stdin = pr
	if input != "" {
		if _, err := pw.WriteString(input); err != nil {
			t.Fatal(err)
		}
	}
	b, err := sc.Output()
	pr.Close()
	got := strings.ReplaceAll(string(b), "\r", "")
	t.Logf("under script: %s\n%s", line, got)
	return got, exitCodeOf(t, err)
}

// TestExecKeepsContainerUlimits: a process started by `shoal exec` has the
// container's rlimits, soft and hard, as PID 1 has them. runc 1.1 built
// with Go >= 1.19 (Debian 12's) left an exec'd process's soft nofile at the
// hard limit: with --ulimit nofile=2000:4000, PID 1 had 2000/4000 and
// `shoal exec ... cat /proc/self/limits` 4000/4000. Now the container's
// init sets them before it becomes the command (runtime/execproc,
// rlimitsThroughInit); as another user too, and a missing command is
// still exit 127.
func TestExecKeepsContainerUlimits(t *testing.T) {
	harness.Context(t, testTimeout)
	c, _ := svcCluster(t, 1)
	h := c.Host(1)
	h.MustCLI(t, "service", "create", "-d", "--name", "lim", "--stop-grace-period", "1s",
		"--ulimit", "nofile=2000:4000", "--ulimit", "nproc=500:600", "bb:1", "sleep", "3600")
	runningTask(t, h, "lim", "")

	limits := func(out string) (nofile, nproc []string) {
		for _, l := range strings.Split(out, "\n") {
			f := strings.Fields(l)
			switch {
			case strings.HasPrefix(l, "Max open files") && len(f) >= 5:
				nofile = f[3:5]
			case strings.HasPrefix(l, "Max processes") && len(f) >= 4:
				nproc = f[2:4]
			}
		}
		return nofile, nproc
	}
	for _, args := range [][]string{
		{"lim.1", "cat", "/proc/1/limits"},
		{"lim.1", "cat", "/proc/self/limits"},
		{"-u", "1000:1000", "lim.1", "cat", "/proc/self/limits"},
		{"lim.1", "sh", "-c", "cat /proc/self/limits"}, // and what it starts
	} {
		nofile, nproc := limits(execOut(t, h, args...))
		if strings.Join(nofile, "/") != "2000/4000" || strings.Join(nproc, "/") != "500/600" {
			t.Errorf("exec %q: nofile %v nproc %v, want 2000/4000 and 500/600", args, nofile, nproc)
		}
	}
	if out := execOut(t, h, "lim.1", "sh", "-c", `echo "${SHOAL_EXEC_RLIMITS-unset}"`); out != "unset\n" {
		t.Errorf("the exec'd process sees the init's variable: %q", out)
	}
	_, _, err := h.CLI("exec", "lim.1", "no-such-command")
	if code := exitCodeOf(t, err); code != 127 {
		t.Fatalf("exec of a missing command: exit %d, want 127 (%v)", code, err)
	}
}

// TestRunExecNeverStartedExitCodes: a run or exec whose command never ran
// exits with docker's codes, the reason on stderr: `run -u` of a user the
// image lacks is the run's own failure, 125 (it was 1); `exec -w` of a
// directory that does not exist is a command that cannot be started, 126
// (it was 127, as if the command were missing); a missing command is 127.
func TestRunExecNeverStartedExitCodes(t *testing.T) {
	harness.Context(t, testTimeout)
	c, _ := svcCluster(t, 1)
	h := c.Host(1)
	h.MustCLI(t, "service", "create", "-d", "--name", "x", "--stop-grace-period", "1s", "bb:1", "sleep", "3600")
	runningTask(t, h, "x", "")
	for _, tt := range []struct {
		args  []string
		want  int
		words string
	}{
		{[]string{"run", "--rm", "-u", "nosuchuser", "bb:1", "true"}, 125, "unable to find user nosuchuser"},
		{[]string{"run", "-d", "--network", "nosuchnet", "bb:1", "true"}, 125, "no such network"},
		{[]string{"run", "--rm", "bb:1", "no-such-command"}, 127, "no-such-command"},
		{[]string{"exec", "-w", "/nonexist", "x.1", "true"}, 126, `chdir to cwd ("/nonexist")`},
		{[]string{"exec", "-u", "nosuchuser", "x.1", "true"}, 126, "unable to find user nosuchuser"},
		{[]string{"exec", "x.1", "no-such-command"}, 127, "no-such-command"},
		{[]string{"exec", "x.1", "/no/such"}, 127, "/no/such"},
	} {
		_, stderr, err := h.CLI(tt.args...)
		if code := exitCodeOf(t, err); code != tt.want || !strings.Contains(stderr, tt.words) {
			t.Errorf("%q: exit %d, stderr %q; want %d and %q", tt.args, code, stderr, tt.want, tt.words)
		}
	}
	var cs []api.Container
	if err := h.JSON(&cs, "ps", "-a"); err != nil || len(cs) != 1 {
		t.Fatalf("refused runs left containers: %v %+v", err, cs)
	}
}
