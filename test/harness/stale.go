package harness

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// ownerFile records which test process owns a cluster, so a later process
// can tear down clusters whose owner died without running its cleanups
// (a `go test -timeout` panic, a SIGKILL).
const ownerFile = "owner.json"

type owner struct {
	PID   int    `json:"pid"`
	Start string `json:"start"` // start time of PID, against PID reuse
	Dir   string `json:"dir"`
}

var reapOnce sync.Once

// writeOwner records this process as the owner of cluster c.
func (c *Cluster) writeOwner() error {
	b, err := json.Marshal(owner{PID: os.Getpid(), Start: procStart(os.Getpid()), Dir: c.Dir})
	if err != nil {
		return fmt.Errorf("encode owner: %w", err)
	}
	if err := os.WriteFile(filepath.Join(c.RunDir, ownerFile), b, 0o600); err != nil {
		return fmt.Errorf("write owner of %s: %w", c.Name, err)
	}
	return nil
}

// procStart returns field 22 (starttime) of /proc/PID/stat, or "".
func procStart(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		if f := strings.Fields(s[i+1:]); len(f) > 19 {
			return f[19]
		}
	}
	return ""
}

// reapStale tears down clusters under RunRoot whose owning test process is
// gone. It runs once per process, before the first cluster is made, and is
// best effort: what it cannot remove it leaves.
func reapStale(logf func(string, ...any)) {
	reapOnce.Do(func() {
		entries, err := os.ReadDir(RunRoot)
		if err != nil {
			return
		}
		for _, e := range entries {
			runDir := filepath.Join(RunRoot, e.Name())
			b, err := os.ReadFile(filepath.Join(runDir, ownerFile))
			if err != nil {
				continue // not ours, or being created right now
			}
			var o owner
			if json.Unmarshal(b, &o) != nil || o.PID == 0 {
				continue
			}
			if syscall.Kill(o.PID, 0) == nil && procStart(o.PID) == o.Start {
				continue // owner alive
			}
			logf("harness: tearing down stale cluster %s (owner pid %d is gone)", e.Name(), o.PID)
			teardownStale(e.Name(), runDir, o.Dir)
		}
	})
}

// teardownStale removes a dead owner's cluster: processes in its
// namespaces, runc containers, mounts, namespaces, bridge and directories.
func teardownStale(name, runDir, dataDir string) {
	out, _ := run("ip", "netns", "list")
	var nss []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], name+"-h") {
			nss = append(nss, f[0])
		}
	}
	for _, ns := range nss {
		pids, _ := run("ip", "netns", "pids", ns)
		for _, p := range strings.Fields(pids) {
			if pid, err := strconv.Atoi(p); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	var roots []string
	for _, base := range []string{runDir, dataDir} {
		if base != "" {
			roots = append(roots, findRuncRoots(base, 5)...)
		}
	}
	for _, root := range roots {
		for _, id := range runcIDs(root) {
			_, _ = run("runc", "--root", root, "delete", "--force", id)
		}
	}
	_ = unmountUnder(dataDir, runDir)
	if dataDir != "" {
		hostDirs, _ := filepath.Glob(filepath.Join(dataDir, "h*"))
		for _, d := range hostDirs {
			removeAgentCgroups(d)
		}
	}
	for _, ns := range nss {
		_, _ = run("ip", "netns", "del", ns)
	}
	_, _ = run("ip", "link", "del", name)
	if dataDir != "" && strings.HasPrefix(filepath.Base(dataDir), "shoal-e2e-"+name) {
		_ = os.RemoveAll(dataDir)
	}
	_ = os.RemoveAll(runDir)
}
