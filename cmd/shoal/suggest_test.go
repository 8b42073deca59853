package main

import (
	"fmt"
	"path/filepath"
	"testing"
)

func TestDidYouMean(t *testing.T) {
	flags := []string{"name", "replicas", "env-add", "env-rm", "format", "host", "q", "quiet"}
	tests := []struct {
		word string
		want []string
	}{
		{"nmae", []string{"name"}},             // transposed letters
		{"formt", []string{"format"}},          // a letter dropped
		{"env", []string{"env-add", "env-rm"}}, // every flag it begins
		{"replica", []string{"replicas"}},      // begun
		{"hots", []string{"host"}},
		{"e", nil}, // a letter begins env-add and env-rm, and means neither
		{"re", []string{"replicas"}},
		{"zzzz", nil},    // nothing close
		{"publish", nil}, // a real word, far from all
		{"", nil},
	}
	for _, tt := range tests {
		if got := didYouMean(tt.word, flags); fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("didYouMean(%q) = %v, want %v", tt.word, got, tt.want)
		}
	}
}

// TestCLIUnknownNames: a mistyped command or flag is a usage error (exit
// 2) that names what was typed as the user typed it, offers the close
// names of that command, and points at that command's help. Before, a flag
// was "flag provided but not defined: -nmae", a subcommand's help hint was
// the top level's, and a global flag's hint was "See 'shoal shoal --help'".
func TestCLIUnknownNames(t *testing.T) {
	host := "unix://" + filepath.Join(t.TempDir(), "none.sock") // never reached
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"servce", "ls"}, "Error: unknown command \"servce\" (did you mean \"service\"?)\nSee 'shoal --help'.\n"},
		{[]string{"service", "lss"}, "Error: unknown command \"lss\" for \"service\" (did you mean \"ls\"?)\nSee 'shoal service --help'.\n"},
		{[]string{"node", "frobnicate"}, "Error: unknown command \"frobnicate\" for \"node\"\nSee 'shoal node --help'.\n"},
		{[]string{"service", "create", "--nmae", "x", "img"}, "Error: unknown flag: --nmae (did you mean --name?)\nSee 'shoal service create --help'.\n"},
		{[]string{"service", "update", "--env", "A=1", "web"}, "Error: unknown flag: --env (did you mean --env-add or --env-rm?)\nSee 'shoal service update --help'.\n"},
		{[]string{"node", "ls", "--formt", "json"}, "Error: unknown flag: --formt (did you mean --format?)\nSee 'shoal node ls --help'.\n"},
		{[]string{"service", "ps", "-z", "web"}, "Error: unknown flag: -z\nSee 'shoal service ps --help'.\n"},
		// --re begins a dozen flags of update (replicas, reserve-*, restart-*, rollback-*): the help, not a guess.
		{[]string{"service", "update", "--re", "x", "web"}, "Error: unknown flag: --re\nSee 'shoal service update --help'.\n"},
		{[]string{"--hots", "x", "node", "ls"}, "Error: unknown flag: --hots (did you mean --host?)\nSee 'shoal --help'.\n"},
	}
	for _, tt := range tests {
		out, errOut, code := runCLI(t, host, "", tt.args...)
		if code != 2 || out != "" || errOut != tt.want {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 and %q", tt.args, code, out, errOut, tt.want)
		}
	}
}
