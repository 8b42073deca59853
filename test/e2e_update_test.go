package test

// End-to-end tests of rolling updates: the monitor period and failure
// action (issue 14 item 5), and updates that drop no request through the
// routing mesh (issue 15 item 3).

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

// inspectService returns `service inspect NAME`.
func inspectService(t *testing.T, h *harness.Host, name string) (api.Service, error) {
	t.Helper()
	var s api.Service
	err := h.JSON(&s, "service", "inspect", name)
	return s, err
}

// updateState is the service's update status state, or "none".
func updateState(s api.Service) string {
	if s.UpdateStatus == nil {
		return "none"
	}
	return s.UpdateStatus.State
}

// runningWith counts the service's tasks that run, are meant to run, and
// whose command starts with cmd0.
func runningWith(tasks []api.Task, cmd0 string) int {
	n := 0
	for _, tk := range tasks {
		if tk.DesiredState == api.TaskRunning && tk.State == api.TaskRunning && len(tk.Spec.Command) > 0 && tk.Spec.Command[0] == cmd0 {
			n++
		}
	}
	return n
}

// TestUpdateMonitorFailureAction is the repro of issue 14 item 5: tasks
// that die a few seconds after starting must fail the update although
// every slot reached running before the first of them died. With
// --update-failure-action rollback the service returns to its previous
// args, 6/6 running, and says why; with the default failure action and
// monitor (pause, 5s) the update pauses. Before the fix the update
// "completed" as soon as every slot ran and the service sat at 0/6.
func TestUpdateMonitorFailureAction(t *testing.T) {
	c, _ := svcCluster(t, 3)
	h1, h2 := c.Host(1), c.Host(2)
	// The flags, with the tasks dying later (3s) and a monitor
	// period long enough to see it: every slot reaches running well before
	// the first task dies, even on a loaded machine.
	h1.MustCLI(t, "service", "create", "--name", "rb", "--replicas", "6", "--update-parallelism", "2",
		"--update-monitor", "6s", "--update-failure-action", "rollback", "bb:1", "httpd", "-f", "-p", "80")
	// The defaults (pause, monitor 5s) but for parallelism, for the same
	// reason.
	h1.MustCLI(t, "service", "create", "--name", "ps", "--replicas", "6", "--update-parallelism", "3",
		"bb:1", "httpd", "-f", "-p", "80")
	waitSlots(t, h1, "rb", 6, "bb:1", 90*time.Second)
	waitSlots(t, h1, "ps", 6, "bb:1", 90*time.Second)

	ctx := harness.Context(t, 3*time.Minute)
	cliCtx, cancel := context.WithTimeout(ctx, 150*time.Second)
	defer cancel()

	// Rollback: the CLI's progress reports it, inspect says why, and the
	// old args run again in all six slots.
	_, stderr, err := h2.CLIContext(cliCtx, "service", "update", "--timeout", "140s", "--args", "sh -c 'sleep 3; exit 7'", "rb")
	t.Logf("update rb: err=%v\n%s", err, stderr)
	if err == nil || !strings.Contains(err.Error(), "rolled back") {
		t.Errorf("service update of rb: want an error saying it was rolled back, got %v", err)
	}
	// The CLI waits for the rollback to end, as docker's does: it used to
	// return at its start, the service still half on the failed spec.
	if s, err := inspectService(t, h1, "rb"); err != nil || updateState(s) != api.UpdateRollbackCompleted {
		t.Errorf("service update of rb returned with the update status %s (%v), want %s", updateState(s), err, api.UpdateRollbackCompleted)
	}
	harness.Eventually(t, 120*time.Second, func() (bool, string) {
		s, err := inspectService(t, h1, "rb")
		if err != nil {
			return false, err.Error()
		}
		n := runningWith(tasksOf(t, h1, "rb"), "httpd")
		return updateState(s) == api.UpdateRollbackCompleted && len(s.Spec.Command) > 0 && s.Spec.Command[0] == "httpd" && n == 6,
			fmt.Sprintf("update status %s, command %v, %d/6 running httpd", updateState(s), s.Spec.Command, n)
	}, "rb rolled back, 6/6 running the old args")
	s, err := inspectService(t, h1, "rb")
	if err != nil {
		t.Fatal(err)
	}
	if msg := s.UpdateStatus.Message; !strings.Contains(msg, "update rolled back: task rb.") || !strings.Contains(msg, "exit (7)") {
		t.Errorf("rollback status message %q does not name the failed task and its exit", msg)
	}

	// Pause (the defaults): the update stops with the failing spec, and
	// says which task failed.
	_, stderr, err = h2.CLIContext(cliCtx, "service", "update", "--timeout", "140s", "--args", "sh -c 'sleep 3; exit 7'", "ps")
	t.Logf("update ps: err=%v\n%s", err, stderr)
	if err == nil || !strings.Contains(err.Error(), "paused") {
		t.Errorf("service update of ps: want an error saying it paused, got %v", err)
	}
	harness.Eventually(t, 120*time.Second, func() (bool, string) {
		s, err := inspectService(t, h1, "ps")
		if err != nil {
			return false, err.Error()
		}
		msg := ""
		if s.UpdateStatus != nil {
			msg = s.UpdateStatus.Message
		}
		return updateState(s) == api.UpdatePaused && strings.Contains(msg, "update paused: task ps."),
			fmt.Sprintf("update status %s: %s", updateState(s), msg)
	}, "ps paused")
}

