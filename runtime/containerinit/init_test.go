package containerinit

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseArgs(t *testing.T) {
	tests := []struct {
		name    string
		argv    []string
		want    Options
		wantErr bool
	}{
		{"built by Args", append([]string{InitPath}, Args(100, 2, []string{"sleep", "1"})...),
			Options{Args: []string{"sleep", "1"}, StateDir: StateDir, LogDir: LogDir, LogMaxSize: 100, LogMaxFiles: 2}, false},
		{"defaults", []string{InitPath, "--", "true"},
			Options{Args: []string{"true"}, StateDir: StateDir, LogDir: LogDir, LogMaxSize: DefaultLogMaxSize, LogMaxFiles: DefaultLogMaxFiles}, false},
		{"command keeps its own flags", []string{InitPath, "--", "ls", "--log-max-size=1"},
			Options{Args: []string{"ls", "--log-max-size=1"}, StateDir: StateDir, LogDir: LogDir, LogMaxSize: DefaultLogMaxSize, LogMaxFiles: DefaultLogMaxFiles}, false},
		{"no command", []string{InitPath, "--"}, Options{}, true},
		{"no separator", []string{InitPath, "sleep"}, Options{}, true},
		{"bad size", []string{InitPath, "--log-max-size=x", "--", "true"}, Options{}, true},
		{"unknown flag", []string{InitPath, "--nope=1", "--", "true"}, Options{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseArgs(tt.argv)
			if tt.wantErr {
				if err == nil {
					t.Fatal("want error")
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, %v", got, err)
			}
		})
	}
}

func readLog(t *testing.T, p string) []LogLine {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []LogLine
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l LogLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("bad log line %q: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

func TestLogWriterRotation(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, LogFile)
	w := NewLogWriter(p, 300, 3)
	for i := 0; i < 40; i++ {
		w.WriteLine("stdout", strings.Repeat("x", 20))
	}
	w.Close()
	files, _ := filepath.Glob(p + "*")
	if len(files) != 3 {
		t.Fatalf("files %v, want 3", files)
	}
	for _, f := range files {
		fi, _ := os.Stat(f)
		if fi.Size() > 300 {
			t.Errorf("%s is %d bytes > 300", f, fi.Size())
		}
	}
	if got := readLog(t, p+".1"); len(got) == 0 || got[0].Stream != "stdout" {
		t.Errorf("rotated file: %+v", got)
	}
}

func TestRunRecordsExitAndLogs(t *testing.T) {
	dir := t.TempDir()
	code := Run(Options{Args: []string{"/bin/sh", "-c", "echo out; echo err >&2; printf partial; exit 3"},
		StateDir: dir, LogDir: dir, LogMaxSize: 1 << 20, LogMaxFiles: 2})
	if code != 3 {
		t.Errorf("code %d", code)
	}
	st, err := ReadExit(dir)
	if err != nil || st.ExitCode != 3 {
		t.Errorf("exit file %+v %v", st, err)
	}
	got := map[string]string{}
	for _, l := range readLog(t, filepath.Join(dir, LogFile)) {
		got[l.Line] = l.Stream
	}
	want := map[string]string{"out": "stdout", "err": "stderr", "partial": "stdout"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("log %v", got)
	}
	if _, err := os.Stat(filepath.Join(dir, ReadyFile)); err != nil {
		t.Errorf("no ready file: %v", err)
	}
}

func TestRunMissingCommand(t *testing.T) {
	dir := t.TempDir()
	if code := Run(Options{Args: []string{"no-such-cmd-xyz"}, StateDir: dir, LogDir: dir}); code != 127 {
		t.Errorf("code %d, want 127", code)
	}
	if st, err := ReadExit(dir); err != nil || st.ExitCode != 127 || st.Error == "" {
		t.Errorf("exit file %+v %v", st, err)
	}
}

func TestRunForwardsSignals(t *testing.T) {
	dir := t.TempDir()
	go func() {
		for i := 0; i < 200; i++ {
			if b, _ := os.ReadFile(filepath.Join(dir, LogFile)); strings.Contains(string(b), "armed") {
				_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	code := Run(Options{Args: []string{"/bin/sh", "-c", `trap "exit 9" TERM; echo armed; while true; do sleep 0.05; done`},
		StateDir: dir, LogDir: dir})
	if code != 9 {
		t.Errorf("code %d, want 9 (SIGTERM forwarded to the trap)", code)
	}
}
