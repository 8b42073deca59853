package consensus

import (
	"fmt"
	"testing"
)

// putCluster stores c as the cluster record of s, as the FSM's writes do.
func putCluster(t testing.TB, s *Store, index uint64, c *ClusterState) {
	t.Helper()
	w := s.BeginWrite(index)
	if err := w.PutCluster(c); err != nil {
		w.Abort()
		t.Fatal(err)
	}
	w.Commit()
	s.Applied(index)
}

// TestStoreIsRevoked: the store answers from the record as of the last
// write, from a snapshot as of the snapshot, and nothing is revoked
// before bootstrap or for an empty serial.
func TestStoreIsRevoked(t *testing.T) {
	s := NewStore()
	if s.IsRevoked("a") {
		t.Fatal("revoked before bootstrap")
	}
	putCluster(t, s, 1, &ClusterState{ClusterID: "c", Revoked: []string{"a", "b"}})
	snap := s.Snapshot()
	if !s.IsRevoked("a") || !s.IsRevoked("b") || s.IsRevoked("c") || s.IsRevoked("") {
		t.Fatal("wrong answers from the first record")
	}
	putCluster(t, s, 2, &ClusterState{ClusterID: "c", Revoked: []string{"b", "c"}})
	if s.IsRevoked("a") || !s.IsRevoked("b") || !s.IsRevoked("c") {
		t.Fatal("the store answers from a record it replaced")
	}
	if !snap.IsRevoked("a") || snap.IsRevoked("c") {
		t.Fatal("a snapshot answers from a record written after it")
	}
}

// BenchmarkStoreIsRevoked is the lookup every TLS handshake on the cluster
// port makes (pki.Source's isRevoked), for a serial that is not revoked,
// the usual case, against lists of several lengths.
func BenchmarkStoreIsRevoked(b *testing.B) {
	for _, n := range []int{10, 1000, 20000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			s := NewStore()
			c := &ClusterState{ClusterID: "c"}
			for i := range n {
				c.Revoked = append(c.Revoked, fmt.Sprintf("%032x", i+1))
			}
			putCluster(b, s, 1, c)
			b.ResetTimer()
			for range b.N {
				if s.IsRevoked("ffffffffffffffffffffffffffffffff") {
					b.Fatal("revoked")
				}
			}
		})
	}
}
