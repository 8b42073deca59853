package test

// The chaos soak (`make soak`, not part of `make test`): 5 nodes, several
// services that writers scale, roll to another image, remove and create
// again, while the nemesis kills hosts, partitions, blips links, restarts
// and pauses agents. It lasts SHOAL_SOAK (a Go duration; the test is
// skipped when it is unset) and checks, continuously and at the end:
//
//   - no acknowledged write lost: each service ends in a state its writer's
//     history explains (lin.Step over the writes, unknown outcomes either
//     way);
//   - an at-most-once service (writer 0's) never has two tasks of one slot
//     desired running nor two running containers for it, not even during a
//     fault; another service may while a node is away (its replacement runs
//     beside the away original until the node returns or is written off:
//     node/scheduler calm.go), which is counted, and is a violation only
//     once the cluster is whole and settled;
//   - never two running containers for one slot, summing `shoal ps` over
//     the nodes, while the cluster is whole (a node cut off keeps running
//     its tasks while the majority replaces them, as in Swarm: doubles seen
//     during a fault are counted as a figure, not as violations);
//   - every service converges to its spec within soakConverge after the
//     last fault;
//   - no orphan after `service rm` and at the end: no container of a removed
//     service, and no runc state, netns, cgroup, veth or mount of a container
//     its agent does not know, and no VIP of a removed service in nftables;
//   - agent RSS stays under soakMaxRSS.
//
// It prints figures: faults injected, invariant violations, longest
// convergence time, peak RSS.

import (
	"bufio"
	"context"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/api/client"
	"github.com/shoal-org/shoal/overlay"
	"github.com/shoal-org/shoal/test/harness"
	"github.com/shoal-org/shoal/test/lin"
)

const (
	soakNodes     = 5
	soakServices  = 4
	soakConverge  = 3 * time.Minute  // after the last fault
	soakSettle    = 20 * time.Second // after a heal, before doubles count
	soakMaxRSS    = 400 << 20        // bytes, per agent
	soakCleanWait = 2 * time.Minute  // after the last rm, for containers to go
)

// soakState is what the monitor and the writers share.
type soakState struct {
	mu             sync.Mutex
	violations     []string
	doubledInFault int
	// desiredDoubleInFault counts samples of a slot of a service that is
	// not at-most-once desired twice (an away task and its replacement).
	desiredDoubleInFault int
	samples              int
	peakRSS              int64
	removedVIP           map[string]string // VIP → service name, of removed services
	removedSvc           map[string]bool   // service IDs removed
}

func (s *soakState) violate(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.violations) < 200 {
		s.violations = append(s.violations, time.Now().Format("15:04:05.000")+" "+msg)
	}
}

