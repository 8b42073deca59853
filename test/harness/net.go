package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// partitionTable is the nftables table the harness owns in each host's
// namespace to drop traffic across a partition. Agents own other tables.
const partitionTable = "shoal_test_partition"

// cmdTimeout bounds every ip/nft/runc command the harness runs.
const cmdTimeout = 30 * time.Second

// run executes a host tool and returns its trimmed combined output; the error
// names the command and carries the output.
func run(name string, args ...string) (string, error) {
	return runInput("", name, args...)
}

func runInput(stdin, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	// A tool that leaves a child holding its output (runc run -d) must not
	// hang the harness.
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	s := strings.TrimSpace(string(out))
	if err != nil {
		return s, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, s)
	}
	return s, nil
}

var subnets struct {
	mu   sync.Mutex
	used map[int]bool
}

// pickSubnet returns an X for 10.213.X.0/24 that no cluster of this process
// uses and that no interface in the root namespace has an address in.
// 250 is left to scripts/run-cluster.sh.
func pickSubnet() (int, error) {
	out, err := run("ip", "-4", "-o", "addr", "show")
	if err != nil {
		return 0, fmt.Errorf("list root addresses: %w", err)
	}
	subnets.mu.Lock()
	defer subnets.mu.Unlock()
	if subnets.used == nil {
		subnets.used = map[int]bool{}
	}
	start := int(randByte()) % 240
	for i := 0; i < 240; i++ {
		x := 1 + (start+i)%240
		if subnets.used[x] || strings.Contains(out, fmt.Sprintf(" 10.213.%d.", x)) {
			continue
		}
		subnets.used[x] = true
		return x, nil
	}
	return 0, fmt.Errorf("no free 10.213.X.0/24 subnet")
}

func releaseSubnet(x int) {
	subnets.mu.Lock()
	defer subnets.mu.Unlock()
	delete(subnets.used, x)
}

// pickName returns "sh" + 4 hex digits that names no existing link or netns.
func pickName() (string, error) {
	for i := 0; i < 50; i++ {
		b := make([]byte, 2)
		if _, err := rand.Read(b); err != nil {
			return "", fmt.Errorf("random cluster name: %w", err)
		}
		name := "sh" + hex.EncodeToString(b)
		if _, err := run("ip", "link", "show", name); err == nil {
			continue
		}
		if out, _ := run("ip", "netns", "list"); strings.Contains(out, name+"-") {
			continue
		}
		return name, nil
	}
	return "", fmt.Errorf("no free cluster name")
}

func randByte() byte {
	b := make([]byte, 1)
	_, _ = rand.Read(b)
	return b[0]
}

// createBridge makes the cluster's bridge with the .1 address, up.
func createBridge(name string, x int) error {
	steps := [][]string{
		{"link", "add", name, "type", "bridge"},
		{"addr", "add", fmt.Sprintf("10.213.%d.1/24", x), "dev", name},
		{"link", "set", name, "up"},
	}
	for _, s := range steps {
		if _, err := run("ip", s...); err != nil {
			return fmt.Errorf("create bridge %s: %w", name, err)
		}
	}
	return nil
}

// createHostNet makes namespace ns with lo up and eth0 (ip/24, default route
// via the bridge), joined to bridge by the veth whose root side is veth.
func createHostNet(bridge, ns, veth, ip string, x int) error {
	steps := [][]string{
		{"netns", "add", ns},
		{"link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"link", "set", veth, "master", bridge},
		{"link", "set", veth, "up"},
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "addr", "add", ip + "/24", "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
		{"-n", ns, "route", "add", "default", "via", fmt.Sprintf("10.213.%d.1", x)},
	}
	for _, s := range steps {
		if _, err := run("ip", s...); err != nil {
			return fmt.Errorf("create host %s: %w", ns, err)
		}
	}
	return nil
}

// setLink sets the root-namespace side of a host's veth up or down. Down
// cuts the host off the bridge while its own configuration stays intact.
func setLink(veth string, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	if _, err := run("ip", "link", "set", veth, state); err != nil {
		return fmt.Errorf("set link %s %s: %w", veth, state, err)
	}
	return nil
}

// partitionRules drops every IPv4 packet to or from the blocked addresses,
// before conntrack, so established connections are cut too.
func partitionRules(blocked []string) string {
	return fmt.Sprintf(`table inet %[1]s {
	set blocked { type ipv4_addr; elements = { %[2]s } }
	chain input { type filter hook input priority -300; policy accept; ip saddr @blocked drop; }
	chain output { type filter hook output priority -300; policy accept; ip daddr @blocked drop; }
}
`, partitionTable, strings.Join(blocked, ", "))
}

// setPartition replaces the partition table in ns with one blocking blocked.
func setPartition(ns string, blocked []string) error {
	clearPartition(ns)
	if len(blocked) == 0 {
		return nil
	}
	if _, err := runInput(partitionRules(blocked), "ip", "netns", "exec", ns, "nft", "-f", "-"); err != nil {
		return fmt.Errorf("partition %s: %w", ns, err)
	}
	return nil
}

// clearPartition deletes the partition table in ns if it exists.
func clearPartition(ns string) {
	_, _ = run("ip", "netns", "exec", ns, "nft", "delete", "table", "inet", partitionTable)
}

// ReserveNet returns a name ("sh" + 4 hex digits) that names no link or
// network namespace yet and an X for 10.213.X.0/24 that no cluster of this
// process uses, for a test that builds its hosts itself
// (test/e2e_makerun_test.go: scripts/run-cluster.sh under SHOAL_RUN_*);
// release gives the subnet back.
func ReserveNet() (name string, x int, release func(), err error) {
	name, err = pickName()
	if err != nil {
		return "", 0, nil, err
	}
	x, err = pickSubnet()
	if err != nil {
		return "", 0, nil, err
	}
	return name, x, func() { releaseSubnet(x) }, nil
}
