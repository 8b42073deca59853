package cgstats

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestReadCgroupStats reads the layouts a host may have, from fake trees.
func TestReadCgroupStats(t *testing.T) {
	const rel = "shoal-n1/c1"
	write := func(t *testing.T, root, path, data string) {
		t.Helper()
		p := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name  string
		files map[string]string
		want  Stats
		err   error
	}{
		{"v1 split controllers (this platform)", map[string]string{
			"cpuacct/" + rel + "/cpuacct.usage":        "123456789\n",
			"memory/" + rel + "/memory.usage_in_bytes": "10000000\n",
			"memory/" + rel + "/memory.stat":           "cache 5\ntotal_inactive_file 2000000\nbogus\n",
		}, Stats{CPUNanos: 123456789, MemoryBytes: 8000000, MemoryUsageBytes: 10000000, HasCPU: true, HasMemory: true}, nil},
		{"v1 co-mounted cpu,cpuacct", map[string]string{
			"cpu,cpuacct/" + rel + "/cpuacct.usage":    "42\n",
			"memory/" + rel + "/memory.usage_in_bytes": "100\n",
		}, Stats{CPUNanos: 42, MemoryBytes: 100, MemoryUsageBytes: 100, HasCPU: true, HasMemory: true}, nil},
		{"pure v2", map[string]string{
			rel + "/cpu.stat":       "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
			rel + "/memory.current": "4096\n",
			rel + "/memory.stat":    "anon 4096\ninactive_file 1024\n",
		}, Stats{CPUNanos: 1500000, MemoryBytes: 3072, MemoryUsageBytes: 4096, HasCPU: true, HasMemory: true}, nil},
		{"inactive above usage floors at 0", map[string]string{
			"cpuacct/" + rel + "/cpuacct.usage":        "1\n",
			"memory/" + rel + "/memory.usage_in_bytes": "10\n",
			"memory/" + rel + "/memory.stat":           "total_inactive_file 20\n",
		}, Stats{CPUNanos: 1, MemoryUsageBytes: 10, HasCPU: true, HasMemory: true}, nil},
		{"cpu only", map[string]string{
			"cpuacct/" + rel + "/cpuacct.usage": "7\n",
		}, Stats{CPUNanos: 7, HasCPU: true}, nil},
		{"nothing", map[string]string{"cpuacct/other/cpuacct.usage": "1"}, Stats{}, ErrNoStats},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for p, d := range tc.files {
				write(t, root, p, d)
			}
			got, err := Read(root, rel)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
