package containerinit

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAppendLogLineMatchesEncodingJSON: the hand-written encoder writes
// what encoding/json wrote, byte for byte, for every kind of input.
func TestAppendLogLineMatchesEncodingJSON(t *testing.T) {
	at := time.Date(2026, 12, 2, 5, 6, 7, 890123000, time.FixedZone("x", 3600))
	lines := []string{"", "plain", `quote " and \ backslash`, "tab\tcr\rnl\n", "ctl \x00\x01\x1b\x7f",
		"<html>&amp;</html>", "é 日本 🐟", "bad \xff\xfe utf8 \xc3", "sep \u2028 \u2029", strings.Repeat("x", 5000)}
	for _, l := range lines {
		for _, stream := range []string{"stdout", "stderr"} {
			want, err := json.Marshal(LogLine{Time: at.UTC(), Stream: stream, Line: l})
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, '\n')
			if got := AppendLogLine(nil, at, stream, l); string(got) != string(want) {
				t.Errorf("line %q:\n got %s\nwant %s", l, got, want)
			}
		}
	}
}

// TestLogWriterBatchesAndRotates: appended lines reach the file on Flush,
// in order, and rotation still happens at a line boundary.
func TestLogWriterBatchesAndRotates(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "log")
	w := NewLogWriter(p, 1000, 3)
	now := time.Unix(0, 0)
	for i := 0; i < 50; i++ {
		w.Append("stdout", strings.Repeat("a", 40), now)
	}
	if _, err := os.Stat(p); err == nil {
		if b, _ := os.ReadFile(p); len(b) > 1000 {
			t.Fatalf("file past its size before Flush: %d", len(b))
		}
	}
	w.Flush()
	defer w.Close()
	total := 0
	for _, f := range []string{p, p + ".1", p + ".2"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(b) > 1000 {
			t.Errorf("%s: %d bytes, past the 1000 limit", f, len(b))
		}
		for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			var ll LogLine
			if err := json.Unmarshal([]byte(l), &ll); err != nil {
				t.Fatalf("%s: torn line %q: %v", f, l, err)
			}
			total++
		}
	}
	if total == 0 || total > 50 {
		t.Fatalf("%d lines kept", total)
	}
}

func BenchmarkLogWriterEmptyLines(b *testing.B) {
	w := NewLogWriter(filepath.Join(b.TempDir(), "log"), 1<<30, 1)
	defer w.Close()
	now := time.Now()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w.Append("stdout", "", now)
		if i%16384 == 16383 {
			w.Flush()
		}
	}
	w.Flush()
}