func TestSoak(t *testing.T) {
	v := os.Getenv("SHOAL_SOAK")
	if v == "" {
		t.Skip("the chaos soak runs under `make soak` (set SHOAL_SOAK to a duration)")
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("SHOAL_SOAK=%q: %v", v, err)
	}
	seed := int64(envInt(t, "SHOAL_LIN_SEED", int(time.Now().UnixNano()%1_000_000)))
	t.Logf("seed %d, %s of chaos on %d nodes, %d services", seed, d, soakNodes, soakServices)
	harness.Context(t, d+20*time.Minute)

	c := harness.New(t, soakNodes)
	c.Form(t)
	tar := busyboxTar(t)
	c.Host(1).MustCLI(t, "image", "import", tar, "bb:1")
	svcImportV2(t, c.Host(1), tar)
	hosts := c.Hosts()

	st := &soakState{removedVIP: map[string]string{}, removedSvc: map[string]bool{}}
	nem := newNemesis(c, seed, t.Logf)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()

	writers := make([]*soakWriter, soakServices)
	for i := range writers {
		writers[i] = &soakWriter{i: i, c: c, st: st, rng: rand.New(rand.NewSource(seed + int64(i))), logf: t.Logf,
			accept: map[string][]lin.State{}}
	}
	var wg sync.WaitGroup
	for _, w := range writers {
		wg.Add(1)
		go func() { defer wg.Done(); w.run(ctx) }()
	}
	nemDone := make(chan struct{})
	go func() { defer close(nemDone); nem.run(ctx, 3*time.Second, 12*time.Second, 6*time.Second) }()
	monDone := make(chan struct{})
	monCtx, monCancel := context.WithCancel(context.Background())
	go func() { defer close(monDone); soakMonitor(monCtx, c, nem, st) }()

	wg.Wait()
	<-nemDone
	lastFault := nem.healedAt()
	t.Logf("chaos over: %d faults (%s); waiting for convergence", nem.total(), nem.summary())

	// Convergence after the last fault, then the writers' histories.
	c.WaitReady(t, 3*time.Minute, len(hosts))
	var converged time.Duration
	ctxC, cancelC := context.WithTimeout(context.Background(), soakConverge)
	_, err = harness.Poll(ctxC, func() (bool, string) { return soakConverged(c, writers) })
	cancelC()
	converged = time.Since(lastFault)
	if err != nil {
		st.violate("services did not converge within %s of the last fault: %v", soakConverge, err)
	}
	for _, w := range writers {
		w.checkFinal(st)
	}
	// The audit must see the artifacts of running containers, or it
	// would pass for looking in the wrong place.
	orphans, seen := soakOrphans(t, c, st)
	t.Logf("audit with services running: %v, %d orphans", seen, len(orphans))
	for _, k := range []string{"runc", "netns", "rundir", "cgroup", "veth", "mount"} {
		if seen[k] == 0 {
			st.violate("the orphan audit sees no %s while containers run", k)
		}
	}

	// Remove everything; nothing may be left behind.
	for _, w := range writers {
		w.removeAll(st)
	}
	ctxR, cancelR := context.WithTimeout(context.Background(), soakCleanWait)
	if _, err := harness.Poll(ctxR, func() (bool, string) { return noTaskContainers(c) }); err != nil {
		st.violate("containers left after every service was removed: %v", err)
	}
	cancelR()
	monCancel()
	<-monDone
	orphans, seen = soakOrphans(t, c, st)
	t.Logf("audit after removing every service: %v", seen)
	for _, o := range orphans {
		st.violate("orphan: %s", o)
	}

	st.mu.Lock()
	defer st.mu.Unlock()
	t.Logf("figures: faults injected %d (%s); invariant violations %d; convergence after the last fault %s; "+
		"doubled slots seen during faults (not violations; at-most-once excluded) %d containers and %d desired in %d samples; peak agent RSS %.1f MiB; nemesis errors %d",
		nem.total(), nem.summary(), len(st.violations), converged.Round(time.Second),
		st.doubledInFault, st.desiredDoubleInFault, st.samples, float64(st.peakRSS)/(1<<20), len(nem.errs))
	for _, e := range nem.errs {
		t.Logf("nemesis error: %s", e)
	}
	if len(st.violations) > 0 {
		t.Errorf("%d invariant violations:\n%s", len(st.violations), strings.Join(st.violations, "\n"))
	}
}

// soakWriter owns one service slot: it scales, rolls and occasionally
// removes its service and creates it again under a new name. It keeps, per
// name, the states its history can explain (accept).
type soakWriter struct {
	i    int
	c    *harness.Cluster
	st   *soakState
	rng  *rand.Rand
	logf func(string, ...any)

	gen    int
	name   string                 // current name
	accept map[string][]lin.State // name → explainable states
	order  []string               // names in creation order
}

func (w *soakWriter) client() (*harness.Host, *client.Client) {
	running := w.c.Running()
	if len(running) == 0 {
		return nil, nil
	}
	h := running[w.rng.Intn(len(running))]
	cl, err := client.New("unix://" + h.Socket)
	if err != nil {
		return nil, nil
	}
	return h, cl
}

// record folds a write's outcome into the explainable states of its name.
func (w *soakWriter) record(name string, in lin.Input, out lin.Output) {
	var next []lin.State
	add := func(s lin.State) {
		for _, x := range next {
			if x == s {
				return
			}
		}
		next = append(next, s)
	}
	for _, s := range w.accept[name] {
		switch out.Result {
		case lin.OK:
			if ok, n := lin.Step(s, in, lin.Output{Result: lin.OK}); ok {
				add(n)
			}
		case lin.Unknown:
			add(s)
			if ok, n := lin.Step(s, in, lin.Output{Result: lin.OK}); ok {
				add(n)
			}
		default:
			if ok, n := lin.Step(s, in, out); ok {
				add(n)
			}
		}
	}
	if len(next) == 0 {
		w.st.violate("%s: %s (%s) is explained by no state in %v", name, lin.Describe(in, out), out.Err, w.accept[name])
		next = w.accept[name]
	}
	w.accept[name] = next
}

