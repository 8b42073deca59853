package handlers

import (
	"testing"

	"github.com/shoal-org/shoal/api"
)

// TestFindImage: a tag wins over an ID prefix in any order of the
// records, a full ID is found, and a prefix two records share finds none.
func TestFindImage(t *testing.T) {
	const (
		a = "sha256:aaaaaa1111111111111111111111111111111111111111111111111111111111"
		b = "sha256:aaaaaa2222222222222222222222222222222222222222222222222222222222"
		c = "sha256:cccccc3333333333333333333333333333333333333333333333333333333333"
	)
	images := []*api.Image{
		{ID: a, Tags: []string{"app:1"}},
		{ID: b},
		// A record whose ID sorts last, tagged with what looks like a's
		// prefix: the tag is what the reference names.
		{ID: c, Tags: []string{"aaaaaa1"}},
	}
	for _, tc := range []struct {
		ref, want string
	}{
		{"app:1", a},
		{"docker.io/library/app:1", a},
		{"aaaaaa1", c}, // a tag before an ID prefix
		{"aaaaaa2", b},
		{"sha256:aaaaaa2", b},
		{"aaaaaa", ""}, // a and b share it
		{"cccccc", c},
		{"ccccc", ""}, // too short to be an ID prefix
		{a, a},
		{"nothing:1", ""},
	} {
		img, ok := findImage(images, tc.ref)
		got := ""
		if ok {
			got = img.ID
		}
		if got != tc.want {
			t.Errorf("findImage(%q) = %q, want %q", tc.ref, got, tc.want)
		}
	}
}
