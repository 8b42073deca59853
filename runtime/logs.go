package runtime

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
// written by the init inside the container, so this only reads files.
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
	logPath := filepath.Join(r.pathsOf(id).log, containerinit.LogFile)

	// Open the current file before reading the rotated ones, so a rotation
	// in between duplicates lines at worst rather than losing them.
	cur, err := os.Open(logPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("open log of %s: %w", ShortID(id), err)
	}
	var initial []api.LogLine
	for i := r.cfg.LogMaxFiles - 1; i >= 1; i-- {
		f, err := os.Open(logPath + "." + strconv.Itoa(i))
		if err != nil {
			continue
		}
		initial = appendLines(initial, f, opts)
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
				if f, err := os.Open(logPath); err == nil {
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
				return // exited: the init flushed everything before exiting
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
// last line for the next call.
type lineReader struct {
	f       *os.File
	partial []byte
}

func (lr *lineReader) readLines(opts LogOptions) []api.LogLine {
	var out []api.LogLine
	buf := make([]byte, 64<<10)
	for {
		n, err := lr.f.Read(buf)
		if n > 0 {
			data := append(lr.partial, buf[:n]...)
			for {
				i := bytes.IndexByte(data, '\n')
				if i < 0 {
					break
				}
				if l, ok := decodeLine(data[:i], opts); ok {
					out = append(out, l)
				}
				data = data[i+1:]
			}
			lr.partial = append([]byte(nil), data...)
		}
		if err != nil || n == 0 {
			return out
		}
	}
}

func appendLines(out []api.LogLine, f io.Reader, opts LogOptions) []api.LogLine {
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if l, ok := decodeLine(sc.Bytes(), opts); ok {
			out = append(out, l)
		}
	}
	return out
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
	b, err2 := os.Stat(path)
	if err1 != nil || err2 != nil {
		return false // not recreated yet: keep reading the old file
	}
	sa, ok1 := a.Sys().(*syscall.Stat_t)
	sb, ok2 := b.Sys().(*syscall.Stat_t)
	return ok1 && ok2 && sa.Ino != sb.Ino
}
