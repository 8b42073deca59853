package writes

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus/fsm"
)

func TestCapText(t *testing.T) {
	const max = 32
	cut := max - len(truncatedMark) // room for the text before the mark
	for _, tt := range []struct {
		name, in, want string
	}{
		{"empty", "", ""},
		{"fits", "start container: exit status 1", "start container: exit status 1"},
		{"exactly max", strings.Repeat("a", max), strings.Repeat("a", max)},
		{"one byte over", strings.Repeat("a", max+1), strings.Repeat("a", cut) + truncatedMark},
		{"long", strings.Repeat("b", 1<<20), strings.Repeat("b", cut) + truncatedMark},
		// "é" is two bytes: a cut inside one keeps the rune whole, or drops it.
		{"rune at the cut", strings.Repeat("a", cut-1) + strings.Repeat("é", 20), strings.Repeat("a", cut-1) + truncatedMark},
		{"runes throughout", strings.Repeat("日", 40), strings.Repeat("日", cut/3) + truncatedMark},
		{"not UTF-8, fits", "a\xffb", "a\uFFFDb"},
		{"not UTF-8, long", strings.Repeat("\xff", 100), "\uFFFD"},
		{"not UTF-8 past a long text", strings.Repeat("c", 40) + "\xff", strings.Repeat("c", cut) + truncatedMark},
	} {
		got := CapText(tt.in, max)
		if got != tt.want {
			t.Errorf("%s: CapText = %q, want %q", tt.name, got, tt.want)
		}
		if len(got) > max || !utf8.ValidString(got) {
			t.Errorf("%s: %d bytes, valid UTF-8 %v", tt.name, len(got), utf8.ValidString(got))
		}
	}
	if got := CapText("too long for a tiny bound", 3); got != "" {
		t.Errorf("bound shorter than the mark: %q", got)
	}
}

// TestCapStatusText: every status of a report is bounded, in a value, a
// pointer or a batch, and the caller's report is left as it was.
func TestCapStatusText(t *testing.T) {
	big := strings.Repeat("x", 700<<10)
	statuses := func() []api.TaskStatus {
		return []api.TaskStatus{
			{TaskID: "t1", State: api.TaskRunning, Message: "started"},
			{TaskID: "t2", State: api.TaskFailed, Message: big, Error: big},
		}
	}
	check := func(name string, c fsm.TaskStatus) {
		t.Helper()
		if c.Statuses[0].Message != "started" {
			t.Errorf("%s: a short message changed: %q", name, c.Statuses[0].Message)
		}
		st := c.Statuses[1]
		if len(st.Message) > MaxStatusText || len(st.Error) > MaxStatusText || !strings.HasSuffix(st.Message, truncatedMark) {
			t.Errorf("%s: message %d bytes, error %d bytes, want at most %d", name, len(st.Message), len(st.Error), MaxStatusText)
		}
		if st.TaskID != "t2" || st.State != api.TaskFailed {
			t.Errorf("%s: the rest of the status changed: %+v", name, st)
		}
	}
	orig := fsm.TaskStatus{NodeID: "n", Statuses: statuses()}
	check("value", capStatusText(orig).(fsm.TaskStatus))
	if orig.Statuses[1].Message != big {
		t.Error("the caller's report was written to")
	}
	check("pointer", *capStatusText(&fsm.TaskStatus{NodeID: "n", Statuses: statuses()}).(*fsm.TaskStatus))
	b := capStatusText(fsm.Batch{Commands: []fsm.Command{
		fsm.SetImageNode{ImageID: "i", NodeID: "n", Present: true},
		&fsm.Batch{Commands: []fsm.Command{fsm.TaskStatus{NodeID: "n", Statuses: statuses()}}},
	}}).(fsm.Batch)
	check("nested batch", b.Commands[1].(*fsm.Batch).Commands[0].(fsm.TaskStatus))
	if _, ok := b.Commands[0].(fsm.SetImageNode); !ok {
		t.Errorf("another command of the batch changed: %#v", b.Commands[0])
	}
}
