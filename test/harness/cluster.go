package harness

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

// RunRoot is where clusters keep their sockets and runtime state, one
// directory per cluster. Unix socket paths must stay short (108 bytes).
const RunRoot = "/run/shoal-test"

// Default ports of the agent; every host has its own namespace, so all
// agents use them.
const (
	GossipPort  = 7946
	ClusterPort = 2377
)

// Option changes how New builds a cluster.
type Option func(*options)

type options struct {
	bin       string
	agentArgs []string
	env       []string
}

// WithBinary runs the shoal binary at path instead of $SHOAL_BIN or a build.
func WithBinary(path string) Option { return func(o *options) { o.bin = path } }

// WithAgentArgs appends args to every `shoal agent` command line the cluster
// starts (after the harness's own flags, before Start's args).
func WithAgentArgs(args ...string) Option {
	return func(o *options) { o.agentArgs = append(o.agentArgs, args...) }
}

// WithEnv adds KEY=VALUE entries to every agent's environment.
func WithEnv(kv ...string) Option { return func(o *options) { o.env = append(o.env, kv...) } }

// Cluster is a bridge and the hosts attached to it. Its methods may be called
// from any goroutine unless they take a testing.TB, which (as t.Fatal
// requires) must be the test goroutine.
type Cluster struct {
	t testing.TB
	// Name is the short unique name ("sh1a2b") used for the bridge and as
	// the prefix of namespaces and veths.
	Name string
	// Subnet is X of the cluster's 10.213.X.0/24.
	Subnet int
	// Dir holds the hosts' data dirs and logs; RunDir their sockets and
	// runtime state. Both outlive agent restarts and are removed at cleanup.
	Dir, RunDir string
	// Bin is the shoal binary the agents and the CLI run.
	Bin string

	opts options

	closeOnce sync.Once
	mu        sync.Mutex
	hosts     []*Host
}

// Requirements skips t unless it runs as root with ip, nft, nsenter and runc
// on PATH: the harness needs all of them.
func Requirements(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("end-to-end tests need root (network namespaces, runc)")
	}
	for _, tool := range []string{"ip", "nft", "nsenter", "runc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("end-to-end tests need %s on PATH (scripts/deps.sh installs it)", tool)
		}
	}
}

// New builds a cluster of n hosts, none of them started yet, and registers
// its teardown with t.Cleanup. It skips t when Requirements are not met and
// fails t if the binary cannot be built or the network cannot be made.
func New(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	Requirements(t)
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	bin := o.bin
	if bin == "" {
		var err error
		if bin, err = Binary(); err != nil {
			t.Fatalf("shoal binary: %v", err)
		}
	}
	reapStale(t.Logf)
	name, err := pickName()
	if err != nil {
		t.Fatal(err)
	}
	x, err := pickSubnet()
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{t: t, Name: name, Subnet: x, Bin: bin, opts: o, RunDir: filepath.Join(RunRoot, name)}
	t.Cleanup(c.Close)
	if c.Dir, err = os.MkdirTemp("", "shoal-e2e-"+name+"-"); err != nil {
		t.Fatalf("cluster dir: %v", err)
	}
	if err := os.MkdirAll(c.RunDir, 0o700); err != nil {
		t.Fatalf("cluster run dir: %v", err)
	}
	if err := c.writeOwner(); err != nil {
		t.Fatal(err)
	}
	if err := createBridge(name, x); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		c.AddHost()
	}
	return c
}

// AddHost adds one more host (not started) to the bridge, for nodes that
// join later. It fails the test if the namespace cannot be made.
func (c *Cluster) AddHost() *Host {
	c.t.Helper()
	c.mu.Lock()
	i := len(c.hosts) + 1
	c.mu.Unlock()
	if i > 200 {
		c.t.Fatalf("cluster %s: at most 200 hosts", c.Name)
	}
	h := &Host{
		c:       c,
		Index:   i,
		Name:    fmt.Sprintf("h%d", i),
		NS:      fmt.Sprintf("%s-h%d", c.Name, i),
		IP:      fmt.Sprintf("10.213.%d.%d", c.Subnet, 10+i),
		Veth:    fmt.Sprintf("%sv%d", c.Name, i),
		DataDir: filepath.Join(c.Dir, fmt.Sprintf("h%d", i)),
		RunDir:  filepath.Join(c.RunDir, fmt.Sprintf("h%d", i)),
		Socket:  filepath.Join(c.RunDir, fmt.Sprintf("h%d", i), "shoal.sock"),
		LogPath: filepath.Join(c.Dir, fmt.Sprintf("h%d.log", i)),
	}
	c.mu.Lock()
	c.hosts = append(c.hosts, h) // before the namespace exists, so cleanup sees it
	c.mu.Unlock()
	for _, d := range []string{h.DataDir, h.RunDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			c.t.Fatalf("host %s: %v", h.Name, err)
		}
	}
	if err := createHostNet(c.Name, h.NS, h.Veth, h.IP, c.Subnet); err != nil {
		c.t.Fatal(err)
	}
	return h
}

