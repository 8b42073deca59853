package supervisor

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/runtime/containerinit"
)

func TestLineBudget(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var b lineBudget
	if d := b.wait(t0); d != 0 {
		t.Fatalf("a fresh budget waits %v", d)
	}
	b.take(LineBurst-10, t0)
	if d := b.wait(t0); d != 0 {
		t.Fatalf("within the burst: wait %v", d)
	}
	b.take(16384, t0) // one read of empty lines overdraws
	d := b.wait(t0)
	want := time.Duration(float64(16384-10+1) / LineRate * float64(time.Second))
	if d < want-time.Millisecond || d > want+time.Millisecond {
		t.Fatalf("overdrawn: wait %v, want about %v", d, want)
	}
	if d := b.wait(t0.Add(d + time.Millisecond)); d != 0 {
		t.Fatalf("after the wait: %v more", d)
	}
	// Idle for long: back to the burst, no more.
	b.take(LineBurst, t0.Add(time.Hour))
	if d := b.wait(t0.Add(time.Hour)); d == 0 {
		t.Fatal("the burst is the most a bucket holds")
	}
	// A steady rate at LineRate never waits long: 500 lines every 10 ms.
	var s lineBudget
	now := t0
	for i := 0; i < 1000; i++ {
		if d := s.wait(now); d > 0 {
			t.Fatalf("step %d: a container at the line rate paused %v", i, d)
		}
		s.take(LineRate/100, now)
		now = now.Add(10 * time.Millisecond)
	}
}

// TestRotationsChargeTheBudget: a container whose log rotates on every
// line (a service's log options max-size=4k, max-file=100, 16 KiB lines)
// costs the supervisor a remove and 99 renames per line, some 2 ms against
// the few µs of a line without rotation: within the line budget alone it
// could keep the supervisor busy for far more than a second every second,
// under the lock every other container's output, start and exit wait on.
// So each file operation of a rotation is charged to the container's
// budget as RotationOpLines lines. Before, the two lines of this read
// cost 2 lines of budget.
func TestRotationsChargeTheBudget(t *testing.T) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	c := &supCont{lw: containerinit.NewLogWriter(filepath.Join(t.TempDir(), "log"), 4<<10, 100)}
	defer c.lw.Close()
	st := &supStream{fd: p[0], name: "stdout", c: c}
	line := strings.Repeat("x", 100) + "\n"
	for range 2 { // a first file of 4 KiB, so that the next lines rotate
		if _, err := unix.Write(p[1], []byte(strings.Repeat(line, 20))); err != nil {
			t.Fatal(err)
		}
		(&supervisor{}).readLocked(st, make([]byte, 32<<10))
	}
	long := strings.Repeat("y", 16<<10-1) + "\n"
	if _, err := unix.Write(p[1], []byte(long+long)); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	c.budget.refill(now)
	before := c.budget.tokens
	(&supervisor{}).readLocked(st, make([]byte, 32<<10))
	spent := before - c.budget.tokens
	// Two lines, each after a rotation of 100 files (a remove, 98
	// renames, the current file renamed, a new one opened).
	if want := float64(2 + 2*100*RotationOpLines); spent < want {
		t.Fatalf("a read of 2 lines that rotated the log twice spent %.0f lines of budget, want at least %.0f", spent, want)
	}
}
