package metrics

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestParseNetDev(t *testing.T) {
	const s = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0
  eth0:    1500      10    0    0    0     0          0         0      700       5    0    0    0     0       0          0
  eth1:      20       1    0    0    0     0          0         0       30       1    0    0    0     0       0          0
`
	rx, tx, ok := parseNetDev(s)
	if !ok || rx != 1520 || tx != 730 {
		t.Fatalf("got rx=%d tx=%d ok=%v, want 1520 730 true (loopback left out)", rx, tx, ok)
	}
	if _, _, ok := parseNetDev("garbage"); ok {
		t.Fatal("garbage parsed")
	}
}

// TestSinkRoutes: the go-metrics keys of raft and memberlist land in their
// histograms, in seconds; every other key is dropped.
func TestSinkRoutes(t *testing.T) {
	s := &hashiSink{
		raftCommit:  prometheus.NewHistogram(prometheus.HistogramOpts{Name: "c"}),
		raftApply:   prometheus.NewHistogram(prometheus.HistogramOpts{Name: "a"}),
		gossipProbe: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "p"}),
	}
	s.AddSample([]string{"raft", "commitTime"}, 3)
	s.AddSample([]string{"raft", "fsm", "apply"}, 1500)
	s.AddSample([]string{"memberlist", "probeNode"}, 20)
	s.AddSample([]string{"raft", "other"}, 99)
	for _, tc := range []struct {
		h   prometheus.Histogram
		sum float64
	}{{s.raftCommit, 0.003}, {s.raftApply, 1.5}, {s.gossipProbe, 0.02}} {
		var m dto.Metric
		if err := tc.h.Write(&m); err != nil {
			t.Fatal(err)
		}
		if got := m.GetHistogram(); got.GetSampleCount() != 1 || got.GetSampleSum() != tc.sum {
			t.Errorf("%s: %d samples, sum %g; want 1, %g", tc.h.Desc(), got.GetSampleCount(), got.GetSampleSum(), tc.sum)
		}
	}
}

// TestDirSize: DirFilesSize counts regular files only.
func TestDirSize(t *testing.T) {
	dir := t.TempDir()
	stat := filepath.Join(dir, "cpu.stat")
	if err := os.WriteFile(stat, []byte("usage_usec 1234\nuser_usec 1000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if got, want := DirFilesSize(dir), int64(len("usage_usec 1234\nuser_usec 1000\n")); got != want {
		t.Fatalf("DirFilesSize = %d, want %d", got, want)
	}
}
