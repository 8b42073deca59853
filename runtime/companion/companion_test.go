package companion

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

// TestFindInit: Config.InitBinary's default — shoal-init next to the
// executable, else in Dir, else tini-static from PATH (fallback), else
// an error; a file that is not an executable regular file is passed over.
func TestFindInit(t *testing.T) {
	if got := Candidates("/opt/shoal/bin/shoal", InitName); !slices.Equal(got, []string{"/opt/shoal/bin/shoal-init", "/usr/lib/shoal/shoal-init"}) {
		t.Errorf("Candidates = %q", got)
	}
	if got := Candidates("", SupervisorName); !slices.Equal(got, []string{"/usr/lib/shoal/shoal-supervisor"}) {
		t.Errorf("Candidates(\"\") = %q", got)
	}
	dir := t.TempDir()
	exe, plain, sub, pkg := filepath.Join(dir, "exe", InitName), filepath.Join(dir, "plain", InitName), filepath.Join(dir, "dir", InitName), filepath.Join(dir, "pkg", InitName)
	for p, mode := range map[string]os.FileMode{exe: 0o755, plain: 0o644, pkg: 0o755} {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, nil, mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	tini := func(string) (string, error) { return "/usr/bin/tini-static", nil }
	noTini := func(string) (string, error) { return "", exec.ErrNotFound }
	for _, tt := range []struct {
		cands        []string
		look         func(string) (string, error)
		want         string
		wantFallback bool
		wantErr      bool
	}{
		{cands: []string{exe, pkg}, look: tini, want: exe},
		{cands: []string{filepath.Join(dir, "none", InitName), pkg}, look: tini, want: pkg},
		{cands: []string{plain, sub, pkg}, look: noTini, want: pkg},
		{cands: []string{plain, sub}, look: tini, want: "/usr/bin/tini-static", wantFallback: true},
		{cands: []string{plain}, look: noTini, wantFallback: true, wantErr: true},
	} {
		got, fallback, err := FindInit(tt.cands, tt.look)
		if got != tt.want || fallback != tt.wantFallback || (err != nil) != tt.wantErr {
			t.Errorf("FindInit(%q) = %q, %v, %v; want %q, %v, error %v", tt.cands, got, fallback, err, tt.want, tt.wantFallback, tt.wantErr)
		}
	}
}
