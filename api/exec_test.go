package api

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestExecFrames(t *testing.T) {
	var buf bytes.Buffer
	big := bytes.Repeat([]byte("x"), MaxExecFrame+10)
	for _, f := range []struct {
		typ byte
		p   []byte
	}{{ExecStdout, []byte("hi\n")}, {ExecStdinClose, nil}, {ExecExit, EncodeExit(-3)}, {ExecStderr, big}} {
		if err := WriteExecFrame(&buf, f.typ, f.p); err != nil {
			t.Fatal(err)
		}
	}
	want := []struct {
		typ byte
		n   int
	}{{ExecStdout, 3}, {ExecStdinClose, 0}, {ExecExit, 4}, {ExecStderr, MaxExecFrame}, {ExecStderr, 10}}
	for i, w := range want {
		typ, p, err := ReadExecFrame(&buf)
		if err != nil || typ != w.typ || len(p) != w.n {
			t.Fatalf("frame %d: %d %d bytes %v, want %d %d bytes", i, typ, len(p), err, w.typ, w.n)
		}
		if typ == ExecExit {
			if code, err := DecodeExit(p); err != nil || code != -3 {
				t.Fatalf("exit code %d %v", code, err)
			}
		}
	}
	if _, _, err := ReadExecFrame(&buf); err != io.EOF {
		t.Fatalf("at the end: %v, want EOF", err)
	}
	for name, raw := range map[string][]byte{
		"unknown type": {9, 0, 0, 0, 0},
		"too long":     {1, 0xff, 0, 0, 0},
	} {
		if _, _, err := ReadExecFrame(bytes.NewReader(raw)); !errors.Is(err, ErrBadFrame) {
			t.Errorf("%s: %v, want ErrBadFrame", name, err)
		}
	}
	if _, _, err := ReadExecFrame(bytes.NewReader([]byte{1, 0, 0, 0, 5, 'a'})); err != io.ErrUnexpectedEOF {
		t.Errorf("cut frame: %v", err)
	}
}

func FuzzReadExecFrame(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0, 2, 'h', 'i'})
	f.Add([]byte{4, 0, 0, 0, 4, 0, 80, 0, 24})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		for {
			typ, p, err := ReadExecFrame(r)
			if err != nil {
				return
			}
			if typ > ExecError || len(p) > MaxExecFrame {
				t.Fatalf("accepted type %d len %d", typ, len(p))
			}
			_, _, _ = DecodeResize(p)
			_, _ = DecodeExit(p)
		}
	})
}
