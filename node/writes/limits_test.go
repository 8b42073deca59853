package writes

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus/fsm/command"
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
			{TaskID: "t1", State: api.TaskRunning, Message: "started", ContainerID: strings.Repeat("ab", 32), Health: api.HealthHealthy},
			{TaskID: "t2", State: api.TaskFailed, Message: big, Error: big, ContainerID: big, Health: big},
		}
	}
	check := func(name string, c command.TaskStatus) {
		t.Helper()
		if c.Statuses[0].Message != "started" || len(c.Statuses[0].ContainerID) != 64 || c.Statuses[0].Health != api.HealthHealthy {
			t.Errorf("%s: a short message changed: %q", name, c.Statuses[0].Message)
		}
		st := c.Statuses[1]
		if len(st.Message) > MaxStatusText || len(st.Error) > MaxStatusText || !strings.HasSuffix(st.Message, truncatedMark) {
			t.Errorf("%s: message %d bytes, error %d bytes, want at most %d", name, len(st.Message), len(st.Error), MaxStatusText)
		}
		if st.ContainerID != "" || st.Health != "" {
			t.Errorf("%s: container ID of %d bytes and health of %d bytes kept", name, len(st.ContainerID), len(st.Health))
		}
		if st.TaskID != "t2" || st.State != api.TaskFailed {
			t.Errorf("%s: the rest of the status changed: %+v", name, st)
		}
	}
	orig := command.TaskStatus{NodeID: "n", Statuses: statuses()}
	check("value", capStatusText(orig).(command.TaskStatus))
	if orig.Statuses[1].Message != big {
		t.Error("the caller's report was written to")
	}
	check("pointer", *capStatusText(&command.TaskStatus{NodeID: "n", Statuses: statuses()}).(*command.TaskStatus))
	b := capStatusText(command.Batch{Commands: []command.Command{
		command.SetImageNode{ImageID: "i", NodeID: "n", Present: true},
		&command.Batch{Commands: []command.Command{command.TaskStatus{NodeID: "n", Statuses: statuses()}}},
	}}).(command.Batch)
	check("nested batch", b.Commands[1].(*command.Batch).Commands[0].(command.TaskStatus))
	if _, ok := b.Commands[0].(command.SetImageNode); !ok {
		t.Errorf("another command of the batch changed: %#v", b.Commands[0])
	}
}