func (w *soakWriter) spec(name string, replicas uint64, image string) api.ServiceSpec {
	return api.ServiceSpec{Name: name, Replicas: replicas, Image: image, Command: []string{"sleep", "100000"},
		StopGracePeriod: 2 * time.Second,
		UpdateConfig:    api.UpdateConfig{Parallelism: 1, Order: "stop-first", Monitor: time.Second},
		// Writer 0's services are at-most-once (default disconnect grace).
		AtMostOnce: w.i == 0}
}

func (w *soakWriter) run(ctx context.Context) {
	for ctx.Err() == nil {
		if w.name == "" {
			w.create(ctx)
		} else {
			switch p := w.rng.Intn(100); {
			case p < 55:
				w.scale()
			case p < 85:
				w.roll()
			default:
				w.remove(w.name)
				w.name = ""
			}
		}
		wait(ctx, time.Duration(2000+w.rng.Intn(4000))*time.Millisecond)
	}
}

func (w *soakWriter) create(ctx context.Context) {
	w.gen++
	name := fmt.Sprintf("soak%d-g%d", w.i, w.gen)
	w.accept[name] = []lin.State{{}}
	w.order = append(w.order, name)
	in := lin.Input{Kind: lin.Create, Key: "svc/" + name, Replicas: uint64(1 + w.rng.Intn(3)), Image: "bb:1"}
	_, cl := w.client()
	if cl == nil {
		return
	}
	opCtx, cancel := context.WithTimeout(context.Background(), linOpTimeout)
	defer cancel()
	_, err := cl.CreateService(opCtx, w.spec(name, in.Replicas, in.Image))
	out := writeOutput(err)
	w.record(name, in, out)
	if out.Result == lin.OK || out.Result == lin.Unknown {
		w.name = name // an unknown create may exist: keep writing to it
	}
}

func (w *soakWriter) scale() {
	in := lin.Input{Kind: lin.Scale, Key: "svc/" + w.name, Replicas: uint64(1 + w.rng.Intn(3))}
	_, cl := w.client()
	if cl == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), linOpTimeout)
	defer cancel()
	_, err := cl.ScaleService(ctx, w.name, in.Replicas)
	w.record(w.name, in, writeOutput(err))
}

// roll is a rolling update to the other image.
func (w *soakWriter) roll() {
	_, cl := w.client()
	if cl == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), linOpTimeout)
	defer cancel()
	cur, err := cl.ServiceConsistent(ctx, w.name)
	if err != nil {
		return // nothing written
	}
	img := "bb:2"
	if cur.Spec.Image == "bb:2" {
		img = "bb:1"
	}
	in := lin.Input{Kind: lin.Update, Key: "svc/" + w.name, Image: img}
	spec := cur.Spec
	spec.Image = img
	_, err = cl.UpdateService(ctx, cur.ID, cur.Version, spec)
	w.record(w.name, in, writeOutput(err))
}

// remove removes name and remembers its VIP and ID for the orphan audit.
func (w *soakWriter) remove(name string) {
	_, cl := w.client()
	if cl == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), linOpTimeout)
	defer cancel()
	cur, err := cl.ServiceConsistent(ctx, name)
	if err == nil {
		w.st.mu.Lock()
		if cur.VIP != "" {
			w.st.removedVIP[cur.VIP] = name
		}
		w.st.removedSvc[cur.ID] = true
		w.st.mu.Unlock()
	}
	in := lin.Input{Kind: lin.Remove, Key: "svc/" + name}
	w.record(name, in, writeOutput(cl.RemoveService(ctx, name)))
}

