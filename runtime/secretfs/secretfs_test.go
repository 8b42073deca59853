package secretfs

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestPrepareOnTmpfs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	dir := filepath.Join(t.TempDir(), "files", "task1")
	files := []File{
		{Target: "/run/secrets/db_pass", Data: []byte("s3cret"), Mode: 0o400, UID: 999, GID: 998},
		{Target: "/etc/app.conf", Data: []byte("x=1\n"), Mode: 0o444},
	}
	mounts, err := Prepare(dir, files)
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil || st.Type != tmpfsMagic {
		t.Fatalf("%s is not a tmpfs: %v %#x", dir, err, st.Type)
	}
	if len(mounts) != 2 || mounts[0].Target != "/run/secrets/db_pass" || !strings.HasPrefix(mounts[0].Source, dir) {
		t.Fatalf("mounts %+v", mounts)
	}
	fi, err := os.Stat(mounts[0].Source)
	if err != nil {
		t.Fatal(err)
	}
	sys := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o400 || sys.Uid != 999 || sys.Gid != 998 {
		t.Fatalf("mode %v uid %d gid %d", fi.Mode(), sys.Uid, sys.Gid)
	}
	if b, _ := os.ReadFile(mounts[1].Source); string(b) != "x=1\n" {
		t.Fatalf("config content %q", b)
	}
	// Preparing again replaces the tmpfs (a retried start).
	if _, err := Prepare(dir, files[:1]); err != nil {
		t.Fatal(err)
	}
	if err := Release(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("dir left after release: %v", err)
	}
	if err := Release(dir); err != nil {
		t.Fatalf("release is not idempotent: %v", err)
	}
	if _, err := Prepare(dir, []File{{Target: "relative", Data: []byte("x")}}); err == nil {
		t.Fatal("relative target accepted")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatal("a failed prepare left its tmpfs")
	}
}
