package logstore

// The torture test runs the log store in a child process (this test binary,
// re-executed) that does what raft does to a log — appends, tail
// truncations followed by different entries at the same indexes, head
// compactions, snapshot installs — and reports every operation on a pipe
// before ("B …") and after ("K") it returns. The parent SIGKILLs the child at
// a random moment, reopens the file and checks that it holds exactly the log
// of the acknowledged operations, or that plus the one in flight (each
// operation is one transaction): no acknowledged entry lost, nothing past a
// truncation back.

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

const (
	tortureEnvPath = "SHOAL_LOGSTORE_TORTURE_PATH"
	tortureEnvSeed = "SHOAL_LOGSTORE_TORTURE_SEED"
)

// tortureData is the content of entry (index, term): the parent recomputes
// it to check every byte that comes back.
func tortureData(index, term uint64) []byte {
	n := int((index*31 + term*17) % 700)
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(index + term + uint64(i))
	}
	return b
}

// tortureLog is the parent's model: index → term, contiguous first..last.
type tortureLog map[uint64]uint64

func (m tortureLog) clone() tortureLog {
	c := make(tortureLog, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// apply applies one reported operation: "A first last term" or "D min max".
func (m tortureLog) apply(op []string) error {
	nums := make([]uint64, len(op)-1)
	for i, f := range op[1:] {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return err
		}
		nums[i] = v
	}
	switch op[0] {
	case "A":
		for i := nums[0]; i <= nums[1]; i++ {
			m[i] = nums[2]
		}
	case "D":
		for i := nums[0]; i <= nums[1]; i++ {
			delete(m, i)
		}
	default:
		return fmt.Errorf("unknown op %q", op)
	}
	return nil
}

// diff describes how the store differs from the model ("" when equal).
func (m tortureLog) diff(s *LogStore) string {
	first, _ := s.FirstIndex()
	last, _ := s.LastIndex()
	count := uint64(0)
	if first != 0 {
		count = last - first + 1
	}
	if int(count) != len(m) {
		return fmt.Sprintf("store holds %d..%d, model has %d entries", first, last, len(m))
	}
	var l raft.Log
	for i := first; i <= last && first != 0; i++ {
		term, ok := m[i]
		if !ok {
			return fmt.Sprintf("store has %d, model does not", i)
		}
		if err := s.GetLog(i, &l); err != nil {
			return fmt.Sprintf("entry %d: %v", i, err)
		}
		if l.Term != term || !bytes.Equal(l.Data, tortureData(i, term)) {
			return fmt.Sprintf("entry %d: term %d, want %d (or its data differs)", i, l.Term, term)
		}
	}
	return ""
}

// tortureChild is the writer: it never returns normally before being killed
// unless it runs out of operations.
func tortureChild(path string, seed int64) {
	out := os.NewFile(3, "report")
	w := bufio.NewWriter(out)
	report := func(format string, args ...any) {
		fmt.Fprintf(w, format+"\n", args...)
		_ = w.Flush()
	}
	s, err := OpenLogStore(path)
	if err != nil {
		report("E %v", err)
		os.Exit(1)
	}
	rng := rand.New(rand.NewSource(seed))
	first, _ := s.FirstIndex()
	last, _ := s.LastIndex()
	term := uint64(1)
	if last != 0 {
		var l raft.Log
		if err := s.GetLog(last, &l); err != nil {
			report("E %v", err)
			os.Exit(1)
		}
		term = l.Term
	}
	next := last + 1
	for op := 0; op < 5000; op++ {
		r := rng.Float64()
		switch {
		case r < 0.15 && last > first && first != 0:
			// Tail truncation: a new leader overwrites entries we could not commit.
			from := last - uint64(rng.Intn(int(min(last-first, 30)))+1) + 1
			report("B D %d %d", from, last)
			if err := s.DeleteRange(from, last); err != nil {
				report("E %v", err)
				os.Exit(1)
			}
			report("K")
			last, next = from-1, from
			term++
		case r < 0.22 && last > first && first != 0:
			// Head compaction after a snapshot.
			to := first + uint64(rng.Intn(int(last-first)))
			report("B D %d %d", first, to)
			if err := s.DeleteRange(first, to); err != nil {
				report("E %v", err)
				os.Exit(1)
			}
			report("K")
			first = to + 1
		case r < 0.25 && first != 0:
			// Snapshot install: everything goes, the log restarts higher up.
			report("B D %d %d", first, last)
			if err := s.DeleteRange(first, last); err != nil {
				report("E %v", err)
				os.Exit(1)
			}
			report("K")
			next = last + uint64(rng.Intn(1000)) + 2
			first, last = 0, 0
			term++
		default:
			n := uint64(rng.Intn(64) + 1)
			logs := make([]*raft.Log, 0, n)
			for i := next; i < next+n; i++ {
				logs = append(logs, &raft.Log{Index: i, Term: term, Type: raft.LogCommand, Data: tortureData(i, term)})
			}
			report("B A %d %d %d", next, next+n-1, term)
			if err := s.StoreLogs(logs); err != nil {
				report("E %v", err)
				os.Exit(1)
			}
			report("K")
			if first == 0 {
				first = next
			}
			last = next + n - 1
			next = last + 1
		}
	}
	_ = s.Close()
	os.Exit(0)
}

func TestLogStoreTortureKill9(t *testing.T) {
	if path := os.Getenv(tortureEnvPath); path != "" {
		seed, _ := strconv.ParseInt(os.Getenv(tortureEnvSeed), 10, 64)
		tortureChild(path, seed)
		return
	}
	if testing.Short() {
		t.Skip("spawns writer processes")
	}
	path := filepath.Join(t.TempDir(), "raft.db")
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewSource(seed))
	model := tortureLog{}
	deadline := time.Now().Add(4 * time.Second)
	rounds, kills, acked := 0, 0, 0
	for rounds < 12 && (rounds < 3 || time.Now().Before(deadline)) {
		rounds++
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestLogStoreTortureKill9$")
		cmd.Env = append(os.Environ(), tortureEnvPath+"="+path, fmt.Sprintf("%s=%d", tortureEnvSeed, rng.Int63()))
		cmd.ExtraFiles = []*os.File{pw}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pw.Close()
		// Kill after a random number of acknowledged operations, right as
		// the next one is under way (or at once).
		killAfter := rng.Intn(150)
		var pending []string
		sc := bufio.NewScanner(pr)
		n := 0
		killed := false
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch f[0] {
			case "B":
				pending = f[1:]
				if n >= killAfter && !killed {
					_ = cmd.Process.Signal(syscall.SIGKILL)
					killed = true
				}
			case "K":
				if err := model.apply(pending); err != nil {
					t.Fatal(err)
				}
				pending = nil
				n++
				acked++
			case "E":
				t.Fatalf("child: %s", sc.Text())
			}
		}
		pr.Close()
		_ = cmd.Wait()
		if killed {
			kills++
		}
		// Reopen: the log is the acknowledged one, or that plus the
		// operation in flight.
		s, err := OpenLogStore(path)
		if err != nil {
			t.Fatalf("round %d: reopen after kill: %v", rounds, err)
		}
		if err := probeLogStore(s, 0); err != nil {
			t.Fatalf("round %d: %v", rounds, err)
		}
		d := model.diff(s)
		if d != "" && pending != nil {
			with := model.clone()
			if err := with.apply(pending); err != nil {
				t.Fatal(err)
			}
			if d2 := with.diff(s); d2 == "" {
				model, d = with, ""
			} else {
				d = fmt.Sprintf("%s; with the in-flight %v applied: %s", d, pending, d2)
			}
		}
		_ = s.Close()
		if d != "" {
			t.Fatalf("round %d (after %d acknowledged ops, in flight %v): %s", rounds, n, pending, d)
		}
	}
	t.Logf("%d rounds, %d kills, %d acknowledged operations, %d entries at the end", rounds, kills, acked, len(model))
}
