package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"
)

// EnvBinary names the environment variable that points the harness at a
// prebuilt shoal binary; when it is unset the harness builds one.
const EnvBinary = "SHOAL_BIN"

// EnvAgentArgs names the environment variable whose words every agent the
// harness starts gets as extra arguments, last: for looking inside a run
// by hand (e.g. "--debug-pprof-addr 127.0.0.1:6060", reached with
// `ip netns exec NS curl`), never set by a test.
const EnvAgentArgs = "SHOAL_TEST_AGENT_ARGS"

var built struct {
	once sync.Once
	dir  string // temp dir holding a binary this process built; "" if none
	path string
	err  error
}

// Binary returns the path of the shoal binary the harness runs: $SHOAL_BIN if
// set (make build leaves shoal-init and shoal-supervisor beside it), else a
// binary built once per process with `CGO_ENABLED=0 go build` from the
// module root found above the working directory, with those two beside it. It is safe for
// concurrent use; a failed build is reported to every caller.
func Binary() (string, error) {
	if p := os.Getenv(EnvBinary); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			return "", fmt.Errorf("resolve %s=%s: %w", EnvBinary, p, err)
		}
		if _, err := os.Stat(abs); err != nil {
			return "", fmt.Errorf("%s=%s: %w", EnvBinary, p, err)
		}
		return abs, nil
	}
	built.once.Do(func() {
		built.path, built.dir, built.err = buildBinary()
	})
	return built.path, built.err
}

// RemoveBuiltBinary deletes the binary Binary built, if any. Call it from
// TestMain after m.Run; it is a no-op when $SHOAL_BIN was used.
func RemoveBuiltBinary() {
	if built.dir != "" {
		_ = os.RemoveAll(built.dir)
	}
}

// ModuleRoot returns the directory holding go.mod, searching upwards from the
// working directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory: %w", os.ErrNotExist)
		}
		dir = parent
	}
}

func buildBinary() (path, dir string, err error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", "", err
	}
	dir, err = os.MkdirTemp("", "shoal-e2e-bin-")
	if err != nil {
		return "", "", fmt.Errorf("temp dir for the shoal binary: %w", err)
	}
	path = filepath.Join(dir, "shoal")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", path, "./cmd/shoal")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		_ = os.RemoveAll(dir)
		return "", "", fmt.Errorf("build shoal in %s: %w\n%s", root, err, out)
	}
	// The container init and the supervisor's own binary, next to the
	// binary, where the agent looks first (as make build leaves them in bin/).
	for _, args := range [][]string{
		{"go", "build", "-o", filepath.Join(dir, "shoal-supervisor"), "./runtime/cmd/shoal-supervisor"},
		{"sh", filepath.Join("runtime", "init", "build.sh"), filepath.Join(dir, "shoal-init")},
	} {
		cmd = exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			_ = os.RemoveAll(dir)
			return "", "", fmt.Errorf("%s in %s: %w\n%s", args, root, err, out)
		}
	}
	return path, dir, nil
}
