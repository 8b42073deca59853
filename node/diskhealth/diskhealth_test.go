package diskhealth

import (
	"errors"
	"testing"
)

func TestAssess(t *testing.T) {
	const reserve = 256 << 20
	for _, tc := range []struct {
		name string
		r    Reading
		want string
	}{
		{"plenty", Reading{Free: 10 << 30}, ""},
		{"exactly the reserve", Reading{Free: reserve}, ""},
		{"one byte short", Reading{Free: reserve - 1}, "disk full: 255 MiB free, below the 256 MiB reserve"},
		{"full", Reading{Free: 0}, "disk full: 0 MiB free, below the 256 MiB reserve"},
		{"log write failing with room", Reading{Free: 10 << 30, LogErr: errors.New("no space left on device")}, "disk full: raft log writes fail"},
		{"log write failing and full", Reading{Free: 0, LogErr: errors.New("x")}, "disk full: raft log writes fail"},
		{"statfs failed", Reading{FreeErr: errors.New("EIO")}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Assess(tc.r, reserve); got != tc.want {
				t.Fatalf("Assess(%+v) = %q, want %q", tc.r, got, tc.want)
			}
		})
	}
}