// trafficLoop sends requests to url over a new connection each time until
// stop is closed, at most max of them, one every gap, and counts the
// outcomes; failures keep their first few errors.
type trafficLoop struct {
	mu     sync.Mutex
	ok     int
	failed int
	errs   []string
}

func (l *trafficLoop) run(url string, stop <-chan struct{}, max int, gap time.Duration) {
	client := &http.Client{
		Timeout:   3 * time.Second,
		Transport: &http.Transport{DisableKeepAlives: true},
	}
	tick := time.NewTicker(gap)
	defer tick.Stop()
	for i := 0; i < max; i++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		err := func() error {
			resp, err := client.Get(url)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
			if err != nil {
				return err
			}
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "hello from") {
				return fmt.Errorf("status %d: %q", resp.StatusCode, b)
			}
			return nil
		}()
		l.mu.Lock()
		if err != nil {
			l.failed++
			if len(l.errs) < 5 {
				l.errs = append(l.errs, fmt.Sprintf("%s %s: %v", time.Now().Format("15:04:05.000"), url, err))
			}
		} else {
			l.ok++
		}
		l.mu.Unlock()
	}
}

// throughUpdate runs a client loop over the published port of every host
// while update runs, then checks that no request failed.
func throughUpdate(t *testing.T, c *harness.Cluster, port int, what string, update func()) {
	t.Helper()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	loops := make([]*trafficLoop, len(c.Hosts()))
	for i, h := range c.Hosts() {
		loops[i] = &trafficLoop{}
		wg.Add(1)
		go func(l *trafficLoop, url string) {
			defer wg.Done()
			// Bounded: 4000 requests (60s) per host at most.
			l.run(url, stop, 4000, 15*time.Millisecond)
		}(loops[i], fmt.Sprintf("http://%s:%d/", h.IP, port))
	}
	update()
	close(stop)
	wg.Wait()
	ok, failed := 0, 0
	var errs []string
	for _, l := range loops {
		ok += l.ok
		failed += l.failed
		errs = append(errs, l.errs...)
	}
	t.Logf("%s: ok=%d fail=%d", what, ok, failed)
	if failed > 0 {
		t.Errorf("%s: %d of %d requests failed, want none; first errors:\n%s", what, failed, ok+failed, strings.Join(errs, "\n"))
	}
	if ok < 100 {
		t.Errorf("%s: only %d requests succeeded: the client loop did not run through the update", what, ok)
	}
}

