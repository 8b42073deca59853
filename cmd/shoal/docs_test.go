package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var updateDocs = flag.Bool("update-docs", false, "rewrite docs/cli.md and docs/shoal.1 from the command tree (make docs)")

// The CLI reference and the man page are generated from the command tree;
// this test fails when they are not current. `make docs` regenerates them.
func TestCLIDocsCurrent(t *testing.T) {
	md, man, err := cliDocs()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join("..", "..", "docs")
	for _, d := range []struct {
		name string
		body []byte
	}{{"cli.md", md}, {"shoal.1", man}} {
		path := filepath.Join(root, d.name)
		if *updateDocs {
			if err := os.WriteFile(path, d.body, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		have, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run `make docs`)", err)
		}
		if !bytes.Equal(have, d.body) {
			t.Errorf("docs/%s is not current: run `make docs` and commit the result", d.name)
		}
	}
}
