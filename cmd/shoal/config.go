package main

import (
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/api/client"
)

// configCommand defines `shoal config create|ls|inspect|rm` (secret.go
// holds the shared verbs). Unlike secrets, `config inspect` shows the data.
func (s *commands) configCommand() *cli.Command {
	return objectCommand(s, objectKind[api.Config]{
		name:   "config",
		create: (*client.Client).CreateConfig,
		list:   (*client.Client).Configs,
		get:    (*client.Client).Config,
		remove: (*client.Client).RemoveConfig,
		view:   func(x api.Config) (string, string, time.Time) { return x.ID, x.Name, x.CreatedAt },
	}, "manage configs (files mounted into the tasks that use them)")
}
