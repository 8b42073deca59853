package unpack

import (
	"archive/tar"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// writeBenchLayer writes a ~100 MiB uncompressed layer of mixed file sizes
// (many small files, some medium, a few large) in nested directories.
func writeBenchLayer(b *testing.B, p string) int64 {
	b.Helper()
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 4<<20)
	for i := range buf {
		buf[i] = byte(rng.IntN(256))
	}
	var total int64
	add := func(name string, size int) {
		h := &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(size), ModTime: testTime}
		if err := tw.WriteHeader(h); err != nil {
			b.Fatal(err)
		}
		if _, err := tw.Write(buf[:size]); err != nil {
			b.Fatal(err)
		}
		total += int64(size)
	}
	for d := range 50 {
		if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("usr/share/d%02d/", d), Typeflag: tar.TypeDir, Mode: 0o755, ModTime: testTime}); err != nil {
			b.Fatal(err)
		}
	}
	for i := range 5000 { // 5000 x 4 KiB ~ 20 MiB
		add(fmt.Sprintf("usr/share/d%02d/small%04d", i%50, i), 1024+rng.IntN(6144))
	}
	for i := range 200 { // 200 x ~200 KiB ~ 40 MiB
		add(fmt.Sprintf("usr/share/d%02d/medium%03d", i%50, i), 100<<10+rng.IntN(200<<10))
	}
	for i := range 10 { // 10 x 4 MiB = 40 MiB
		add(fmt.Sprintf("usr/lib/big%02d", i), 4<<20)
	}
	for i := range 500 {
		if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("usr/bin/l%03d", i), Typeflag: tar.TypeSymlink, Linkname: "../share/d00/small0000", ModTime: testTime}); err != nil {
			b.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		b.Fatal(err)
	}
	return total
}

// BenchmarkUnpack100MiB compares Unpack with GNU tar -x on the same layer and
// reports both throughputs and their ratio (unpack time / tar time). Run it
// with -benchtime 4x or more: iterations alternate which extractor goes first.
func BenchmarkUnpack100MiB(b *testing.B) {
	base := b.TempDir()
	layer := filepath.Join(base, "layer.tar")
	total := writeBenchLayer(b, layer)
	mb := float64(total) / (1 << 20)
	var unpackDur, tarDur time.Duration
	// Several alternating rounds per iteration, so that -benchtime 1x
	// (make bench) does not charge the first, cold run to one side.
	const rounds = 4
	runs := 0
	for b.Loop() {
		for r := 0; r < rounds; r++ {
			benchUnpackRound(b, layer, base, runs, &unpackDur, &tarDur)
			runs++
		}
	}
	b.ReportMetric(mb*float64(runs)/unpackDur.Seconds(), "unpack-MB/s")
	b.ReportMetric(mb*float64(runs)/tarDur.Seconds(), "tar-MB/s")
	b.ReportMetric(unpackDur.Seconds()/tarDur.Seconds(), "unpack/tar")
}

// benchUnpackRound unpacks layer once with Unpack and once with tar -x, in
// an order that alternates with i, adding each duration.
func benchUnpackRound(b *testing.B, layer, base string, i int, unpackDur, tarDur *time.Duration) {
	{
		dst := filepath.Join(base, fmt.Sprintf("u%d", i))
		tdst := filepath.Join(base, fmt.Sprintf("t%d", i))
		runU := func() {
			f, err := os.Open(layer)
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			if _, _, err := Unpack(context.Background(), f, dst, Limits{}); err != nil {
				b.Fatal(err)
			}
			*unpackDur += time.Since(start)
			f.Close()
		}
		runT := func() {
			if err := os.Mkdir(tdst, 0o755); err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			if out, err := exec.Command("tar", "-x", "-f", layer, "-C", tdst).CombinedOutput(); err != nil {
				b.Fatalf("tar -x: %v: %s", err, out)
			}
			*tarDur += time.Since(start)
		}
		// Alternate the order and flush between runs: whichever runs second
		// otherwise pays for the first one's writeback.
		unix.Sync()
		if i%2 == 1 {
			runT()
			runU()
		} else {
			runU()
			runT()
		}
		_ = os.RemoveAll(dst)
		_ = os.RemoveAll(tdst)
		unix.Sync()
	}
}
