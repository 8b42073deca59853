// Package test holds Shoal's end-to-end tests and benchmarks: real agents,
// one per network namespace, driven only through the CLI (DESIGN.md, Tests).
// They need root, ip, nft, nsenter and runc, and skip otherwise. Run them
// with `go test ./test/` (tests) or `go test -run '^$' -bench . ./test/`
// (benchmarks); set SHOAL_BIN to test a prebuilt binary.
package test

import (
	"os"
	"testing"

	"github.com/shoal-org/shoal/test/harness"
)

func TestMain(m *testing.M) {
	code := m.Run()
	harness.RemoveBuiltBinary()
	os.Exit(code)
}
