package runtime

import (
	"path/filepath"
	"strings"

	"github.com/shoal-org/shoal/runtime/containerinit"
)

// IsInitInvocation reports whether a process started as arg0 (os.Args[0]) is
// the container init: the runtime starts the shoal binary inside containers
// as /.shoal/init, and a separately installed copy may be named shoal-init.
func IsInitInvocation(arg0 string) bool {
	return strings.HasSuffix(arg0, containerinit.InitPath) || filepath.Base(arg0) == "shoal-init"
}

// InitMain runs the container init and returns its exit code. cmd/shoal's
// main must call it first thing:
//
//	if runtime.IsInitInvocation(os.Args[0]) {
//		os.Exit(runtime.InitMain(os.Args))
//	}
func InitMain(args []string) int {
	return containerinit.Main(args)
}
