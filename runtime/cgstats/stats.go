// Package cgstats reads a container's usage from its cgroup, for the
// autoscaler and the node's metrics (the one reader of container cgroups in
// the agent), and whether the OOM killer struck (oom.go).
//
// runc places each container at CgroupParent/<id> in every hierarchy. On a
// hybrid host (cgroup v1 controllers, with a v2 mount beside them at
// /sys/fs/cgroup/unified that runc 1.1 does not put controllers in) CPU time
// is in cpuacct (cpuacct.usage, nanoseconds; the controller may be co-mounted
// as cpu,cpuacct) and memory in memory (memory.usage_in_bytes). On a pure v2
// host both are in the one hierarchy (cpu.stat usage_usec, memory.current).
// Memory counts what the kernel could not reclaim at once: usage minus the
// inactive page cache, as `docker stats` shows it.
//
// The files are in cgroupfs, which containers see read-only; they are still
// read with a cap.
package cgstats

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
)

// Root is where the cgroup hierarchies are mounted.
const Root = "/sys/fs/cgroup"

// maxCgroupFile caps a cgroup file read (memory.stat is ~1 KiB).
const maxCgroupFile = 64 << 10

// ErrNoStats: no cgroup of the container was found (it is not running, or
// the host's cgroup layout is not one this reader knows).
var ErrNoStats = errors.New("no cgroup stats")

// Stats is a container's resource usage at one moment.
type Stats struct {
	// CPUNanos is the CPU time the container used since it started, in
	// nanoseconds (cumulative: usage is the difference of two readings).
	CPUNanos uint64
	// MemoryBytes is the memory in use, without inactive page cache.
	MemoryBytes uint64
	// MemoryUsageBytes is the cgroup's whole charge, page cache included
	// (memory.usage_in_bytes, memory.current): what the memory limit is
	// held against.
	MemoryUsageBytes uint64
	// HasCPU and HasMemory say which halves were found (a host may lack a
	// controller).
	HasCPU, HasMemory bool
}

// Read reads the usage of the cgroup at rel (relative to each
// hierarchy) under root, trying the v1 layout first, then v2.
func Read(root, rel string) (Stats, error) {
	var st Stats
	cpuOK, memOK := false, false
	for _, ctl := range []string{"cpuacct", "cpu,cpuacct", "cpuacct,cpu"} {
		if v, err := readUint(filepath.Join(root, ctl, rel, "cpuacct.usage")); err == nil {
			st.CPUNanos, cpuOK = v, true
			break
		}
	}
	if v, err := readUint(filepath.Join(root, "memory", rel, "memory.usage_in_bytes")); err == nil {
		st.MemoryBytes, st.MemoryUsageBytes, memOK = v, v, true
		if kv, err := readKeyed(filepath.Join(root, "memory", rel, "memory.stat")); err == nil {
			st.MemoryBytes = subFloor(st.MemoryBytes, kv["total_inactive_file"])
		}
	}
	if !cpuOK || !memOK {
		// Pure v2 at root, or v2 beside v1 (root/unified).
		for _, dir := range []string{filepath.Join(root, rel), filepath.Join(root, "unified", rel)} {
			if !cpuOK {
				if kv, err := readKeyed(filepath.Join(dir, "cpu.stat")); err == nil {
					if us, ok := kv["usage_usec"]; ok {
						st.CPUNanos, cpuOK = us*1000, true
					}
				}
			}
			if !memOK {
				if v, err := readUint(filepath.Join(dir, "memory.current")); err == nil {
					st.MemoryBytes, st.MemoryUsageBytes, memOK = v, v, true
					if kv, err := readKeyed(filepath.Join(dir, "memory.stat")); err == nil {
						st.MemoryBytes = subFloor(st.MemoryBytes, kv["inactive_file"])
					}
				}
			}
		}
	}
	if !cpuOK && !memOK {
		return Stats{}, fmt.Errorf("%w at %s", ErrNoStats, rel)
	}
	st.HasCPU, st.HasMemory = cpuOK, memOK
	return st, nil
}

func subFloor(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

// readCgroupFile reads a cgroup file with a cap.
func readCgroupFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCgroupFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxCgroupFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxCgroupFile)
	}
	return b, nil
}

// readUint reads a file holding one unsigned number.
func readUint(path string) (uint64, error) {
	b, err := readCgroupFile(path)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(string(bytes.TrimSpace(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// readKeyed reads a flat keyed file ("key value" lines, as memory.stat and
// cpu.stat); lines that do not parse are skipped.
func readKeyed(path string) (map[string]uint64, error) {
	b, err := readCgroupFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := bytes.Cut(sc.Bytes(), []byte{' '})
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64)
		if err != nil {
			continue
		}
		out[string(k)] = n
	}
	return out, nil
}
