package identity

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestNewID(t *testing.T) {
	re := regexp.MustCompile(`^[a-z2-7]{26}$`)
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		id := NewID()
		if !re.MatchString(id) {
			t.Fatalf("NewID() = %q: want 26 lowercase base32 characters", id)
		}
		if seen[id] {
			t.Fatalf("NewID() repeated %q", id)
		}
		seen[id] = true
	}
}

func TestIdentityPersists(t *testing.T) {
	dir := t.TempDir()
	id, err := LoadOrCreate(dir, "h1")
	if err != nil {
		t.Fatal(err)
	}
	if len(id.NodeID) != 26 || id.Hostname != "h1" {
		t.Fatalf("new identity %+v", id)
	}
	fi, err := os.Stat(filepath.Join(dir, "node.json"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("node.json mode %v, want 0600", fi.Mode().Perm())
	}

	again, err := LoadOrCreate(dir, "h1")
	if err != nil {
		t.Fatal(err)
	}
	if again != id {
		t.Fatalf("reloaded %+v, want %+v", again, id)
	}

	// A new hostname keeps the node ID and is remembered.
	renamed, err := LoadOrCreate(dir, "h2")
	if err != nil {
		t.Fatal(err)
	}
	if renamed.NodeID != id.NodeID || renamed.Hostname != "h2" {
		t.Fatalf("after rename %+v", renamed)
	}
	// An empty hostname keeps the stored one.
	kept, err := LoadOrCreate(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if kept.NodeID != id.NodeID || kept.Hostname != "h2" {
		t.Fatalf("with no hostname %+v", kept)
	}

	// Another data dir is another node.
	other, err := LoadOrCreate(t.TempDir(), "h1")
	if err != nil {
		t.Fatal(err)
	}
	if other.NodeID == id.NodeID {
		t.Fatal("two data dirs share a node ID")
	}
}

func TestIdentityCorrupt(t *testing.T) {
	for name, content := range map[string]string{
		"not JSON":   "{node_id",
		"empty":      "",
		"no node ID": `{"hostname":"h1"}`,
		"wrong type": `{"node_id":5}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "node.json")
			if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadOrCreate(dir, "h1")
			if err == nil || !strings.Contains(err.Error(), "corrupt node identity") || !strings.Contains(err.Error(), p) {
				t.Fatalf("err = %v, want a corrupt identity error naming %s", err, p)
			}
			// The bad file is left for a human to look at, not replaced.
			b, _ := os.ReadFile(p)
			if string(b) != content {
				t.Error("the corrupt identity file was rewritten")
			}
		})
	}
}
