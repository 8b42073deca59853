package compose

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
)

// TestComposeReferencedFilesBounded: every file a compose file names is a
// regular file of at most MaxReferencedFile bytes, else the load fails
// with the key and the file named, without reading it (a FIFO would block
// the open, /dev/zero never ends) and without hanging.
func TestComposeReferencedFilesBounded(t *testing.T) {
	// big is a valid env file past the limit: without a bound it loads.
	bigEnv := strings.Repeat("A=1\n", MaxReferencedFile/4+1)
	// deepInclude makes inc0.yml include inc1.yml ... inc(n-1).yml.
	deepInclude := func(dir string, n int) {
		for i := range n {
			body := "services:\n  s" + fmt.Sprint(i) + ":\n    image: x\n"
			if i+1 < n {
				body = fmt.Sprintf("include:\n  - inc%d.yml\n", i+1) + body
			}
			write(t, filepath.Join(dir, fmt.Sprintf("inc%d.yml", i)), body)
		}
	}
	tests := []struct {
		name    string
		compose string
		setup   func(dir string)
		want    []string // in the error
	}{
		{"env_file fifo", "services:\n  web:\n    image: x\n    env_file: pipe.env\n",
			func(dir string) { mkfifo(t, filepath.Join(dir, "pipe.env")) },
			[]string{"services.web.env_file", "pipe.env", "not a regular file"}},
		{"env_file device", "services:\n  web:\n    image: x\n    env_file: /dev/zero\n", nil,
			[]string{"services.web.env_file", "/dev/zero", "not a regular file"}},
		{"env_file too large", "services:\n  web:\n    image: x\n    env_file: big.env\n",
			func(dir string) { write(t, filepath.Join(dir, "big.env"), bigEnv) },
			[]string{"services.web.env_file", "big.env", "larger than 1048576 bytes"}},
		{"env_file of an extended service", "services:\n  web:\n    extends: {file: base.yml, service: b}\n",
			func(dir string) {
				write(t, filepath.Join(dir, "base.yml"), "services:\n  b:\n    image: x\n    env_file: pipe.env\n")
				mkfifo(t, filepath.Join(dir, "pipe.env"))
			},
			[]string{"env_file", "pipe.env", "not a regular file"}},
		{"extends fifo", "services:\n  web:\n    extends: {file: base.yml, service: b}\n",
			func(dir string) { mkfifo(t, filepath.Join(dir, "base.yml")) },
			[]string{"services.web.extends.file", "base.yml", "not a regular file"}},
		{"extends too large", "services:\n  web:\n    extends: {file: base.yml, service: b}\n",
			func(dir string) {
				write(t, filepath.Join(dir, "base.yml"), "services:\n  b:\n    image: x\n"+strings.Repeat("#\n", MaxReferencedFile/2))
			},
			[]string{"services.web.extends.file", "base.yml", "larger than"}},
		{"nested extends fifo", "services:\n  web:\n    extends: {file: base.yml, service: b}\n",
			func(dir string) {
				write(t, filepath.Join(dir, "base.yml"), "services:\n  b:\n    extends: {file: sub/more.yml, service: c}\n")
				must(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
				mkfifo(t, filepath.Join(dir, "sub", "more.yml"))
			},
			[]string{"services.b.extends.file", "more.yml", "named in", "base.yml", "not a regular file"}},
		{"include fifo", "include:\n  - inc.yml\nservices:\n  web:\n    image: x\n",
			func(dir string) { mkfifo(t, filepath.Join(dir, "inc.yml")) },
			[]string{"include[0].path", "inc.yml", "not a regular file"}},
		{"include env_file device", "include:\n  - path: inc.yml\n    env_file: /dev/zero\nservices:\n  web:\n    image: x\n",
			func(dir string) { write(t, filepath.Join(dir, "inc.yml"), "services:\n  s:\n    image: x\n") },
			[]string{"include[0].env_file", "/dev/zero", "not a regular file"}},
		{"included project's .env fifo", "include:\n  - sub/inc.yml\nservices:\n  web:\n    image: x\n",
			func(dir string) {
				must(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
				write(t, filepath.Join(dir, "sub", "inc.yml"), "services:\n  s:\n    image: x\n")
				mkfifo(t, filepath.Join(dir, "sub", ".env"))
			},
			[]string{"include[0].env_file", ".env", "not a regular file"}},
		{"path from an include env file", "include:\n  - path: inc.yml\n    env_file: inc.env\nservices:\n  web:\n    image: x\n",
			func(dir string) {
				write(t, filepath.Join(dir, "inc.env"), "NEXT=pipe.yml\n")
				write(t, filepath.Join(dir, "inc.yml"), "include:\n  - ${NEXT}\nservices:\n  s:\n    image: x\n")
				mkfifo(t, filepath.Join(dir, "pipe.yml"))
			},
			[]string{"include[0].path", "pipe.yml", "named in", "inc.yml", "not a regular file"}},
		{"include too deep", "include:\n  - inc0.yml\nservices:\n  web:\n    image: x\n",
			func(dir string) { deepInclude(dir, maxFileDepth+1) },
			[]string{"include[0].path", "more than 10 files deep"}},
		{"include cycle", "include:\n  - a.yml\nservices:\n  web:\n    image: x\n",
			func(dir string) {
				write(t, filepath.Join(dir, "a.yml"), "include:\n  - b.yml\nservices:\n  a:\n    image: x\n")
				write(t, filepath.Join(dir, "b.yml"), "include:\n  - a.yml\nservices:\n  b:\n    image: x\n")
			},
			[]string{"include cycle"}},
		{".env fifo", "services:\n  web:\n    image: x\n",
			func(dir string) { mkfifo(t, filepath.Join(dir, ".env")) },
			[]string{".env", "not a regular file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, filepath.Join(dir, "compose.yml"), tt.compose)
			if tt.setup != nil {
				tt.setup(dir)
			}
			files := readCompose(t, dir, []string{"compose.yml"})
			err := loadOrUnblock(t, dir, files)
			if err == nil {
				t.Fatal("loaded; want an error")
			}
			msg := LocateError(err, files).Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

// TestComposeReferencedFilesWithin: files within the bounds still load, a
// deep but allowed include chain too.
func TestComposeReferencedFilesWithin(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "compose.yml"), "include:\n  - inc0.yml\nservices:\n  web:\n    image: x\n    env_file: [{path: a.env}, {path: missing.env, required: false}]\n    environment: [B=2]\n")
	write(t, filepath.Join(dir, "a.env"), "A=1\nB=1\n"+strings.Repeat("#\n", MaxReferencedFile/2-8))
	for i := range maxFileDepth {
		body := "services:\n  s" + fmt.Sprint(i) + ":\n    image: x\n"
		if i+1 < maxFileDepth {
			body = fmt.Sprintf("include:\n  - inc%d.yml\n", i+1) + body
		}
		write(t, filepath.Join(dir, fmt.Sprintf("inc%d.yml", i)), body)
	}
	files := readCompose(t, dir, []string{"compose.yml"})
	p, _, err := Load(context.Background(), Input{Files: files, WorkingDir: dir, Name: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Services) != maxFileDepth+1 {
		t.Errorf("%d services, want %d", len(p.Services), maxFileDepth+1)
	}
	env := p.Services["web"].Environment
	if *env["A"] != "1" || *env["B"] != "2" {
		t.Errorf("environment %v: want A=1 from the file, B=2 from environment:", env)
	}
}

// loadOrUnblock loads files; should the load block (opening a FIFO, as it
// did before files were bounded), it fails the test and opens the FIFOs
// of dir for writing so the load ends.
func loadOrUnblock(t *testing.T, dir string, files []types.ConfigFile) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, _, err := Load(context.Background(), Input{Files: files, WorkingDir: dir, Name: "s"})
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second): // a hang, not a slow load
		t.Errorf("load blocked")
		_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode()&os.ModeNamedPipe != 0 {
				if f, err := os.OpenFile(p, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
					f.Close()
				}
			}
			return nil
		})
		return <-done
	}
}

func write(t *testing.T, path, body string) {
	t.Helper()
	must(t, os.WriteFile(path, []byte(body), 0o644))
}

func mkfifo(t *testing.T, path string) {
	t.Helper()
	must(t, syscall.Mkfifo(path, 0o644))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
