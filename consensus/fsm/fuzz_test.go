package fsm

import (
	"bytes"
	"io"
	"testing"

	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

// entrySep separates log entries in FuzzFSMLog's input. It never occurs in
// an encoded command (a type byte, a version byte and UTF-8 JSON).
const entrySep = 0xff

// FuzzFSMLog feeds a whole log of fuzzed entries to the state machine and
// checks what the replicas rely on (DESIGN.md, Consensus: the FSM is a pure
// function of the log):
//
//   - two stores applying the same entries end in the same state, with the
//     same result (error text included) for every entry: no map order, clock
//     or randomness leaks into the state;
//   - a refused command (not a batch) leaves the state exactly as it was;
//   - the final state survives a snapshot and a restore unchanged.
//
// Decoding is command.FuzzDecode's; this one applies what decodes, one
// entry or a sequence, which is where a command can meet state it does not
// expect.
func FuzzFSMLog(f *testing.F) {
	var all [][]byte
	for _, cmd := range sampleCommands() {
		data, err := command.Encode(cmd)
		if err != nil {
			f.Fatal(err)
		}
		all = append(all, data)
		f.Add(data)
	}
	f.Add(bytes.Join(all, []byte{entrySep}))
	// The same log twice: every create meets its own earlier self.
	f.Add(bytes.Join(append(append([][]byte{}, all...), all...), []byte{entrySep}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		parts := bytes.Split(data, []byte{entrySep})
		if len(parts) > 64 {
			parts = parts[:64]
		}
		a, b := newHarness(t), newHarness(t)
		idx := uint64(0)
		for _, p := range parts {
			// Decoded twice: the two replicas must not share memory.
			ca, errA := command.Decode(p)
			cb, errB := command.Decode(p)
			if (errA == nil) != (errB == nil) {
				t.Fatalf("decode is not deterministic: %v / %v", errA, errB)
			}
			if errA != nil {
				continue
			}
			idx++
			_, isBatch := ca.(command.Batch)
			before := ""
			if !isBatch {
				before = stateOf(t, a.store)
			}
			ra := a.fsm.ApplyCommand(idx, ca)
			rb := b.fsm.ApplyCommand(idx, cb)
			if errText(ra.Err) != errText(rb.Err) {
				t.Fatalf("entry %d (%T): results differ: %q / %q", idx, ca, errText(ra.Err), errText(rb.Err))
			}
			if ra.Err != nil && !isBatch {
				if after := stateOf(t, a.store); after != before {
					t.Fatalf("entry %d (%T) was refused (%v) but changed the state:\nbefore %s\nafter  %s", idx, ca, ra.Err, before, after)
				}
			}
		}
		sa, sb := stateOf(t, a.store), stateOf(t, b.store)
		if sa != sb {
			t.Fatalf("replicas diverged after %d entries:\n%s\n%s", idx, sa, sb)
		}
		var buf bytes.Buffer
		if err := consensus.WriteSnapshot(a.store, &buf); err != nil {
			t.Fatalf("snapshot: %v", err)
		}
		c := newHarness(t)
		if err := c.fsm.Restore(io.NopCloser(&buf)); err != nil {
			t.Fatalf("restore: %v", err)
		}
		if sc := stateOf(t, c.store); sc != sa {
			t.Fatalf("snapshot round trip changed the state:\n%s\n%s", sa, sc)
		}
	})
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
