package main

import (
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shoal-org/shoal/api"
)

// configCommand defines `shoal config create|ls|inspect|rm` (secret.go
// holds the shared verbs). Unlike secrets, `config inspect` shows the data.
func (s *commands) configCommand() *cli.Command {
	return objectCommand(s, objectKind[api.Config]{
		name:   "config",
		create: (*api.Client).CreateConfig,
		list:   (*api.Client).Configs,
		get:    (*api.Client).Config,
		remove: (*api.Client).RemoveConfig,
		view:   func(x api.Config) (string, string, time.Time) { return x.ID, x.Name, x.CreatedAt },
	}, "manage configs (files mounted into the tasks that use them)")
}
