// Package memtrim drops the agent's resident copy of its own binary from the
// agent's page tables once start-up is over, and again now and then, so that
// what stays resident is the code an idle agent really runs.
//
// Why: the shoal binary holds the CLI, the compose loader, the dashboard,
// wireguard-go and the agent together (about 25 MiB of code and read-only
// data). The agent's start touches much of it once (package init, the join,
// the first sync), and the kernel maps 64 KiB around every page it faults in
// (fault-around), so an idle agent kept 24 MiB of its binary resident and
// showed a VmRSS of 33–37 MiB although its own memory (RssAnon) was 9–12
// MiB. The pages are clean and backed by the file: dropping them from this
// process's page tables (MADV_DONTNEED) loses nothing, the pages stay in
// the page cache (or come back from the file), and the next use costs a
// minor fault. What the idle loops use comes back within a second; what
// only start-up or a rare command used stays out until it runs again.
//
// Only mappings of the executable that are read-only and hold no private
// page are dropped: a private page (a relocated or written page, counted as
// Anonymous in smaps) exists only in this process, and MADV_DONTNEED would
// replace it with the file's contents. The writable data segment is never
// touched.
package memtrim

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Range is one mapping [Start, End) to drop.
type Range struct {
	Start, End uintptr
}

// mapping is what Plan reads of one smaps entry.
type mapping struct {
	Range
	perms string
	path  string
	anon  int64 // kB of private (written) pages, smaps "Anonymous"
	// anonRead: the Anonymous line was read; without it nothing says the
	// mapping is clean, so it is kept.
	anonRead bool
	valid    bool
}

// Plan returns the mappings of exe in smaps (the text of /proc/self/smaps)
// that are safe to drop: not writable, and without one private page.
func Plan(smaps, exe string) ([]Range, error) {
	var out []Range
	var cur mapping
	flush := func() {
		if cur.valid && cur.path == exe && !strings.Contains(cur.perms, "w") && cur.anonRead && cur.anon == 0 && cur.End > cur.Start {
			out = append(out, cur.Range)
		}
		cur = mapping{}
	}
	sc := bufio.NewScanner(strings.NewReader(smaps))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if m, ok, err := parseHeader(line); err != nil {
			return nil, err
		} else if ok {
			flush()
			cur = m
			continue
		}
		if rest, ok := strings.CutPrefix(line, "Anonymous:"); ok && cur.valid {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("smaps: bad Anonymous line %q: %w", line, err)
			}
			cur.anon, cur.anonRead = kb, true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read smaps: %w", err)
	}
	flush()
	return out, nil
}

// parseHeader reads a mapping's first line ("start-end perms offset dev
// inode [path]"); ok is false for the key-value lines that follow it.
func parseHeader(line string) (mapping, bool, error) {
	f := strings.Fields(line)
	if len(f) < 5 || strings.HasSuffix(f[0], ":") {
		return mapping{}, false, nil
	}
	lo, hi, found := strings.Cut(f[0], "-")
	if !found {
		return mapping{}, false, nil
	}
	start, err1 := strconv.ParseUint(lo, 16, 64)
	end, err2 := strconv.ParseUint(hi, 16, 64)
	if err1 != nil || err2 != nil {
		return mapping{}, false, fmt.Errorf("smaps: bad mapping line %q", line)
	}
	m := mapping{Range: Range{uintptr(start), uintptr(end)}, perms: f[1], valid: true}
	if len(f) > 5 {
		// The path is the rest of the line after five fields: it may hold
		// spaces, and ends in " (deleted)" once the binary was replaced
		// under a running agent (an upgrade), as /proc/self/exe then reads.
		rest := line
		for i := 0; i < 5; i++ {
			_, rest, _ = strings.Cut(strings.TrimLeft(rest, " "), " ")
		}
		m.path = strings.TrimSpace(rest)
	}
	return m, true, nil
}

// Result is what one Trim did, for the log.
type Result struct {
	Ranges int
	// Bytes is the size of the ranges dropped; RSSBefore and RSSAfter are
	// the process's RssFile in bytes around the call.
	Bytes               int64
	RSSBefore, RSSAfter int64
}

// Trim drops this process's droppable mappings of its executable.
func Trim() (Result, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return Result{}, fmt.Errorf("read /proc/self/exe: %w", err)
	}
	raw, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return Result{}, fmt.Errorf("read smaps: %w", err)
	}
	ranges, err := Plan(string(raw), exe)
	if err != nil {
		return Result{}, err
	}
	res := Result{Ranges: len(ranges), RSSBefore: rssFile()}
	for _, r := range ranges {
		// The addresses come from the kernel, not from Go pointers; the
		// pages are clean file pages (Plan), so the next access refaults
		// them from the page cache.
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, r.Start, r.End-r.Start, unix.MADV_DONTNEED); errno != 0 {
			return res, fmt.Errorf("madvise %#x-%#x: %w", r.Start, r.End, errno)
		}
		res.Bytes += int64(r.End - r.Start)
	}
	res.RSSAfter = rssFile()
	return res, nil
}

// rssFile reads RssFile of /proc/self/status in bytes (0 when unknown).
func rssFile() int64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "RssFile:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// Loop trims once after first (start-up is then over) and then every
// every, until ctx ends. A failed trim is logged and tried again on the
// next round: nothing depends on it.
func Loop(ctx context.Context, first, every time.Duration, log *slog.Logger) {
	t := time.NewTimer(first)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		res, err := Trim()
		if err != nil {
			log.Warn("trim the binary's resident pages", "err", err)
		} else {
			log.Debug("trimmed the binary's resident pages", "ranges", res.Ranges,
				"rss_file_before", res.RSSBefore, "rss_file_after", res.RSSAfter)
		}
		t.Reset(every)
	}
}
