package shell

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestWrap(t *testing.T) {
	for _, tc := range []struct {
		ctx, err, want string
	}{
		{"remove secret db", "remove secret db: used by service app: already in use", "remove secret db: used by service app: already in use"},
		{"remove secret db", "secret db: not found", "remove secret db: secret db: not found"},
		{"create service web", "create service webby: exists", "create service web: create service webby: exists"},
		{"create service web", "create service web", "create service web: create service web"},
	} {
		if got := Wrap(tc.ctx, errors.New(tc.err)).Error(); got != tc.want {
			t.Errorf("Wrap(%q, %q) = %q, want %q", tc.ctx, tc.err, got, tc.want)
		}
	}
	if Wrap("x", nil) != nil {
		t.Error("Wrap of nil is not nil")
	}
	base := errors.New("base")
	if !errors.Is(Wrap("x", base), base) {
		t.Error("Wrap does not keep the error chain")
	}
}

// TestOpenInputError: a missing file is named once ("open F: no such file
// or directory"), not "open F: open F: ...".
func TestOpenInputError(t *testing.T) {
	name := filepath.Join(t.TempDir(), "missing")
	_, err := (&Shell{}).OpenInput(name)
	if err == nil || err.Error() != "open "+name+": no such file or directory" || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("OpenInput(missing) = %v", err)
	}
}
