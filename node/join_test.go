package node

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/api/atomicfile"
	"github.com/shoal-org/shoal/node/membership"
)

func TestDedupe(t *testing.T) {
	tests := []struct {
		in   []string
		drop string
		want []string
	}{
		{nil, "", nil},
		{[]string{"a"}, "", []string{"a"}},
		{[]string{"a", "b", "a", "c", "b"}, "", []string{"a", "b", "c"}},
		{[]string{"self", "a", "self", "b"}, "self", []string{"a", "b"}},
		{[]string{"self"}, "self", nil},
		{[]string{"", "a"}, "", []string{"a"}},
	}
	for _, tt := range tests {
		if got := membership.Dedupe(tt.in, tt.drop); !slices.Equal(got, tt.want) {
			t.Errorf("dedupe(%q, %q) = %q, want %q", tt.in, tt.drop, got, tt.want)
		}
	}
}

func TestShortID(t *testing.T) {
	for in, want := range map[string]string{"": "", "abc": "abc", "abcdefghijkl": "abcdefghijkl", "abcdefghijklmnop": "abcdefghijkl"} {
		if got := api.ShortID(in); got != want {
			t.Errorf("api.ShortID(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWriteJSONFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sub", "x.json")
	if err := atomicfile.WriteJSON(p, map[string]int{"a": 1}); err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.WriteJSON(p, map[string]int{"a": 2}); err != nil {
		t.Fatal(err)
	}
	var got map[string]int
	if b, err := os.ReadFile(p); err != nil {
		t.Fatal(err)
	} else if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got["a"] != 2 {
		t.Fatalf("read back %v", got)
	}
	entries, _ := os.ReadDir(filepath.Dir(p))
	if len(entries) != 1 {
		names := []string{}
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("temp files left behind: %q", names)
	}
	raw, _ := os.ReadFile(p)
	if !json.Valid(raw) {
		t.Errorf("not JSON: %s", raw)
	}
}
