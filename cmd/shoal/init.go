package main

import (
	"path/filepath"
	"strings"

	"github.com/shoal-org/shoal/runtime"
)

// isInitInvocation reports whether the binary was started as the container
// init: the runtime starts this binary inside containers as /.shoal/init
// (or it is installed as shoal-init).
func isInitInvocation(argv0 string) bool {
	return filepath.Base(argv0) == "shoal-init" || strings.HasSuffix(argv0, "/.shoal/init")
}

// runInit runs the in-container init and returns its exit code.
func runInit(args []string) int {
	return runtime.InitMain(args)
}
