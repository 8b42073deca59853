package volume

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/ocispec"
)

func TestPrepareBindSource(t *testing.T) {
	v, err := New(filepath.Join(t.TempDir(), "volumes"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Prepare([]api.Mount{{Type: api.MountBind, Source: "/nonexistent/shoal-src", Target: "/x"}})
	if !errors.Is(err, ocispec.ErrInvalidSpec) || !strings.Contains(err.Error(), "bind source /nonexistent/shoal-src does not exist") ||
		!strings.Contains(err.Error(), "target=/x") {
		t.Fatalf("missing bind source: %v", err)
	}
	release, err := v.Prepare([]api.Mount{{Type: api.MountBind, Source: t.TempDir(), Target: "/x"}, {Type: api.MountTmpfs, Target: "/t"}})
	if err != nil {
		t.Fatal(err)
	}
	release()
}
