package specflags

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// dockerConfig points the docker config file at a temp dir holding cfg.
func dockerConfig(t *testing.T, cfg string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", t.TempDir()) // no ~/.docker/config.json of the machine
	t.Setenv("DOCKER_CONFIG", dir)
}

func TestRegistryAuthFor(t *testing.T) {
	auth := base64.StdEncoding.EncodeToString([]byte("alice:s3cret:with-colon"))
	dockerConfig(t, `{"auths": {"10.1.2.3:5000": {"auth": "`+auth+`"}, "other.example": {"username": "bob", "password": "pw"}}}`)
	for _, tc := range []struct {
		ref, reg, user, pass string
		err                  error
	}{
		{ref: "10.1.2.3:5000/team/app:1", reg: "10.1.2.3:5000", user: "alice", pass: "s3cret:with-colon"},
		{ref: "other.example/app", reg: "other.example", user: "bob", pass: "pw"},
		{ref: "nobody.example/app:1", err: ErrNoRegistryAuth},
		{ref: "busybox", err: ErrNoRegistryAuth},
		{ref: "UPPER/case::", err: ErrBadImageRef},
	} {
		ra, err := RegistryAuthFor(tc.ref)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("%s: want %v, got %+v %v", tc.ref, tc.err, ra, err)
			}
			continue
		}
		if err != nil || ra.Registry != tc.reg || ra.Username != tc.user || ra.Password != tc.pass {
			t.Errorf("%s: got %+v %v", tc.ref, ra, err)
		}
	}
}
