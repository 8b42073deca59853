package consensus

import (
	"testing"

	"github.com/shoal-org/shoal/api"
)

// TestForkIsApart: a fork takes writes (a dry run applies commands to it)
// that the store never sees, and the store's later writes never show in
// the fork.
func TestForkIsApart(t *testing.T) {
	s := NewStore()
	put := func(st *Store, id string) {
		t.Helper()
		w := st.BeginWrite(st.Index() + 1)
		if err := w.Insert(TableServices, &api.Service{ID: id, Name: id}); err != nil {
			t.Fatal(err)
		}
		w.Commit()
		st.Applied(w.Index())
	}
	put(s, "a")
	f := s.Fork()
	if f.ReadOnly() {
		t.Fatal("a fork is read-only")
	}
	put(f, "b")
	put(s, "c")
	names := func(st *Store) (out string) {
		for _, sv := range st.Services() {
			out += sv.Name
		}
		return out
	}
	if got := names(s); got != "ac" {
		t.Errorf("store holds %q, want ac", got)
	}
	if got := names(f); got != "ab" {
		t.Errorf("fork holds %q, want ab", got)
	}
}