// waitUpdated waits until the service's update completed and every task
// that is not meant to run has stopped (its container is gone from the
// load balancers and the hosts).
func waitUpdated(t *testing.T, h *harness.Host, name string, n int, env string) {
	t.Helper()
	harness.Eventually(t, 120*time.Second, func() (bool, string) {
		s, err := inspectService(t, h, name)
		if err != nil {
			return false, err.Error()
		}
		cur, stopping := 0, 0
		for _, tk := range tasksOf(t, h, name) {
			if tk.DesiredState == api.TaskRunning && tk.State == api.TaskRunning && strings.Contains(strings.Join(tk.Spec.Env, " "), env) {
				cur++
			}
			if tk.DesiredState != api.TaskRunning && !api.TaskTerminal(tk.State) {
				stopping++
			}
		}
		return updateState(s) == api.UpdateCompleted && cur == n && stopping == 0,
			fmt.Sprintf("update %s, %d/%d tasks with %s running, %d stopping", updateState(s), cur, n, env, stopping)
	}, "%s updated to %s", name, env)
}

// TestUpdateDropsNoRequest is issue 15 item 3: a client looping over the
// published port of all three nodes (a new connection each request) sees
// no failed request through a start-first update, nor through a stop-first
// update of three replicas. Before the fix the old task got SIGTERM while
// some node's load balancer still sent to it, and a replacement took
// traffic before its health check passed. Both services have a health
// check: without one a replacement gets traffic as soon as its container
// starts (as in Swarm), and on a loaded machine httpd may not listen yet.
func TestUpdateDropsNoRequest(t *testing.T) {
	c, _ := svcCluster(t, 3)
	h1, h2 := c.Host(1), c.Host(2)
	h1.MustCLI(t, "service", "create", "--name", "sf", "--replicas", "3", "--publish", "18091:80",
		"--health-cmd", "wget -q -O /dev/null http://127.0.0.1/", "--health-interval", "500ms",
		"--update-order", "start-first", "--update-parallelism", "1", "--update-monitor", "2s",
		"bb:1", "sh", "-c", webCmd)
	h1.MustCLI(t, "service", "create", "--name", "so", "--replicas", "3", "--publish", "18092:80",
		"--health-cmd", "wget -q -O /dev/null http://127.0.0.1/", "--health-interval", "500ms",
		"--update-order", "stop-first", "--update-parallelism", "1", "--update-monitor", "2s",
		"bb:1", "sh", "-c", webCmd)
	waitSlots(t, h1, "sf", 3, "", 90*time.Second)
	waitSlots(t, h1, "so", 3, "", 90*time.Second)
	for _, port := range []int{18091, 18092} {
		harness.Eventually(t, 60*time.Second, func() (bool, string) {
			for _, h := range c.Hosts() {
				if _, err := get(fmt.Sprintf("http://%s:%d/", h.IP, port)); err != nil {
					return false, fmt.Sprintf("%s: %v", h.Name, err)
				}
			}
			return true, ""
		}, "port %d answers on every node", port)
	}

	throughUpdate(t, c, 18091, "start-first update", func() {
		h2.MustCLI(t, "service", "update", "-d", "--env-add", "V=2", "sf")
		waitUpdated(t, h1, "sf", 3, "V=2")
	})
	throughUpdate(t, c, 18092, "stop-first update of 3 replicas", func() {
		h2.MustCLI(t, "service", "update", "-d", "--env-add", "V=2", "so")
		waitUpdated(t, h1, "so", 3, "V=2")
	})
}

