package httpapi

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
)

// FuzzSmallBodies fuzzes the other JSON bodies of the API (node update,
// scale, join): decoding never panics and fails only with 400 or 413.
func FuzzSmallBodies(f *testing.F) {
	for _, s := range []string{
		`{"availability":"drain","label_add":{"a":"b"},"label_rm":["c"]}`, `{"label_add":{"":"x"}}`,
		`{"replicas":3}`, `{"replicas":-1}`, `{"replicas":1e30}`,
		`{"token":"SHOAL-1-abc-def","addr":"10.0.0.1:2377"}`, `{"token":1}`, `{}`, `null`, ``, `{"x":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		targets := []any{&api.NodeUpdate{}, &api.ScaleRequest{}, &api.JoinRequest{}}
		for _, v := range targets {
			err := DecodeBody(httptest.NewRequest(http.MethodPost, "/v1/x", bytes.NewReader(body)), v)
			if err == nil {
				continue
			}
			var he *Error
			if !errors.As(err, &he) || (he.Status != http.StatusBadRequest && he.Status != http.StatusRequestEntityTooLarge) {
				t.Fatalf("%T: decode error %v is not a 400/413", v, err)
			}
			if !strings.Contains(he.Msg, "body") {
				t.Fatalf("%T: error %q does not say the body is at fault", v, he.Msg)
			}
		}
	})
}
