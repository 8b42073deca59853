package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/cmd/shoal/shell"
)

func TestCompletion(t *testing.T) {
	for _, tc := range []struct {
		line        string // the words typed, the last one being completed
		want, not   []string
		wantNothing bool
	}{
		{line: "", want: []string{"agent", "service", "node"}},
		{line: "ser", want: []string{"service", "stack"}}, // the shell filters by the prefix
		{line: "service ", want: []string{"create", "scale", "rollback"}, not: []string{"agent"}},
		{line: "service create --", want: []string{"--replicas", "--publish", "--host"}, not: []string{"--data-dir"}},
		{line: "agent --data-dir /x --", want: []string{"--advertise-addr", "--config"}},
		{line: "--host unix:///s.sock node ", want: []string{"ls", "inspect"}},
		{line: "-", want: []string{"--host"}},
		{line: "service ps web ", wantNothing: true},
		{line: "run alpine -- ", wantNothing: true},
	} {
		words := strings.Split(tc.line, " ")
		if tc.line == "" {
			words = []string{""}
		}
		args := append(append([]string{"shoal"}, words...), completionFlag)
		var out bytes.Buffer
		s := shell.New()
		s.Stdout = &out
		if code := run(t.Context(), s, args); code != 0 {
			t.Fatalf("%q: exit %d", tc.line, code)
		}
		got := "\n" + out.String()
		if tc.wantNothing && out.Len() != 0 {
			t.Errorf("%q: offered %q", tc.line, out.String())
		}
		for _, w := range tc.want {
			if !strings.Contains(got, "\n"+w+"\n") {
				t.Errorf("%q: %q not offered in %q", tc.line, w, out.String())
			}
		}
		for _, w := range tc.not {
			if strings.Contains(got, "\n"+w+"\n") {
				t.Errorf("%q: %q offered", tc.line, w)
			}
		}
	}
}
