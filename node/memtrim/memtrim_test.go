package memtrim

import (
	"context"
	"io"
	"log/slog"
	"reflect"
	"testing"
	"time"
)

const smapsSample = `00400000-01098000 r-xp 00000000 fd:01 1234 /usr/bin/shoal
Size:              13008 kB
Rss:               12192 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me
01098000-01dec000 r--p 00c98000 fd:01 1234 /usr/bin/shoal
Size:              13648 kB
Anonymous:             0 kB
01dec000-01e6e000 rw-p 019ec000 fd:01 1234 /usr/bin/shoal
Anonymous:           420 kB
02000000-02001000 r--p 01a00000 fd:01 1234 /usr/bin/shoal
Anonymous:             4 kB
7f0000000000-7f0000100000 r--p 00000000 fd:01 99 /usr/lib/other.so
Anonymous:             0 kB
7f0000200000-7f0000300000 rw-p 00000000 00:00 0
Anonymous:          1024 kB
7ffd1000-7ffd3000 r-xp 00000000 00:00 0                          [vdso]
Anonymous:             0 kB
`

func TestPlan(t *testing.T) {
	for _, c := range []struct {
		name, smaps, exe string
		want             []Range
	}{
		{"text and rodata, not data, not a relocated page, not another file", smapsSample, "/usr/bin/shoal",
			[]Range{{0x400000, 0x1098000}, {0x1098000, 0x1dec000}}},
		{"another binary's name matches nothing", smapsSample, "/usr/bin/shoa", nil},
		{"a replaced binary (deleted) with spaces in its path",
			"00400000-00500000 r-xp 00000000 fd:01 7 /opt/my dir/shoal (deleted)\nAnonymous: 0 kB\n" +
				"00500000-00600000 r-xp 00000000 fd:01 8 /opt/my dir/shoal\nAnonymous: 0 kB\n",
			"/opt/my dir/shoal (deleted)", []Range{{0x400000, 0x500000}}},
		{"the last mapping counts too", "00400000-00500000 r--p 00000000 fd:01 7 /bin/x\nAnonymous: 0 kB", "/bin/x", []Range{{0x400000, 0x500000}}},
		{"no Anonymous line: nothing says it is clean", "00400000-00500000 r--p 00000000 fd:01 7 /bin/x\nRss: 4 kB\n", "/bin/x", nil},
		{"empty", "", "/bin/x", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := Plan(c.smaps, c.exe)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("Plan = %#v, want %#v", got, c.want)
			}
		})
	}
}

func TestPlanRejectsGarbage(t *testing.T) {
	if _, err := Plan("zzzz-0040 r-xp 0 fd:01 7 /bin/x\n", "/bin/x"); err == nil {
		t.Fatal("Plan accepted a mapping line with a bad address")
	}
	if _, err := Plan("00400000-00500000 r--p 00000000 fd:01 7 /bin/x\nAnonymous: many kB\n", "/bin/x"); err == nil {
		t.Fatal("Plan accepted a bad Anonymous line")
	}
}

// TestTrimThisProcess drops the test binary's own resident code and
// read-only data, then keeps running: the file pages come back on use.
func TestTrimThisProcess(t *testing.T) {
	res, err := Trim()
	if err != nil {
		t.Fatal(err)
	}
	if res.Ranges == 0 || res.Bytes == 0 {
		t.Fatalf("Trim found nothing to drop: %+v", res)
	}
	if res.RSSAfter >= res.RSSBefore {
		t.Fatalf("RssFile did not fall: %d -> %d bytes", res.RSSBefore, res.RSSAfter)
	}
	t.Logf("RssFile %d KiB -> %d KiB (%d ranges, %d KiB mapped)", res.RSSBefore>>10, res.RSSAfter>>10, res.Ranges, res.Bytes>>10)
	// Code and data of the binary still work: a second plan reads them.
	if res2, err := Trim(); err != nil || res2.Ranges != res.Ranges {
		t.Fatalf("second Trim: %+v, %v", res2, err)
	}
}

func TestLoopStopsOnContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Loop(ctx, time.Millisecond, time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Loop did not stop on its context")
	}
}
