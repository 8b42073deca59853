// Package logfile reads a container's stored output: the JSON-lines files
// (containerinit.LogFile and its rotated copies .1 … .N-1, oldest last)
// that the node supervisor writes and rotates in the container's log dir.
// It tails, filters by time and follows them across rotations.
//
// It exists apart from the runtime because it only reads files and needs
// of its container one answer, whether it still runs (a follower ends once
// it has exited and everything is read: the supervisor drained the output
// before reporting the exit). The files lie where a container could once
// write, so each is opened without following links, as a regular file
// (supervisor.OpenInDir), and lines longer than MaxLine are skipped.
package logfile

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/containerinit"
	"github.com/shoal-org/shoal/runtime/supervisor"
)

// Options select which log lines a Stream sends.
type Options struct {
	// Follow keeps streaming new lines until the container has exited and
	// all its output is read (or ctx ends).
	Follow bool
	// Tail limits the initial output to the last Tail lines; 0 means all.
	Tail int
	// Since drops lines older than this time; zero means no limit.
	Since time.Time
}

// MaxLine caps one stored log line; a longer line is skipped.
const MaxLine = 1 << 20

// followPoll is how often a follower looks for new output.
const followPoll = 100 * time.Millisecond

// Stream is the output of one container, from Open: what its files held
// then, and with Options.Follow what is written after.
type Stream struct {
	dir, name, path string
	opts            Options
	initial         []api.LogLine
	rd              *lineReader // the current file; nil while there is none
}

// Open reads the log files in dir (maxFiles of them at most, the current
// one included) as opts asks. The current file is opened before the
// rotated ones are read, so a rotation in between duplicates lines at
// worst rather than losing them. A rotated file that cannot be read is
// skipped and passed to warn; a current file that cannot be opened, other
// than a missing one, is an error. The caller must Send or Close the
// stream.
func Open(dir string, maxFiles int, opts Options, warn func(error)) (*Stream, error) {
	s := &Stream{dir: dir, name: containerinit.LogFile, opts: opts}
	s.path = filepath.Join(dir, s.name)
	cur, err := supervisor.OpenInDir(dir, s.name)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var initial []api.LogLine
	for i := maxFiles - 1; i >= 1; i-- {
		f, err := supervisor.OpenInDir(dir, s.name+"."+strconv.Itoa(i))
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				warn(err)
			}
			continue
		}
		initial = append(initial, (&lineReader{f: f}).readLines(opts)...)
		f.Close()
	}
	if cur != nil {
		s.rd = &lineReader{f: cur}
		initial = append(initial, s.rd.readLines(opts)...)
	}
	if opts.Tail > 0 && len(initial) > opts.Tail {
		initial = initial[len(initial)-opts.Tail:]
	}
	s.initial = initial
	return s, nil
}

// Close releases a stream that will not be sent.
func (s *Stream) Close() {
	if s.rd != nil {
		s.rd.f.Close()
	}
}

// Send sends the lines read by Open on ch, then, with Options.Follow, the
// lines written since, polling, until running reports false and the file
// is read to its end. It returns early when ctx ends or stop is closed,
// and blocks while ch is full. It closes the stream's file, not ch.
func (s *Stream) Send(ctx context.Context, stop <-chan struct{}, running func() bool, ch chan<- api.LogLine) {
	opts, rd, logDir, logName, logPath, initial := s.opts, s.rd, s.dir, s.name, s.path, s.initial
	// Whatever file is current when Send returns: the one from Open, one
	// opened later (the container had written nothing yet), or none (a
	// rotation whose new file could not be opened).
	defer func() {
		if rd != nil {
			rd.f.Close()
		}
	}()
	send := func(l api.LogLine) bool {
		select {
		case ch <- l:
			return true
		case <-ctx.Done():
			return false
		case <-stop:
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
		live := running()
		if rd == nil {
			if f, err := supervisor.OpenInDir(logDir, logName); err == nil {
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
		if !live {
			return // exited: the supervisor drained the output before reporting it
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		case <-stop:
			return
		}
	}
}

// lineReader reads whole JSON lines from a growing file, keeping a partial
// last line (at most MaxLine bytes) for the next call. A longer line is
// skipped up to its newline.
type lineReader struct {
	f        *os.File
	partial  []byte
	skipping bool // inside a line longer than MaxLine
}

func (lr *lineReader) readLines(opts Options) []api.LogLine {
	var out []api.LogLine
	buf := make([]byte, 64<<10)
	for {
		n, err := lr.f.Read(buf)
		data := buf[:max(n, 0)]
		for len(data) > 0 {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				if !lr.skipping && len(lr.partial)+len(data) <= MaxLine {
					lr.partial = append(lr.partial, data...)
				} else {
					lr.partial, lr.skipping = nil, true
				}
				break
			}
			if !lr.skipping && len(lr.partial)+i <= MaxLine {
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

func decodeLine(b []byte, opts Options) (api.LogLine, bool) {
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
