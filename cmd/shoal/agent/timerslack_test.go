package agent

import (
	"os"
	"testing"
)

func TestPickSysmon(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pid     int
		threads []thread
		want    int
		ok      bool
	}{
		{"only main", 100, []thread{{100, 5}}, 0, false},
		{"earliest start", 100, []thread{{100, 5}, {105, 9}, {102, 7}, {101, 8}}, 102, true},
		{"tie: first allocated after pid", 100, []thread{{100, 5}, {103, 6}, {101, 6}, {102, 6}}, 101, true},
		{"tie across a wrap of thread IDs", pidMax - 2, []thread{{pidMax - 2, 5}, {3, 6}, {pidMax - 1, 6}}, pidMax - 1, true},
		{"main listed last", 100, []thread{{104, 6}, {100, 5}}, 104, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := pickSysmon(tc.pid, tc.threads)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("pickSysmon = %d, %v; want %d, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

// TestThreadStart reads this test process's own main thread.
func TestThreadStart(t *testing.T) {
	if _, err := threadStart("/proc/self/stat"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, s := range []string{"1 (a) b", "12 no paren"} {
		p := dir + "/stat"
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := threadStart(p); err == nil {
			t.Fatalf("%q: no error", s)
		}
	}
	p := dir + "/stat"
	if err := os.WriteFile(p, []byte("7 (a b) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 4242 19 20"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := threadStart(p); err != nil || got != 4242 {
		t.Fatalf("threadStart = %d, %v; want 4242", got, err)
	}
}

// TestSlowSysmon sets the slack in this test process: the runtime's
// first thread after the main one gets it, the main thread keeps its own.
func TestSlowSysmon(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("writing another thread's timer slack needs CAP_SYS_NICE")
	}
	mainBefore, err := os.ReadFile("/proc/self/timerslack_ns")
	if err != nil {
		t.Fatal(err)
	}
	if err := slowSysmon(); err != nil {
		t.Fatal(err)
	}
	got := 0
	entries, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile("/proc/" + e.Name() + "/timerslack_ns")
		if err != nil {
			continue
		}
		if string(b) == "1000000\n" {
			got++
		}
	}
	if got != 1 {
		t.Fatalf("%d threads have 1 ms of slack, want 1 (sysmon)", got)
	}
	mainAfter, err := os.ReadFile("/proc/self/timerslack_ns")
	if err != nil {
		t.Fatal(err)
	}
	if string(mainAfter) != string(mainBefore) {
		t.Fatalf("main thread's slack %q, was %q", mainAfter, mainBefore)
	}
}