// checkFinal compares every name's state, read consistently, with what the
// writer's history explains: an acknowledged write that was lost shows here.
func (w *soakWriter) checkFinal(st *soakState) {
	for _, name := range w.order {
		_, cl := w.client()
		if cl == nil {
			st.violate("%s: no running host to read from", name)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), linOpTimeout)
		s, err := cl.ServiceConsistent(ctx, name)
		cancel()
		out := serviceOutput(s, err)
		if out.Result != lin.OK {
			st.violate("%s: final read failed: %v", name, err)
			continue
		}
		got := lin.State{Exists: out.Exists, Replicas: out.Replicas, Image: out.Image}
		found := false
		for _, s := range w.accept[name] {
			found = found || s == got
		}
		if !found {
			st.violate("%s: final state %s, but the acknowledged writes explain only %v", name, got, w.accept[name])
		}
	}
}

// removeAll removes every name of this writer that may exist.
func (w *soakWriter) removeAll(st *soakState) {
	for _, name := range w.order {
		for attempt := 0; attempt < 5; attempt++ {
			_, cl := w.client()
			if cl == nil {
				break
			}
			ctx, cancel := context.WithTimeout(context.Background(), linOpTimeout)
			_, err := cl.ServiceConsistent(ctx, name)
			cancel()
			if client.IsNotFound(err) {
				break
			}
			w.remove(name)
		}
	}
}

// soakConverged holds when every current service runs its spec: per slot
// exactly one task desired and observed running with the spec's image, and
// `shoal ps` over all nodes shows exactly that many running containers.
func soakConverged(c *harness.Cluster, writers []*soakWriter) (bool, string) {
	h := c.Running()[0]
	cl := mustClientNoT(h)
	ctx, cancel := context.WithTimeout(context.Background(), linOpTimeout)
	defer cancel()
	svcs, err := cl.ServicesConsistent(ctx)
	if err != nil {
		return false, err.Error()
	}
	tasks, err := cl.Tasks(ctx, client.TaskFilter{})
	if err != nil {
		return false, err.Error()
	}
	running := runningContainers(c)
	for _, s := range svcs {
		per := map[int]int{}
		for _, tk := range tasks {
			if tk.ServiceID == s.ID && tk.DesiredState == api.TaskRunning && tk.State == api.TaskRunning && tk.Image == s.Spec.Image {
				per[tk.Slot]++
			}
		}
		for slot := 1; slot <= int(s.Spec.Replicas); slot++ {
			if per[slot] != 1 {
				return false, fmt.Sprintf("%s slot %d: %d running tasks of %s", s.Name, slot, per[slot], s.Spec.Image)
			}
		}
		if len(per) != int(s.Spec.Replicas) {
			return false, fmt.Sprintf("%s: %d slots running, spec %d", s.Name, len(per), s.Spec.Replicas)
		}
		n := 0
		byID := map[string]api.Task{}
		for _, tk := range tasks {
			byID[tk.ID] = tk
		}
		for _, ct := range running {
			if byID[ct.TaskID].ServiceID == s.ID {
				n++
			}
		}
		if n != int(s.Spec.Replicas) {
			return false, fmt.Sprintf("%s: %d running containers over the nodes, spec %d", s.Name, n, s.Spec.Replicas)
		}
	}
	return true, ""
}

func mustClientNoT(h *harness.Host) *client.Client {
	cl, err := client.New("unix://" + h.Socket)
	if err != nil {
		panic(err) // a harness socket path is always a valid host
	}
	return cl
}

// runningContainers is `shoal ps --format json` of every running host,
// running task containers only.
func runningContainers(c *harness.Cluster) []api.Container {
	var out []api.Container
	for _, h := range c.Running() {
		var cs []api.Container
		if err := h.JSON(&cs, "ps"); err != nil {
			continue
		}
		for _, ct := range cs {
			if ct.State == "running" && ct.TaskID != "" {
				out = append(out, ct)
			}
		}
	}
	return out
}

// noTaskContainers holds when no host lists a task container (`ps -a`).
func noTaskContainers(c *harness.Cluster) (bool, string) {
	for _, h := range c.Hosts() {
		var cs []api.Container
		if err := h.JSON(&cs, "ps", "-a"); err != nil {
			return false, err.Error()
		}
		for _, ct := range cs {
			if ct.TaskID != "" {
				return false, fmt.Sprintf("%s still has %s (%s, %s)", h.Name, ct.Name, ct.ID, ct.State)
			}
		}
	}
	return true, ""
}

// soakAtMostOnce tells writer 0's services (soak0-gN), which are
// at-most-once, from the others.
func soakAtMostOnce(service string) bool { return strings.HasPrefix(service, "soak0-") }

