package test

// Calm: a short network blip restarts nothing, at-most-once services never
// run a slot twice, and a node that joins gets its share of the tasks.

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

// calmCluster forms n nodes with the busybox image imported on host 1.
func calmCluster(t *testing.T, n int) *harness.Cluster {
	t.Helper()
	c := harness.New(t, n)
	c.Form(t)
	c.Host(1).MustCLI(t, "image", "import", busyboxTar(t), "bb:1")
	return c
}

// activeOn returns the IDs of svc's tasks meant to run and running on the
// node named node, sorted.
func activeOn(tasks []api.Task, node string) []string {
	var ids []string
	for _, tk := range tasks {
		if tk.Node == node && tk.DesiredState == api.TaskRunning && tk.State == api.TaskRunning {
			ids = append(ids, tk.ID)
		}
	}
	sort.Strings(ids)
	return ids
}

// serviceRunning is `service ls`'s running column for svc.
func serviceRunning(h *harness.Host, svc string) (int, error) {
	var svcs []api.Service
	if err := h.JSON(&svcs, "service", "ls"); err != nil {
		return 0, err
	}
	for _, s := range svcs {
		if s.Name == svc {
			return s.Running, nil
		}
	}
	return 0, fmt.Errorf("service %s not listed", svc)
}

// watchRunningFloor polls svc's running count through h every 100 ms
// until the returned stop is called; stop returns the number of polls and
// the lowest count seen (from, when no poll saw less). A rebalancing move
// is start-first: the count must never drop below the replicas.
func watchRunningFloor(ctx context.Context, h *harness.Host, svc string, from int) (stop func() (polls, lowest int)) {
	ctx, cancel := context.WithCancel(ctx)
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	polls, lowest := 0, from
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			if n, err := serviceRunning(h, svc); err == nil {
				mu.Lock()
				polls++
				lowest = min(lowest, n)
				mu.Unlock()
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return func() (int, int) {
		cancel()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return polls, lowest
	}
}

// victimOf picks a host that is not the leader and runs tasks of svc.
func victimOf(t *testing.T, c *harness.Cluster, leader *harness.Host, svc string) *harness.Host {
	t.Helper()
	tasks := tasksOf(t, leader, svc)
	for _, h := range c.Hosts() {
		if h != leader && len(activeOn(tasks, hostname(h))) > 0 {
			return h
		}
	}
	t.Fatalf("no host but the leader runs %s", svc)
	return nil
}

// cutUntilDown cuts victim's link, waits until the leader has marked it
// down (so the orchestrator has acted on it), keeps it cut for hold more,
// and restores it.
func cutUntilDown(t *testing.T, leader, victim *harness.Host, hold time.Duration) {
	t.Helper()
	id := victim.NodeID(t)
	if err := victim.CutLink(); err != nil {
		t.Fatal(err)
	}
	restored := false
	defer func() {
		if !restored {
			_ = victim.RestoreLink()
		}
	}()
	harness.Eventually(t, time.Minute, nodeStatusSeen(id, api.NodeDown, leader), "victim marked down")
	// Keep the link down a little longer, as a blip of a few seconds would:
	// this is the fault's duration, not a wait for a condition.
	time.Sleep(hold)
	if err := victim.RestoreLink(); err != nil {
		t.Fatal(err)
	}
	restored = true
}

// A 3s-ish link cut on a node running 2 of 6 replicas: replacements run
// elsewhere while it is away; when it returns its original tasks are still
// the ones running there and the replacements are gone.
func TestCalmBlipKeepsOriginals(t *testing.T) {
	c := calmCluster(t, 3)
	leader := c.Leader(t, time.Minute)
	leader.MustCLI(t, "service", "create", "--name", "blip", "--replicas", "6", "bb:1", "sleep", "100000")
	waitSlots(t, leader, "blip", 6, "", 2*time.Minute)
	victim := victimOf(t, c, leader, "blip")
	all := tasksOf(t, leader, "blip")
	before := activeOn(all, hostname(victim))
	t.Logf("victim %s runs %v", victim.Name, before)
	known := map[string]bool{}
	for _, tk := range all {
		known[tk.ID] = true
	}

	cutUntilDown(t, leader, victim, 2*time.Second)
	// While it was away, its slots were served elsewhere.
	afterCut := tasksOf(t, leader, "blip")
	replacements := 0
	for _, tk := range afterCut {
		if !known[tk.ID] {
			replacements++
		}
	}
	t.Logf("%d tasks created elsewhere while the victim was down", replacements)

	harness.Eventually(t, 2*time.Minute, func() (bool, string) {
		var tasks []api.Task
		if err := leader.JSON(&tasks, "service", "ps", "blip"); err != nil {
			return false, err.Error()
		}
		on := activeOn(tasks, hostname(victim))
		if !slices.Equal(on, before) {
			return false, fmt.Sprintf("victim runs %v, want its originals %v", on, before)
		}
		desired := 0
		for _, tk := range tasks {
			if tk.DesiredState == api.TaskRunning {
				desired++
			}
		}
		if desired != 6 {
			return false, fmt.Sprintf("%d tasks meant to run, want 6 (replacements not stopped)", desired)
		}
		n, err := serviceRunning(leader, "blip")
		if err != nil || n != 6 {
			return false, fmt.Sprintf("service ls running %d (%v), want 6", n, err)
		}
		return true, ""
	}, "originals kept, replacements gone")
	// The originals were never told to stop.
	for _, tk := range tasksOf(t, leader, "blip") {
		if slices.Contains(before, tk.ID) && (tk.DesiredState != api.TaskRunning || tk.State != api.TaskRunning) {
			t.Fatalf("original %s is %s/%s", tk.ID, tk.State, tk.DesiredState)
		}
	}
}

// runningPerSlot sums, over every host's `shoal ps`, the running containers
// of svc's tasks by slot (container names are NAME.SLOT.TASKID).
func runningPerSlot(hosts []*harness.Host, svc string) (map[string]int, error) {
	per := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make([]error, len(hosts))
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var cs []api.Container
			if err := h.JSON(&cs, "ps"); err != nil {
				errs[i] = err
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, ct := range cs {
				if ct.State != api.ContainerRunning || ct.TaskID == "" || !strings.HasPrefix(ct.Name, svc+".") {
					continue
				}
				parts := strings.Split(ct.Name, ".")
				if len(parts) >= 2 {
					per[parts[1]]++
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return per, err
		}
	}
	return per, nil
}

// An at-most-once service never has two running containers for one slot,
// polled every 100 ms on every node through a blip; its tasks stay where
// they were.
func TestCalmAtMostOnceNeverTwice(t *testing.T) {
	c := calmCluster(t, 3)
	leader := c.Leader(t, time.Minute)
	leader.MustCLI(t, "service", "create", "--name", "amo", "--replicas", "3", "--at-most-once",
		"--disconnect-grace", "60s", "bb:1", "sleep", "100000")
	waitSlots(t, leader, "amo", 3, "", 2*time.Minute)
	victim := victimOf(t, c, leader, "amo")
	before := activeOn(tasksOf(t, leader, "amo"), hostname(victim))

	stop := watchAtMostOnce(t, c.Hosts(), "amo")

	// Long enough after the down mark that a replacement would have
	// started and run (it takes well under a second here).
	cutUntilDown(t, leader, victim, 4*time.Second)
	harness.Eventually(t, 2*time.Minute, func() (bool, string) {
		n, err := serviceRunning(leader, "amo")
		if err != nil || n != 3 {
			return false, fmt.Sprintf("running %d (%v)", n, err)
		}
		on := activeOn(tasksOf(t, leader, "amo"), hostname(victim))
		return slices.Equal(on, before), fmt.Sprintf("victim runs %v, want %v", on, before)
	}, "at-most-once service back to 3 with the victim's tasks")
	stop()
}

// watchAtMostOnce polls every 100 ms, on every one of hosts, which slots
// of svc have a running container, until the returned stop is called; stop
// fails t if a slot ever had two, or if fewer than 5 polls succeeded.
func watchAtMostOnce(t *testing.T, hosts []*harness.Host, svc string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(harness.Context(t, 5*time.Minute))
	var (
		mu    sync.Mutex
		worst string
		polls int
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			per, err := runningPerSlot(hosts, svc)
			mu.Lock()
			if err == nil {
				polls++
			}
			for slot, n := range per {
				if n > 1 && worst == "" {
					worst = fmt.Sprintf("slot %s had %d running containers (%v)", slot, n, per)
				}
			}
			mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return func() {
		t.Helper()
		cancel()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		t.Logf("%d polls", polls)
		if worst != "" {
			t.Fatalf("at-most-once violated: %s", worst)
		}
		if polls < 5 {
			t.Fatalf("only %d polls succeeded", polls)
		}
	}
}

// An at-most-once task's container outlives its agent. Killed (SIGKILL, its
// link up), the node is marked down and the leader replaces the task once
// the grace and the stop grace have passed; the original must be stopped by
// then although no agent runs on its node to fence it: the node's
// supervisor does, when the lease the agent renewed runs out. Polled every
// 100 ms: the original's process and the slot's containers on the other
// nodes are never both running.
func TestCalmAtMostOnceAgentKilled(t *testing.T) {
	c := calmCluster(t, 3)
	leader := c.Leader(t, time.Minute)
	leader.MustCLI(t, "service", "create", "--name", "amo", "--replicas", "2", "--at-most-once",
		"--disconnect-grace", "6s", "--stop-grace-period", "2s", "bb:1", "sleep", "100000")
	waitSlots(t, leader, "amo", 2, "", 2*time.Minute)
	victim := victimOf(t, c, leader, "amo")
	var cs []api.Container
	if err := victim.JSON(&cs, "ps"); err != nil {
		t.Fatal(err)
	}
	pid, slot := 0, ""
	for _, ct := range cs {
		if parts := strings.Split(ct.Name, "."); ct.State == api.ContainerRunning && parts[0] == "amo" && len(parts) >= 2 {
			pid, slot = ct.Pid, parts[1]
		}
	}
	if pid <= 0 {
		t.Fatalf("no running amo container on %s: %+v", victim.Name, cs)
	}
	var others []*harness.Host
	for _, h := range c.Hosts() {
		if h != victim {
			others = append(others, h)
		}
	}
	if err := victim.KillProcess(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = victim.Start() })

	ctx := harness.Context(t, 2*time.Minute)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	polls := 0
	for {
		alive := processAlive(pid)
		per, err := runningPerSlot(others, "amo")
		if err == nil {
			polls++
			if per[slot] > 0 {
				if alive {
					t.Fatalf("at-most-once violated: slot %s runs on another node (%v) while the killed agent's container (pid %d) still runs", slot, per, pid)
				}
				break
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("slot %s was not replaced after its agent was killed (original alive: %v, %d polls)", slot, processAlive(pid), polls)
		case <-tick.C:
		}
	}
	t.Logf("%d polls; slot %s replaced after the original stopped", polls, slot)
}

// processAlive reports whether pid is a live process (not a zombie).
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) STATE ...: comm may hold spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z'
}

// 6 replicas on 2 nodes; a 3rd joins: the spread becomes 2/2/2 and the
// running count never drops below 6 on the way.
func TestCalmRebalanceOnJoin(t *testing.T) {
	c := calmCluster(t, 2)
	h1 := c.Host(1)
	token := h1.Token(t)
	h1.MustCLI(t, "service", "create", "--name", "spread", "--replicas", "6", "bb:1", "sleep", "100000")
	per := waitSlots(t, h1, "spread", 6, "", 2*time.Minute)
	t.Logf("before the join: %v", per)

	stop := watchRunningFloor(harness.Context(t, 5*time.Minute), h1, "spread", 6)
	defer stop()

	h3 := c.AddHost()
	h3.MustStart(t)
	if err := h3.Join(token, h1); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 3*time.Minute, func() (bool, string) {
		per, msg := runningBySlot(tasksOf(t, h1, "spread"), 6, "")
		if per == nil {
			return false, msg
		}
		for _, h := range c.Hosts() {
			if per[hostname(h)] != 2 {
				return false, fmt.Sprintf("spread %v", per)
			}
		}
		return len(per) == 3, fmt.Sprintf("spread %v", per)
	}, "2/2/2 after the join")
	polls, lowest := stop()
	t.Logf("%d polls, lowest running count %d", polls, lowest)
	if lowest < 6 {
		t.Fatalf("running count dropped to %d during rebalancing", lowest)
	}
}

