package command

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// goldenEntries holds the log entry of every sample command, one a line:
// type byte, version byte, JSON body. Raft logs written by released
// binaries hold such bytes. A new command type appends its line; a line
// changes only when a type its command carries gains a field (entries
// already in logs decode it as zero). Any other change of a body needs a
// new version, and the old one keeps decoding (README.md).
const goldenEntries = "testdata/entries.golden"

// TestEntriesGolden pins the bytes of every command's entry, so that moving
// or refactoring the codec cannot change what replicas write, and checks
// that the recorded entries still decode to the commands they encoded, as
// the replay of an existing log needs.
func TestEntriesGolden(t *testing.T) {
	want := readGolden(t)
	for _, cmd := range sampleCommands() {
		got, err := Encode(cmd)
		if err != nil {
			t.Fatalf("encode %T: %v", cmd, err)
		}
		line := fmt.Sprintf("%d %d %s", got[0], got[1], got[2:])
		w, ok := want[cmd.Type()]
		if !ok {
			t.Errorf("command type %d (%T) has no line in %s; append:\n%s", cmd.Type(), cmd, goldenEntries, line)
			continue
		}
		if !bytes.Equal(got, w) {
			t.Errorf("command type %d (%T) encodes differently from %s:\n got %s\nwant %d %d %s", cmd.Type(), cmd, goldenEntries, line, w[0], w[1], w[2:])
		}
		dec, err := Decode(w)
		if err != nil {
			t.Errorf("recorded entry of type %d no longer decodes: %v", cmd.Type(), err)
		} else if !reflect.DeepEqual(dec, cmd) {
			t.Errorf("recorded entry of type %d decodes to\n%#v\nnot\n%#v", cmd.Type(), dec, cmd)
		}
	}
}

// readGolden parses goldenEntries into entries by type.
func readGolden(t *testing.T) map[Type][]byte {
	t.Helper()
	f, err := os.Open(goldenEntries)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[Type][]byte{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		typ, rest, ok1 := strings.Cut(sc.Text(), " ")
		ver, body, ok2 := strings.Cut(rest, " ")
		ty, err1 := strconv.ParseUint(typ, 10, 8)
		v, err2 := strconv.ParseUint(ver, 10, 8)
		if !ok1 || !ok2 || err1 != nil || err2 != nil {
			t.Fatalf("%s:%d: want TYPE VERSION BODY", goldenEntries, n)
		}
		if _, dup := out[Type(ty)]; dup {
			t.Fatalf("%s:%d: type %d twice", goldenEntries, n, ty)
		}
		out[Type(ty)] = append([]byte{byte(ty), byte(v)}, body...)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