// TestUpdateMonitorZero: `--update-monitor 0` watches no task, as docker's
// does. The create returns once its tasks run, without the 5 s "verifying
// that tasks are stable"; an update whose tasks die 2 s after they start
// completes instead of pausing; and the monitor can be turned on again.
// `--restart-delay 0` and `--stop-grace-period 0` are kept too.
// Before the fix the 0 was taken for "unset" and stored as the default
// 5 s: every create and scale waited 5 s, and that update paused.
func TestUpdateMonitorZero(t *testing.T) {
	c, _ := svcCluster(t, 1)
	h := c.Host(1)
	_, stderr, err := h.CLI("service", "create", "--name", "m0", "--replicas", "2", "--update-monitor", "0",
		"bb:1", "httpd", "-f", "-p", "80")
	if err != nil {
		t.Fatalf("create: %v\n%s", err, stderr)
	}
	if strings.Contains(stderr, "verifying that tasks are stable") || !strings.Contains(stderr, "converged, 2/2 running") {
		t.Errorf("create with --update-monitor 0 printed:\n%s\nwant convergence without a stability wait", stderr)
	}
	s, err := inspectService(t, h, "m0")
	if err != nil {
		t.Fatal(err)
	}
	if s.Spec.UpdateConfig.MonitorPeriod() != 0 || s.Spec.RollbackConfig.Monitor != 5*time.Second {
		t.Errorf("stored update monitor %v, rollback monitor %v; want none and the default 5s",
			s.Spec.UpdateConfig.Monitor, s.Spec.RollbackConfig.Monitor)
	}
	if out := h.MustCLI(t, "service", "inspect", "--pretty", "m0"); !strings.Contains(out, "Monitoring Period: 0s") {
		t.Errorf("inspect --pretty:\n%s\nwant Monitoring Period: 0s", out)
	}

	ctx := harness.Context(t, 2*time.Minute)
	_, stderr, err = h.CLIContext(ctx, "service", "update", "--timeout", "90s", "--args", "sh -c 'sleep 2; exit 7'", "m0")
	if err != nil {
		t.Errorf("update with no monitor: %v\n%s", err, stderr)
	}
	if s, err = inspectService(t, h, "m0"); err != nil || updateState(s) != api.UpdateCompleted {
		t.Errorf("update status %s (%v), want %s: no task is watched", updateState(s), err, api.UpdateCompleted)
	}

	h.MustCLI(t, "service", "update", "-d", "--update-monitor", "3s", "m0")
	if s, err = inspectService(t, h, "m0"); err != nil || s.Spec.UpdateConfig.Monitor != 3*time.Second {
		t.Errorf("update monitor %v (%v) after --update-monitor 3s", s.Spec.UpdateConfig.Monitor, err)
	}

	// --restart-delay 0 and --stop-grace-period 0 are kept the same way
	// (the scheduler's side: restartpolicy's "no delay" case, the calm
	// planner's fence wait; the runtime kills at once on a negative
	// grace): they were stored as the defaults 5s and 10s.
	h.MustCLI(t, "service", "update", "-d", "--restart-delay", "0", "--stop-grace-period", "0", "m0")
	if s, err = inspectService(t, h, "m0"); err != nil || s.Spec.RestartPolicy.DelayPeriod() != 0 {
		t.Errorf("restart delay %v (%v) after --restart-delay 0", s.Spec.RestartPolicy.Delay, err)
	}
	if s.Spec.StopGracePeriod != api.ExplicitZero {
		t.Errorf("stop grace %v after --stop-grace-period 0", s.Spec.StopGracePeriod)
	}

	// And a stop with no grace kills: a command that exits 0 on SIGTERM
	// ends with SIGKILL's 137 when scaled away (it used to get the
	// default 10s, took the SIGTERM and exited 0).
	h.MustCLI(t, "service", "create", "--name", "g0", "--stop-grace-period", "0",
		"bb:1", "sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done")
	h.MustCLI(t, "service", "scale", "-d", "g0=0")
	harness.Eventually(t, time.Minute, func() (bool, string) {
		tasks := tasksOf(t, h, "g0")
		for _, tk := range tasks {
			if !api.TaskTerminal(tk.State) {
				return false, fmt.Sprintf("task %s is %s", tk.Name, tk.State)
			}
		}
		return len(tasks) > 0, fmt.Sprintf("%d tasks", len(tasks))
	}, "g0 scaled to 0")
	if tasks := tasksOf(t, h, "g0"); len(tasks) != 1 || tasks[0].ExitCode != 137 {
		t.Errorf("tasks of g0 after the stop with --stop-grace-period 0: %+v; want one, killed (137)", tasks)
	}
	if out := h.MustCLI(t, "service", "inspect", "--pretty", "m0"); !regexp.MustCompile(`RestartPolicy:\n(\s+\S.*\n)*?\s+Delay:\s+0s\n`).MatchString(out) {
		t.Errorf("inspect --pretty:\n%s\nwant the restart policy's Delay: 0s", out)
	}
}