// soakMonitor samples the invariants every few seconds until ctx ends.
func soakMonitor(ctx context.Context, c *harness.Cluster, nem *nemesis, st *soakState) {
	for wait(ctx, 3*time.Second) {
		hosts := c.Running()
		if len(hosts) == 0 {
			continue
		}
		for _, h := range hosts {
			if pid := h.PID(); pid != 0 {
				if rss := rssOf(pid); rss > 0 {
					st.mu.Lock()
					st.peakRSS = max(st.peakRSS, rss)
					st.mu.Unlock()
					if rss > soakMaxRSS {
						st.violate("%s: agent RSS %.1f MiB above %d MiB", h.Name, float64(rss)/(1<<20), soakMaxRSS>>20)
					}
				}
			}
		}
		// The state never desires two running tasks for one slot.
		cl := mustClientNoT(hosts[rand.Intn(len(hosts))])
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		tasks, err := cl.Tasks(qctx, client.TaskFilter{})
		cancel()
		if err != nil {
			continue
		}
		whole := !nem.active.Load() && len(hosts) == len(c.Hosts()) && time.Since(nem.healedAt()) > soakSettle
		byID := map[string]api.Task{}
		desired := map[string]int{}
		for _, tk := range tasks {
			byID[tk.ID] = tk
			if tk.DesiredState == api.TaskRunning && tk.Slot > 0 {
				key := fmt.Sprintf("%s.%d", tk.Service, tk.Slot)
				desired[key]++
				if desired[key] != 2 {
					continue
				}
				switch {
				case soakAtMostOnce(tk.Service):
					st.violate("state desires two running tasks for slot %s of an at-most-once service", key)
				case whole:
					st.violate("state desires two running tasks for slot %s with every node back and settled", key)
				default:
					st.mu.Lock()
					st.desiredDoubleInFault++
					st.mu.Unlock()
				}
			}
		}
		// Containers: sum of `shoal ps` over the nodes.
		per := map[string][]string{}
		st.mu.Lock()
		removed := copyMap(st.removedSvc)
		st.mu.Unlock()
		for _, h := range hosts {
			var cs []api.Container
			if err := h.JSON(&cs, "ps"); err != nil {
				continue
			}
			for _, ct := range cs {
				tk, ok := byID[ct.TaskID]
				if ct.State != "running" || !ok {
					continue
				}
				key := fmt.Sprintf("%s.%d", tk.Service, tk.Slot)
				per[key] = append(per[key], h.Name+":"+ct.Name)
				if removed[tk.ServiceID] && whole && time.Since(tk.UpdatedAt) > soakCleanWait {
					st.violate("%s: container %s of removed service %s still running", h.Name, ct.Name, tk.Service)
				}
			}
		}
		st.mu.Lock()
		st.samples++
		st.mu.Unlock()
		for key, where := range per {
			if len(where) < 2 {
				continue
			}
			if soakAtMostOnce(strings.SplitN(key, ".", 2)[0]) {
				st.violate("slot %s of an at-most-once service runs twice: %v", key, where)
				continue
			}
			if whole {
				st.violate("slot %s runs twice: %v", key, where)
			} else {
				st.mu.Lock()
				st.doubledInFault++
				st.mu.Unlock()
			}
		}
	}
}

