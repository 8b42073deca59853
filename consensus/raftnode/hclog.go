package raftnode

import (
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
)

// slogHclog adapts hclog.Logger (what raft and raft-wal log through) to a
// *slog.Logger, so raft's lines land in the agent's log with a "component"
// attribute. Messages below the level are dropped before formatting.
type slogHclog struct {
	logger *slog.Logger
	name   string
	level  *atomic.Int32 // hclog.Level, shared by derived loggers
	args   []any
}

// newHclog returns an hclog.Logger writing to logger at or above level.
func newHclog(logger *slog.Logger, name string, level hclog.Level) hclog.Logger {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	lv := new(atomic.Int32)
	lv.Store(int32(level))
	return &slogHclog{logger: logger, name: name, level: lv}
}

func toSlogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

func (h *slogHclog) enabled(l hclog.Level) bool {
	if l == hclog.Off || l < hclog.Level(h.level.Load()) {
		return false
	}
	return h.logger.Enabled(context.Background(), toSlogLevel(l))
}

func (h *slogHclog) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.NoLevel || level == hclog.DefaultLevel {
		level = hclog.Info
	}
	if !h.enabled(level) {
		return
	}
	all := make([]any, 0, len(h.args)+len(args)+2)
	all = append(all, "component", h.name)
	all = append(all, h.args...)
	all = append(all, args...)
	h.logger.Log(context.Background(), toSlogLevel(level), msg, all...)
}

func (h *slogHclog) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *slogHclog) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *slogHclog) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *slogHclog) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *slogHclog) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }
func (h *slogHclog) IsTrace() bool                 { return h.enabled(hclog.Trace) }
func (h *slogHclog) IsDebug() bool                 { return h.enabled(hclog.Debug) }
func (h *slogHclog) IsInfo() bool                  { return h.enabled(hclog.Info) }
func (h *slogHclog) IsWarn() bool                  { return h.enabled(hclog.Warn) }
func (h *slogHclog) IsError() bool                 { return h.enabled(hclog.Error) }
func (h *slogHclog) ImpliedArgs() []any            { return h.args }
func (h *slogHclog) Name() string                  { return h.name }
func (h *slogHclog) SetLevel(l hclog.Level)        { h.level.Store(int32(l)) }
func (h *slogHclog) GetLevel() hclog.Level         { return hclog.Level(h.level.Load()) }

func (h *slogHclog) With(args ...any) hclog.Logger {
	c := *h
	c.args = append(append([]any(nil), h.args...), args...)
	return &c
}

func (h *slogHclog) Named(name string) hclog.Logger {
	c := *h
	if h.name != "" {
		name = h.name + "." + name
	}
	c.name = name
	return &c
}

func (h *slogHclog) ResetNamed(name string) hclog.Logger {
	c := *h
	c.name = name
	return &c
}

func (h *slogHclog) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

func (h *slogHclog) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return lineWriter{h}
}

// lineWriter logs each written line at Info (or at the level of a leading
// "[ERR]"/"[WARN]"/"[DEBUG]" tag, as the standard logger adapter does).
type lineWriter struct{ h *slogHclog }

func (w lineWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		s := string(line)
		level := hclog.Info
		for tag, l := range map[string]hclog.Level{"[ERR]": hclog.Error, "[ERROR]": hclog.Error,
			"[WARN]": hclog.Warn, "[DEBUG]": hclog.Debug, "[TRACE]": hclog.Trace, "[INFO]": hclog.Info} {
			if strings.HasPrefix(s, tag) {
				level, s = l, strings.TrimSpace(strings.TrimPrefix(s, tag))
				break
			}
		}
		w.h.Log(level, s)
	}
	return len(p), nil
}
