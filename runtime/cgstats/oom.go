package cgstats

import (
	"bufio"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// OOMKilled reports whether the kernel's OOM killer killed a process in the
// memory cgroup rel (CgroupParent/ID): the oom_kill counter of cgroup v1's
// memory.oom_control, else of cgroup v2's memory.events. It must be asked
// before runc delete removes the cgroup. The files are the kernel's, but
// are read with a size cap all the same.
func OOMKilled(rel string) bool {
	for _, p := range []string{
		filepath.Join("/sys/fs/cgroup/memory", rel, "memory.oom_control"), // v1 (and hybrid)
		filepath.Join("/sys/fs/cgroup", rel, "memory.events"),             // v2
	} {
		if n, ok := cgroupCounter(p, "oom_kill"); ok {
			return n > 0
		}
	}
	return false
}

// cgroupCounter reads the value of key in a "key value" per line file.
func cgroupCounter(path, key string) (uint64, bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, 64<<10))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
