package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/containerinit"
)

// LogOptions select which log lines Logs returns.
type LogOptions struct {
	// Follow keeps streaming new lines until the container has exited and
	// all its output is read (or ctx ends).
	Follow bool
	// Tail limits the initial output to the last Tail lines; 0 means all.
	Tail int
	// Since drops lines older than this time; zero means no limit.
	Since time.Time
}

// followPoll is how often a follower looks for new output.
const followPoll = 100 * time.Millisecond

// Logs streams the container's stored output. The channel is closed when
// everything asked for was sent, or when ctx or Run ends. The log files are
// written (and rotated) by the node supervisor, so this only reads files:
// each opened without following links, as a regular file, with lines of at
// most maxLogLine bytes (longer ones are skipped).
func (r *Runtime) Logs(ctx context.Context, idOrName string, opts LogOptions) (<-chan api.LogLine, error) {
	if err := r.waitReady(ctx); err != nil {
		return nil, err
	}
	c, err := r.lookup(idOrName)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	id := c.rec.ID
	r.mu.Unlock()
	logDir := r.pathsOf(c).log
	logName := containerinit.LogFile
	logPath := filepath.Join(logDir, logName)

	// Open the current file before reading the rotated ones, so a rotation
	// in between duplicates lines at worst rather than losing them.
	cur, err := openInDir(logDir, logName)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("open log of %s: %w", ShortID(id), err)
	}
	var initial []api.LogLine
	for i := r.cfg.LogMaxFiles - 1; i >= 1; i-- {
		f, err := openInDir(logDir, logName+"."+strconv.Itoa(i))
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				r.log.Warn("skipping a log file", "id", ShortID(id), "err", err)
			}
			continue
		}
		initial = append(initial, (&lineReader{f: f}).readLines(opts)...)
		f.Close()
	}
	var rd *lineReader
	if cur != nil {
		rd = &lineReader{f: cur}
		initial = append(initial, rd.readLines(opts)...)
	}
	if opts.Tail > 0 && len(initial) > opts.Tail {
		initial = initial[len(initial)-opts.Tail:]
	}

	ch := make(chan api.LogLine, 64)
	ok := r.spawn(func() {
		defer close(ch)
		if rd != nil {
			defer func() { rd.f.Close() }()
		}
		send := func(l api.LogLine) bool {
			select {
			case ch <- l:
				return true
			case <-ctx.Done():
				return false
			case <-r.runCtx.Done():
				return false
			}
		}
		for _, l := range initial {
			if !send(l) {
				return
			}
		}
		if !opts.Follow {
			return
		}
		t := time.NewTicker(followPoll)
		defer t.Stop()
		for {
			r.mu.Lock()
			running := c.rec.State == api.ContainerRunning && !c.removed
			r.mu.Unlock()
			if rd == nil {
				if f, err := openInDir(logDir, logName); err == nil {
					rd = &lineReader{f: f}
				}
			}
			if rd != nil {
				for _, l := range rd.readLines(opts) {
					if !send(l) {
						return
					}
				}
				// Rotated: finish the old file, continue with the new one.
				if rotated(rd.f, logPath) {
					for _, l := range rd.readLines(opts) {
						if !send(l) {
							return
						}
					}
					rd.f.Close()
					rd = nil
					continue
				}
			}
			if !running {
				return // exited: the supervisor drained the output before reporting it
			}
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			case <-r.runCtx.Done():
				return
			}
		}
	})
	if !ok {
		if rd != nil {
			rd.f.Close()
		}
		return nil, ErrClosed
	}
	return ch, nil
}

// lineReader reads whole JSON lines from a growing file, keeping a partial
// last line (at most maxLogLine bytes) for the next call. A longer line is
// skipped up to its newline.
type lineReader struct {
	f        *os.File
	partial  []byte
	skipping bool // inside a line longer than maxLogLine
}

func (lr *lineReader) readLines(opts LogOptions) []api.LogLine {
	var out []api.LogLine
	buf := make([]byte, 64<<10)
	for {
		n, err := lr.f.Read(buf)
		data := buf[:max(n, 0)]
		for len(data) > 0 {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				if !lr.skipping && len(lr.partial)+len(data) <= maxLogLine {
					lr.partial = append(lr.partial, data...)
				} else {
					lr.partial, lr.skipping = nil, true
				}
				break
			}
			if !lr.skipping && len(lr.partial)+i <= maxLogLine {
				line := data[:i]
				if len(lr.partial) > 0 {
					line = append(lr.partial, line...)
				}
				if l, ok := decodeLine(line, opts); ok {
					out = append(out, l)
				}
			}
			lr.partial, lr.skipping = lr.partial[:0], false
			data = data[i+1:]
		}
		if err != nil || n == 0 {
			return out
		}
	}
}

func decodeLine(b []byte, opts LogOptions) (api.LogLine, bool) {
	var l api.LogLine
	if len(b) == 0 || json.Unmarshal(b, &l) != nil {
		return l, false
	}
	if !opts.Since.IsZero() && l.Time.Before(opts.Since) {
		return l, false
	}
	return l, true
}

// rotated reports whether path now names a different file than f.
func rotated(f *os.File, path string) bool {
	a, err1 := f.Stat()
	b, err2 := os.Lstat(path)
	if err1 != nil || err2 != nil {
		return false // not recreated yet: keep reading the old file
	}
	sa, ok1 := a.Sys().(*syscall.Stat_t)
	sb, ok2 := b.Sys().(*syscall.Stat_t)
	return ok1 && ok2 && sa.Ino != sb.Ino
}
