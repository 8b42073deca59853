package joining

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/keyring"
	"github.com/shoal-org/shoal/node/pki"
)

// TestOpenCAWaitsForKEK: a leader that lacks the key-encryption key (a
// voter promoted a moment ago) pulls it and retries, bounded, instead of
// refusing the join with "only voters hold the key-encryption key".
func TestOpenCAWaitsForKEK(t *testing.T) {
	noKEK := fmt.Errorf("open the cluster CA key: %w", keyring.ErrNoKEK)
	other := errors.New("the cluster record holds no CA key")
	ca := &pki.CA{}
	for _, tc := range []struct {
		name      string
		failures  int   // CA calls that fail before the key arrives (-1: always)
		err       error // what they fail with
		pull      bool  // PullKEK set
		wantErr   error
		wantPulls int // at least
	}{
		{"key held", 0, noKEK, true, nil, 0},
		{"key arrives after two pulls", 2, noKEK, true, nil, 2},
		{"key never arrives: refused after the bound", -1, noKEK, true, keyring.ErrNoKEK, 2},
		{"another error: no wait", -1, other, true, other, 0},
		{"no PullKEK: no wait", -1, noKEK, false, keyring.ErrNoKEK, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls, pulls := 0, 0
			l := &Leader{
				Log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
				KEKWait: 600 * time.Millisecond,
				CA: func(*consensus.ClusterState) (*pki.CA, error) {
					calls++
					if tc.failures < 0 || calls <= tc.failures {
						return nil, tc.err
					}
					return ca, nil
				},
			}
			if tc.pull {
				l.PullKEK = func(context.Context, *consensus.ClusterState) error { pulls++; return nil }
			}
			start := time.Now()
			got, err := l.openCA(context.Background(), &consensus.ClusterState{})
			took := time.Since(start)
			if tc.wantErr == nil {
				if err != nil || got != ca {
					t.Fatalf("got %v, %v; want the CA", got, err)
				}
			} else if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if pulls < tc.wantPulls || (tc.wantPulls == 0 && pulls > 0) {
				t.Fatalf("%d pulls, want %d", pulls, tc.wantPulls)
			}
			if took > 5*time.Second {
				t.Fatalf("took %v: not bounded by KEKWait", took)
			}
		})
	}
}
