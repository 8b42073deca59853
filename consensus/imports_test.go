package consensus

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImportRules enforces DESIGN.md: consensus imports only api from Shoal.
func TestImportRules(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	const module = "github.com/shoal-org/shoal/"
	for _, f := range files {
		parsed, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range parsed.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(path, module) && path != module+"api" && !strings.HasPrefix(path, module+"consensus") {
				t.Errorf("%s imports %s; consensus may import only api", f, path)
			}
		}
	}
}