// TestTokenBuckets: a bucket per key, full at first, refilled at the rate
// up to the burst; a refusal says when the next write is due and whether
// it is the first of a run; full buckets are forgotten.
func TestTokenBuckets(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	type step struct {
		at      time.Time
		key     string
		cost    float64
		ok      bool
		retryIn time.Duration // of a refusal
		first   bool          // of a refusal
	}
	for _, tt := range []struct {
		name        string
		burst, rate float64
		steps       []step
		wantBuckets int // left in the table after the last step
	}{
		{
			name: "the burst, then refused until a token is due", burst: 3, rate: 10,
			steps: []step{
				{at: ms(0), key: "a", cost: 1, ok: true},
				{at: ms(0), key: "a", cost: 1, ok: true},
				{at: ms(0), key: "a", cost: 1, ok: true},
				{at: ms(0), key: "a", cost: 1, retryIn: 100 * time.Millisecond, first: true},
				{at: ms(40), key: "a", cost: 1, retryIn: 60 * time.Millisecond},
				{at: ms(100), key: "a", cost: 1, ok: true},
				{at: ms(100), key: "a", cost: 1, retryIn: 100 * time.Millisecond, first: true},
			},
			wantBuckets: 1,
		},
		{
			name: "keys apart", burst: 1, rate: 1,
			steps: []step{
				{at: ms(0), key: "a", cost: 1, ok: true},
				{at: ms(0), key: "a", cost: 1, retryIn: time.Second, first: true},
				{at: ms(0), key: "b", cost: 1, ok: true},
			},
			wantBuckets: 2,
		},
		{
			name: "refill stops at the burst", burst: 2, rate: 10,
			steps: []step{
				{at: ms(0), key: "a", cost: 2, ok: true},
				{at: ms(10_000), key: "a", cost: 1, ok: true},
				{at: ms(10_000), key: "a", cost: 1, ok: true},
				{at: ms(10_000), key: "a", cost: 1, retryIn: 100 * time.Millisecond, first: true},
			},
			wantBuckets: 1,
		},
		{
			name: "a large write takes more, never more than the burst", burst: 10, rate: 5,
			steps: []step{
				{at: ms(0), key: "a", cost: 8, ok: true},
				{at: ms(0), key: "a", cost: 4, retryIn: 400 * time.Millisecond, first: true},
				{at: ms(0), key: "a", cost: 2, ok: true},
				{at: ms(2000), key: "a", cost: 50, ok: true}, // costs the full 10
				{at: ms(2000), key: "a", cost: 1, retryIn: 200 * time.Millisecond, first: true},
			},
			wantBuckets: 1,
		},
		{
			name: "a clock that goes back refills nothing", burst: 1, rate: 1,
			steps: []step{
				{at: ms(5000), key: "a", cost: 1, ok: true},
				{at: ms(0), key: "a", cost: 1, retryIn: time.Second, first: true},
				{at: ms(5500), key: "a", cost: 1, retryIn: 500 * time.Millisecond},
				{at: ms(6000), key: "a", cost: 1, ok: true},
			},
			wantBuckets: 1,
		},
		{
			name: "full buckets are forgotten", burst: 2, rate: 1,
			steps: []step{
				{at: ms(0), key: "a", cost: 1, ok: true},
				{at: ms(0), key: "b", cost: 1, ok: true},
				{at: ms(500), key: "b", cost: 1, ok: true},
				// a is full again at 1 s, b (empty at 500 ms) at 2.5 s.
				{at: ms(1500), key: "c", cost: 1, ok: true},
			},
			wantBuckets: 2, // b and c
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := &TokenBuckets{Burst: tt.burst, Rate: tt.rate}
			for i, s := range tt.steps {
				ok, retryIn, first := b.Take(s.key, s.at, s.cost)
				if ok != s.ok || retryIn != s.retryIn || first != s.first {
					t.Fatalf("step %d (%s at %s, cost %g): ok %v retry in %s first %v; want %v %s %v",
						i, s.key, s.at.Sub(t0), s.cost, ok, retryIn, first, s.ok, s.retryIn, s.first)
				}
			}
			if len(b.buckets) != tt.wantBuckets {
				t.Errorf("%d buckets kept, want %d", len(b.buckets), tt.wantBuckets)
			}
		})
	}
}

func TestWriteCost(t *testing.T) {
	for size, want := range map[int]float64{
		0: 1, 1: 1, WriteCostUnit: 1, WriteCostUnit + 1: 2, 1 << 20: 64, 1 << 30: NodeWriteBurst,
	} {
		if got := WriteCost(size); got != want {
			t.Errorf("WriteCost(%d) = %g, want %g", size, got, want)
		}
	}
}

// TestHonestAgentNeverThrottled: what an agent sends stays under the
// bound. Its reconciler has one status batch in flight at a time and puts
// every status that changed meanwhile into the next, so it sends at most
// as many batches a second as its containers start or end (runc's pace),
// each costing a token per 16 KiB; its image records and WireGuard key
// follow what a user does and key rotations.
func TestHonestAgentNeverThrottled(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tt := range []struct {
		name  string
		every time.Duration // one write
		size  int           // its encoded bytes
		n     int
	}{
		{"a batch a container start or end, 50 a second, for an hour", 20 * time.Millisecond, 500, 180_000},
		{"300 tasks' statuses at once, ten times a second, for an hour", 100 * time.Millisecond, 300 * 250, 36_000},
		{"an image removal per image of 200, at once", 0, 300, NodeWriteBurst},
	} {
		b := &TokenBuckets{Burst: NodeWriteBurst, Rate: NodeWriteRate}
		for i := range tt.n {
			if ok, _, _ := b.Take("n", t0.Add(time.Duration(i)*tt.every), WriteCost(tt.size)); !ok {
				t.Fatalf("%s: write %d of %g tokens refused", tt.name, i, WriteCost(tt.size))
			}
		}
	}
}
