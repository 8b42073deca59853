package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// isInitInvocation reports whether the binary was started as the container
// init: the runtime bind-mounts this binary into containers as
// /.shoal/init (or it is linked as shoal-init).
func isInitInvocation(argv0 string) bool {
	return filepath.Base(argv0) == "shoal-init" || strings.HasSuffix(argv0, "/.shoal/init")
}

// runInit runs the in-container init and returns its exit code.
func runInit(args []string) int {
	// TODO(lead): the runtime package does not build yet; once it does,
	// import "github.com/shoal-org/shoal/runtime" and replace the body with:
	//	return runtime.InitMain(args)
	fmt.Fprintf(os.Stderr, "shoal-init: not available in this build (%d args)\n", len(args))
	return 127
}
