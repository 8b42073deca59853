package image

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckRoom(t *testing.T) {
	const mib = 1 << 20
	for _, tt := range []struct {
		name       string
		size, free int64
		wantErr    bool
		wantText   []string
	}{
		{"plenty", 10 * mib, 1 << 40, false, nil},
		{"exactly the reserve left", 10 * mib, minFreeAfterIngest + 10*mib, false, nil},
		{"one byte short", 10 * mib, minFreeAfterIngest + 10*mib - 1, true, nil},
		// A small disk: the message must say why a tiny blob is refused
		// with tens of MiB free.
		{"small disk", 371, 40 * mib, true, []string{"371 bytes", "40.0 MiB free", "/data/blobs", "256 MiB the node keeps free"}},
		{"full", 5 * mib, 0, true, []string{"0.0 MiB free"}},
	} {
		err := checkRoom(tt.size, tt.free, "/data/blobs")
		if (err != nil) != tt.wantErr {
			t.Fatalf("%s: checkRoom(%d, %d) = %v, want error %v", tt.name, tt.size, tt.free, err, tt.wantErr)
		}
		if err == nil {
			continue
		}
		if !errors.Is(err, ErrNoSpace) {
			t.Errorf("%s: %v is not ErrNoSpace", tt.name, err)
		}
		for _, w := range tt.wantText {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q lacks %q", tt.name, err, w)
			}
		}
	}
}