func copyMap(m map[string]bool) map[string]bool {
	out := make(map[string]bool, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// rssOf returns VmRSS of pid in bytes, 0 if unknown.
func rssOf(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// soakOrphans audits every host for what containers leave behind: runc
// state, netns files, run dirs, cgroups, veths and mounts of containers the
// agent does not know (`ps -a`), and VIPs of removed services in nftables.
// seen counts every artifact found, owned or not, by kind: an audit that
// sees nothing while containers run looks in the wrong places.
func soakOrphans(t *testing.T, c *harness.Cluster, st *soakState) (out []string, seen map[string]int) {
	t.Helper()
	seen = map[string]int{}
	st.mu.Lock()
	vips := make([]string, 0, len(st.removedVIP))
	for v := range st.removedVIP {
		vips = append(vips, v)
	}
	st.mu.Unlock()
	sort.Strings(vips)
	for _, h := range c.Hosts() {
		var cs []api.Container
		if err := h.JSON(&cs, "ps", "-a"); err != nil {
			out = append(out, fmt.Sprintf("%s: ps -a: %v", h.Name, err))
			continue
		}
		known := map[string]bool{}
		veths := map[string]bool{}
		for _, ct := range cs {
			known[ct.ID] = true
			veths[overlay.VethName(ct.ID)] = true
		}
		id := h.NodeID(t)
		unknown := func(kind, name string) {
			seen[strings.Fields(kind)[0]]++
			if !known[name] {
				out = append(out, fmt.Sprintf("%s: %s %s", h.Name, kind, name))
			}
		}
		for _, root := range h.RuncRoots() {
			entries, _ := os.ReadDir(root)
			for _, e := range entries {
				if _, err := os.Stat(filepath.Join(root, e.Name(), "state.json")); err == nil {
					unknown("runc container", e.Name())
				}
			}
		}
		for _, dir := range findDirs(h.DataDir, "netns", 4) { // containers made without a run dir
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				unknown("netns", e.Name())
			}
		}
		// The containers' run dirs (runtime.Config.RunRoot, beside the
		// socket), each with its netns.
		runRoots, _ := filepath.Glob(filepath.Join(h.RunDir, "containers-*"))
		for _, root := range runRoots {
			entries, _ := os.ReadDir(root)
			for _, e := range entries {
				unknown("rundir", e.Name())
				if _, err := os.Lstat(filepath.Join(root, e.Name(), "netns")); err == nil {
					unknown("netns", e.Name())
				}
			}
		}
		short := id
		if len(short) > 12 {
			short = short[:12]
		}
		for _, ctl := range []string{"memory", "pids", "cpu", "unified"} {
			entries, _ := os.ReadDir(filepath.Join("/sys/fs/cgroup", ctl, "shoal-"+short))
			for _, e := range entries {
				if e.IsDir() {
					unknown("cgroup "+ctl, e.Name())
				}
			}
		}
		if links, err := exec.Command("ip", "-n", h.NS, "-o", "link", "show", "type", "veth").Output(); err == nil {
			for _, l := range strings.Split(string(links), "\n") {
				f := strings.Fields(l)
				if len(f) < 2 {
					continue
				}
				name := strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0]
				if strings.HasPrefix(name, "sh") {
					seen["veth"]++
				}
				if strings.HasPrefix(name, "sh") && !veths[name] {
					out = append(out, fmt.Sprintf("%s: veth %s", h.Name, name))
				}
			}
		}
		for _, mp := range append(mountsUnder(h.DataDir), mountsUnder(h.RunDir)...) {
			// Root/containers/ID/rootfs, or RunRoot/ID/{rootfs,netns}
			// with RunRoot = RunDir/containers-NODE.
			for _, sep := range []string{"/containers/", "/containers-"} {
				if i := strings.Index(mp, sep); i >= 0 {
					rest := mp[i+len(sep):]
					if sep == "/containers-" {
						_, rest, _ = strings.Cut(rest, "/")
					}
					if cid := strings.SplitN(rest, "/", 2)[0]; cid != "" {
						unknown("mount "+mp, cid)
					}
					break
				}
			}
		}
		if rules, err := exec.Command("ip", "netns", "exec", h.NS, "nft", "list", "ruleset").Output(); err == nil {
			for _, v := range vips {
				if regexp.MustCompile(`(^|[^0-9.])` + regexp.QuoteMeta(v) + `([^0-9]|$)`).Match(rules) {
					out = append(out, fmt.Sprintf("%s: nftables still maps VIP %s of removed service %s", h.Name, v, st.removedVIP[v]))
				}
			}
		}
	}
	return out, seen
}

// findDirs returns directories named name under base, at most depth down.
func findDirs(base, name string, depth int) []string {
	var out []string
	entries, err := os.ReadDir(base)
	if err != nil {
		return nil
	}
	for _, e := range entries {
		if !e.IsDir() || e.Type()&os.ModeSymlink != 0 {
			continue
		}
		p := filepath.Join(base, e.Name())
		if e.Name() == name {
			out = append(out, p)
		} else if depth > 0 {
			out = append(out, findDirs(p, name, depth-1)...)
		}
	}
	return out
}

// mountsUnder lists the mount points at or below dir.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			out = append(out, fields[4])
		}
	}
	return out
}