// Hosts returns the cluster's hosts in order (h1 first).
func (c *Cluster) Hosts() []*Host {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Host(nil), c.hosts...)
}

// Host returns host i, counting from 1 as the names do (Host(1) is h1).
func (c *Cluster) Host(i int) *Host {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hosts[i-1]
}

// Running returns the hosts whose agent process is alive.
func (c *Cluster) Running() []*Host {
	var out []*Host
	for _, h := range c.Hosts() {
		if h.Running() {
			out = append(out, h)
		}
	}
	return out
}

// StartAll starts every host's agent that is not running, failing t on error.
func (c *Cluster) StartAll(t testing.TB) {
	t.Helper()
	for _, h := range c.Hosts() {
		if !h.Running() {
			if err := h.Start(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// Form starts every host, runs `init` on h1, reads the token with `token`,
// joins the others through h1 one by one and waits until `node ls` on every
// host shows all nodes ready. It returns the join token.
func (c *Cluster) Form(t testing.TB) string {
	t.Helper()
	c.StartAll(t)
	hosts := c.Hosts()
	first := hosts[0]
	first.MustCLI(t, "init")
	token := first.Token(t)
	for _, h := range hosts[1:] {
		if err := h.Join(token, first); err != nil {
			t.Fatal(err)
		}
	}
	c.WaitReady(t, 90*time.Second, len(hosts))
	return token
}

// WaitReady waits until `node ls` on every one of hosts (default: every
// running host) lists n nodes, all ready, with exactly one leader. It
// returns how long that took.
func (c *Cluster) WaitReady(t testing.TB, timeout time.Duration, n int, hosts ...*Host) time.Duration {
	t.Helper()
	if len(hosts) == 0 {
		hosts = c.Running()
	}
	return Eventually(t, timeout, c.ReadyCondition(n, hosts...), "%d ready nodes on every host", n)
}

// ReadyCondition holds when `node ls` on every one of hosts lists exactly n
// nodes, all ready, with exactly one leader.
func (c *Cluster) ReadyCondition(n int, hosts ...*Host) Condition {
	return func() (bool, string) {
		for _, h := range hosts {
			nodes, err := h.Nodes()
			if err != nil {
				return false, fmt.Sprintf("%s: %v", h.Name, err)
			}
			ready, leaders := 0, 0
			for _, nd := range nodes {
				if nd.Status == api.NodeReady {
					ready++
				}
				if nd.ManagerStatus == api.ManagerLeader {
					leaders++
				}
			}
			if len(nodes) != n || ready != n || leaders != 1 {
				return false, fmt.Sprintf("%s sees %s", h.Name, Summary(nodes))
			}
		}
		return true, ""
	}
}

// Leader waits until one of hosts is reported as the leader by every one of
// them (`status`) and returns it. Hosts default to the running ones.
func (c *Cluster) Leader(t testing.TB, timeout time.Duration, hosts ...*Host) *Host {
	t.Helper()
	if len(hosts) == 0 {
		hosts = c.Running()
	}
	var leader *Host
	Eventually(t, timeout, func() (bool, string) {
		leader = nil
		ids := map[string]*Host{}
		var seen []string
		for _, h := range hosts {
			st, err := h.Status()
			if err != nil {
				return false, fmt.Sprintf("%s: %v", h.Name, err)
			}
			ids[st.NodeID] = h
			seen = append(seen, fmt.Sprintf("%s→%q", h.Name, st.Leader))
		}
		for _, h := range hosts {
			st, _ := h.Status()
			l, ok := ids[st.Leader]
			if !ok || (leader != nil && leader != l) {
				return false, "leaders seen: " + strings.Join(seen, " ")
			}
			leader = l
		}
		return leader != nil, "no hosts"
	}, "one leader among %d hosts", len(hosts))
	return leader
}

// Partition cuts the given hosts off from every other host of the cluster
// (both directions) with nftables drop rules in each host's namespace. It
// replaces any earlier partition; Heal removes it.
func (c *Cluster) Partition(group ...*Host) error {
	in := map[*Host]bool{}
	for _, h := range group {
		in[h] = true
	}
	var inside, outside []string
	for _, h := range c.Hosts() {
		if in[h] {
			inside = append(inside, h.IP)
		} else {
			outside = append(outside, h.IP)
		}
	}
	for _, h := range c.Hosts() {
		blocked := inside
		if in[h] {
			blocked = outside
		}
		if err := setPartition(h.NS, blocked); err != nil {
			return err
		}
	}
	return nil
}

// Heal removes the partition rules from every host. It is idempotent.
func (c *Cluster) Heal() error {
	for _, h := range c.Hosts() {
		clearPartition(h.NS)
	}
	return nil
}

// Close tears the cluster down now instead of at the end of the test (for
// benchmarks that make one cluster per run). It is idempotent and is also
// registered with t.Cleanup.
func (c *Cluster) Close() { c.closeOnce.Do(c.cleanup) }

// cleanup tears everything down, best effort, logging what it could not
// undo. It runs even when the test failed or New stopped half way.
func (c *Cluster) cleanup() {
	t := c.t
	hosts := c.Hosts()
	if t.Failed() {
		for _, h := range hosts {
			t.Logf("--- %s (%s, %s) agent log, last 100 lines ---\n%s", h.Name, h.IP, h.NS, h.LogTail(100))
		}
	}
	for _, h := range hosts {
		h.kill(syscall.SIGKILL)
	}
	for _, h := range hosts {
		for _, root := range h.RuncRoots() {
			for _, id := range runcIDs(root) {
				if out, err := run("runc", "--root", root, "delete", "--force", id); err != nil {
					t.Logf("harness cleanup: runc delete %s: %v %s", id, err, out)
				}
			}
		}
		if out, err := run("ip", "netns", "pids", h.NS); err == nil {
			for _, f := range strings.Fields(out) {
				if pid, err := strconv.Atoi(f); err == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
	}
	if err := unmountUnder(c.Dir, c.RunDir); err != nil {
		t.Logf("harness cleanup: %v", err)
	}
	for _, h := range hosts {
		removeAgentCgroups(h.DataDir)
	}
	for _, h := range hosts {
		_, _ = run("ip", "netns", "del", h.NS)
		_, _ = run("ip", "link", "del", h.Veth)
	}
	if c.Name != "" {
		_, _ = run("ip", "link", "del", c.Name)
	}
	for _, d := range []string{c.Dir, c.RunDir} {
		if d == "" {
			continue
		}
		if err := os.RemoveAll(d); err != nil {
			t.Logf("harness cleanup: remove %s: %v", d, err)
		}
	}
	if c.Subnet != 0 {
		releaseSubnet(c.Subnet)
	}
}

// CgroupRoot is where the cgroup hierarchies are mounted (a variable for
// the harness's own test).
var CgroupRoot = "/sys/fs/cgroup"

// removeAgentCgroups removes the cgroup every container of the agent with
// data dir dataDir lives under (/shoal-<short node ID>, node/agent.go),
// in every hierarchy, once its containers are gone: runc removes each
// container's own cgroup but not that parent, so every test agent used to
// leave one empty directory per hierarchy behind (27,080 of them on a
// machine after a day of test runs). An agent that never wrote its
// identity made none. Only empty directories go (rmdir), so a cgroup
// still in use stays.
func removeAgentCgroups(dataDir string) {
	var id struct {
		NodeID string `json:"node_id"`
	}
	raw, err := os.ReadFile(filepath.Join(dataDir, "node.json"))
	if err != nil || json.Unmarshal(raw, &id) != nil || id.NodeID == "" {
		return
	}
	dirs, _ := filepath.Glob(filepath.Join(CgroupRoot, "*", "shoal-"+api.ShortID(id.NodeID)))
	for _, d := range dirs {
		_ = os.Remove(d)
	}
}

// runcIDs lists the container IDs that have state under a runc root.
func runcIDs(root string) []string {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil
	}
	var ids []string
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(root, e.Name(), "state.json")); err == nil {
			ids = append(ids, e.Name())
		}
	}
	return ids
}

// findRuncRoots returns the directories under base (at most depth levels
// down) that look like runc roots: they hold ID/state.json.
func findRuncRoots(base string, depth int) []string {
	var roots []string
	seen := map[string]bool{}
	var walk func(dir string, d int)
	walk = func(dir string, d int) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return
		}
		for _, e := range entries {
			if !e.IsDir() {
				continue
			}
			sub := filepath.Join(dir, e.Name())
			if _, err := os.Stat(filepath.Join(sub, "state.json")); err == nil {
				if !seen[dir] {
					seen[dir] = true
					roots = append(roots, dir)
				}
				continue
			}
			if d > 0 && e.Type()&os.ModeSymlink == 0 {
				walk(sub, d-1)
			}
		}
	}
	walk(base, depth)
	return roots
}

// unmountUnder lazily unmounts every mount point at or below the given
// directories, deepest first.
func unmountUnder(dirs ...string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("read mountinfo: %w", err)
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		for _, d := range dirs {
			if d != "" && (mp == d || strings.HasPrefix(mp, d+"/")) {
				points = append(points, mp)
				break
			}
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var errs []string
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && err != syscall.EINVAL && err != syscall.ENOENT {
			errs = append(errs, fmt.Sprintf("%s: %v", p, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("unmount: %s", strings.Join(errs, "; "))
	}
	return nil
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Summary renders nodes compactly for failure messages:
// "3 nodes: h1/ready/leader h2/ready/reachable h3/down/".
func Summary(nodes []api.Node) string {
	parts := make([]string, 0, len(nodes))
	for _, n := range nodes {
		id := n.ID
		if len(id) > 8 {
			id = id[:8]
		}
		parts = append(parts, fmt.Sprintf("%s(%s)/%s/%s", n.Hostname, id, n.Status, n.ManagerStatus))
	}
	return fmt.Sprintf("%d nodes: %s", len(nodes), strings.Join(parts, " "))
}