// TestCalmOrphanedAge: while its node is down, a task kept for the
// disconnect grace shows as orphaned in `service ps`, aged from the node's
// loss; it showed the time of its last report ("orphaned 9 minutes ago"
// for a node lost a second ago).
func TestCalmOrphanedAge(t *testing.T) {
	c := calmCluster(t, 3)
	leader := c.Leader(t, time.Minute)
	leader.MustCLI(t, "service", "create", "--name", "age", "--replicas", "6", "bb:1", "sleep", "100000")
	waitSlots(t, leader, "age", 6, "", 2*time.Minute)
	victim := victimOf(t, c, leader, "age")
	on := activeOn(tasksOf(t, leader, "age"), hostname(victim))
	if len(on) == 0 {
		t.Fatalf("victim %s runs no task", victim.Name)
	}
	cutAt := time.Now()
	if err := victim.CutLink(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = victim.RestoreLink() }()
	harness.Eventually(t, time.Minute, func() (bool, string) {
		var desc []string
		for _, tk := range tasksOf(t, leader, "age") {
			if !slices.Contains(on, tk.ID) {
				continue
			}
			if tk.State != api.TaskOrphaned {
				return false, fmt.Sprintf("task %s is %s", tk.ID, tk.State)
			}
			desc = append(desc, fmt.Sprintf("%s since %s", tk.ID, tk.UpdatedAt.Format(time.RFC3339Nano)))
			if tk.UpdatedAt.Before(cutAt.Add(-time.Second)) {
				t.Fatalf("task %s shows orphaned since %v, before the cut at %v", tk.ID, tk.UpdatedAt, cutAt)
			}
		}
		return true, strings.Join(desc, ", ")
	}, "the victim's tasks shown orphaned")
	out := leader.MustCLI(t, "service", "ps", "age")
	if strings.Contains(out, "orphaned") && strings.Contains(out, "minutes ago") {
		t.Fatalf("service ps ages an orphaned task in minutes:\n%s", out)
	}
}

