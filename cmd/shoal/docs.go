package main

import (
	"bytes"
	"fmt"

	"github.com/shoal-org/shoal/cmd/shoal/shell"
)

// cliDocs renders the CLI reference (Markdown, docs/cli.md) and the man page
// (roff, docs/shoal.1, shipped in the Debian package) from the command
// tree, so they cannot drift from the flags. The version is left out: the
// checked-in pages must not change with every commit.
func cliDocs() (markdown, man []byte, err error) {
	app := newApp(shell.New())
	app.Version = ""
	app.Description = "Every node runs `shoal agent`; every other command talks to the agent on this " +
		"node over its unix socket (--host, $SHOAL_HOST) and works the same on any node of the cluster. " +
		"Listing and inspecting commands take --format json and -q. See docs/upgrades.md for rolling upgrades."
	md, err := app.ToMarkdown()
	if err != nil {
		return nil, nil, fmt.Errorf("markdown: %w", err)
	}
	roff, err := app.ToManWithSection(1)
	if err != nil {
		return nil, nil, fmt.Errorf("man page: %w", err)
	}
	var b bytes.Buffer
	b.WriteString("<!-- Generated from the command tree by `make docs` (cmd/shoal/docs.go); do not edit. -->\n\n")
	b.WriteString(md)
	return b.Bytes(), []byte(roff), nil
}