// TestCalmAtMostOnceForceRemovedNode: `node rm --force` of a live node
// running an at-most-once task. The removed node stops the task when it
// hears of its removal, but the leader cannot know when that is (or
// whether it hears at all), so the slot gets no new task before the
// disconnect grace plus the stop grace have passed since the removal, and
// then it does. Before, the replacement was planned in the removal's own
// pass. No slot ever has two running containers meanwhile (polled every
// 100 ms on every node, the removed one included).
func TestCalmAtMostOnceForceRemovedNode(t *testing.T) {
	c := calmCluster(t, 3)
	leader := c.Leader(t, time.Minute)
	leader.MustCLI(t, "service", "create", "--name", "amo", "--replicas", "3", "--at-most-once",
		"--disconnect-grace", "8s", "--stop-grace-period", "2s", "bb:1", "sleep", "100000")
	waitSlots(t, leader, "amo", 3, "", 2*time.Minute)
	victim := victimOf(t, c, leader, "amo")
	victimID := victim.NodeID(t)
	slots := map[int]bool{}
	for _, tk := range tasksOf(t, leader, "amo") {
		if tk.Node == hostname(victim) && tk.DesiredState == api.TaskRunning {
			slots[tk.Slot] = true
		}
	}

	stop := watchAtMostOnce(t, c.Hosts(), "amo")

	removed := time.Now()
	leader.MustCLI(t, "node", "rm", "--force", victimID)
	// Well inside the 10 s: no task of the victim's slots is meant to run
	// anywhere yet.
	for time.Since(removed) < 4*time.Second {
		for _, tk := range tasksOf(t, leader, "amo") {
			if slots[tk.Slot] && tk.Node != hostname(victim) && tk.DesiredState == api.TaskRunning {
				t.Fatalf("slot %d got task %s on %s %v after the removal, before the removed node's fence", tk.Slot, tk.ID, tk.Node, time.Since(removed).Round(time.Millisecond))
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	harness.Eventually(t, 2*time.Minute, func() (bool, string) {
		n, err := serviceRunning(leader, "amo")
		return err == nil && n == 3, fmt.Sprintf("running %d (%v)", n, err)
	}, "the removed node's slots filled once its fence has surely stopped them")
	t.Logf("3 running again %v after the removal", time.Since(removed).Round(time.Millisecond))
	stop()
}

// TestCalmAtMostOnceLeave: `shoal leave` on a node running an at-most-once
// task drains the node first, so its slot moves as soon as the task has
// stopped there, where a bare removal leaves it empty for the disconnect
// grace plus the stop grace (5 m + 2 s here, beyond this test's wait). No
// slot ever has two running containers.
func TestCalmAtMostOnceLeave(t *testing.T) {
	c := calmCluster(t, 3)
	leader := c.Leader(t, time.Minute)
	leader.MustCLI(t, "service", "create", "--name", "amo", "--replicas", "3", "--at-most-once",
		"--disconnect-grace", "5m", "--stop-grace-period", "2s", "bb:1", "sleep", "100000")
	waitSlots(t, leader, "amo", 3, "", 2*time.Minute)
	victim := victimOf(t, c, leader, "amo")
	stop := watchAtMostOnce(t, c.Hosts(), "amo")
	start := time.Now()
	victim.MustCLI(t, "leave")
	left := time.Since(start)
	harness.Eventually(t, time.Minute, func() (bool, string) {
		var on []string
		for _, tk := range tasksOf(t, leader, "amo") {
			if tk.DesiredState == api.TaskRunning && tk.State == api.TaskRunning {
				on = append(on, tk.Node)
			}
		}
		for _, n := range on {
			if n == hostname(victim) {
				return false, fmt.Sprintf("still running on the node that left: %v", on)
			}
		}
		return len(on) == 3, fmt.Sprintf("running on %v", on)
	}, "the leaving node's slot running elsewhere well before its grace")
	t.Logf("leave took %v; 3 running on the others %v after it began", left.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	stop()
}
