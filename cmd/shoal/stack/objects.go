package stack

// The stack's networks, secrets and configs on the cluster: stack deploy
// makes what compose.StackNetworks and compose.StackObjects list, stack rm
// removes them.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/api/client"
	"github.com/shoal-org/shoal/cmd/shoal/compose"
	"github.com/shoal-org/shoal/cmd/shoal/shell"
)

// missingStackNetworks returns the stack's networks that do not exist, and
// refuses an external one that does not.
func (s *commands) missingStackNetworks(ctx context.Context, cl *client.Client, nets []compose.StackNetwork) ([]compose.StackNetwork, error) {
	var missing []compose.StackNetwork
	for _, n := range nets {
		_, err := cl.Network(ctx, n.Name)
		switch {
		case err == nil:
			continue
		case !client.IsNotFound(err):
			return nil, fmt.Errorf("network %s: %w", n.Name, err)
		case n.External:
			return nil, fmt.Errorf("network %s is declared external but does not exist: create it with `shoal network create`", n.Name)
		}
		missing = append(missing, n)
	}
	return missing, nil
}

// createStackNetworks creates the networks missingStackNetworks found.
func (s *commands) createStackNetworks(ctx context.Context, cl *client.Client, nets []compose.StackNetwork, made *created) error {
	for _, n := range nets {
		nw, err := cl.CreateNetwork(ctx, n.Network)
		if err != nil {
			return fmt.Errorf("create network %s: %w", n.Name, err)
		}
		made.add("networks", nw.ID, n.Name)
		fmt.Fprintf(s.Stdout, "Creating network %s\n", n.Name)
	}
	return nil
}

// readStackObjects reads the file of every secret and config the stack
// makes, so that a missing or oversized file refuses the deploy before
// anything is created.
func readStackObjects(objs []compose.StackObject) error {
	for i, o := range objs {
		if o.External || o.File == "" {
			continue
		}
		b, err := readObjectFile(o.File)
		if err != nil {
			// Name the file: ReadRegular's refusal of a directory or FIFO
			// ("not a regular file") does not, unlike an *os.PathError.
			if pe := (*os.PathError)(nil); !errors.As(err, &pe) {
				err = &os.PathError{Op: "read", Path: o.File, Err: err}
			}
			return fmt.Errorf("%s %s: %w", kindOf(o), o.Key, err)
		}
		objs[i].Data = b
	}
	for _, o := range objs {
		if len(o.Data) > api.MaxSecretSize {
			what := "its content"
			if o.File != "" {
				what = o.File
			}
			return fmt.Errorf("%s %s: %s is larger than 500 KiB (%d bytes or more): nothing was created", kindOf(o), o.Key, what, len(o.Data))
		}
	}
	return nil
}

// missingStackObjects returns the stack's secrets and configs that do not
// exist (an existing one is kept: they are immutable), and refuses an
// external one that does not.
func (s *commands) missingStackObjects(ctx context.Context, cl *client.Client, objs []compose.StackObject) ([]compose.StackObject, error) {
	var missing []compose.StackObject
	for _, o := range objs {
		var err error
		if o.Secret {
			_, err = cl.Secret(ctx, o.Name)
		} else {
			_, err = cl.Config(ctx, o.Name)
		}
		switch {
		case err == nil:
			continue
		case !client.IsNotFound(err):
			return nil, fmt.Errorf("%s %s: %w", kindOf(o), o.Name, err)
		case o.External:
			return nil, fmt.Errorf("external %s %s not found: create it first (`shoal %s create %s FILE`)", kindOf(o), o.Name, kindOf(o), o.Name)
		}
		missing = append(missing, o)
	}
	return missing, nil
}

// objectRequest is the create request of a stack's secret or config,
// labelled with its stack (which `stack rm` removes).
func objectRequest(o compose.StackObject) api.SecretCreateRequest {
	return api.SecretCreateRequest{Name: o.Name, Data: o.Data, Labels: map[string]string{compose.StackLabel: stackOf(o.Name)}}
}

// createStackObjects creates the secrets and configs missingStackObjects
// found.
func (s *commands) createStackObjects(ctx context.Context, cl *client.Client, objs []compose.StackObject, made *created) error {
	for _, o := range objs {
		var err error
		if o.Secret {
			var x *api.Secret
			if x, err = cl.CreateSecret(ctx, objectRequest(o)); err == nil {
				made.add("secrets", x.ID, o.Name)
			}
		} else {
			var x *api.Config
			if x, err = cl.CreateConfig(ctx, objectRequest(o)); err == nil {
				made.add("configs", x.ID, o.Name)
			}
		}
		if err != nil {
			return fmt.Errorf("create %s %s: %w", kindOf(o), o.Name, err)
		}
		fmt.Fprintf(s.Stdout, "Creating %s %s\n", kindOf(o), o.Name)
	}
	return nil
}

// checkUnchanged refuses a deploy whose file gives an existing secret or
// config of the stack other content under the same name, before anything
// is created: they are immutable, so keeping the stored one ran the
// services with content the file no longer has, silently (docker refuses
// it too: "only updates to Labels are allowed"). A config is compared
// here; a secret's data is never read back, so the agent compares it on
// the leader (api.SecretCreateRequest.KeepSame), writing nothing.
func checkUnchanged(ctx context.Context, cl *client.Client, objs []compose.StackObject, warn io.Writer) error {
	for _, o := range objs {
		if o.External {
			continue
		}
		var same bool
		var err error
		if o.Secret {
			if _, err = cl.Secret(ctx, o.Name); err == nil {
				_, err = cl.CreateSecret(ctx, api.SecretCreateRequest{Name: o.Name, Data: o.Data, KeepSame: true})
				var ae *client.APIError
				switch {
				case errors.As(err, &ae) && strings.Contains(ae.Message, "exists with other data"):
					same, err = false, nil
				case errors.As(err, &ae) && strings.Contains(ae.Message, "already exists"):
					// An agent or leader of an older release (a rolling
					// upgrade) cannot compare: keep it, as those did.
					fmt.Fprintf(warn, "Warning: secret %s exists and the cluster cannot compare its content (an older release): kept as it is\n", o.Name)
					same, err = true, nil
				default:
					same = err == nil
				}
			}
		} else {
			var stored *api.Config
			if stored, err = cl.Config(ctx, o.Name); err == nil {
				same = stored.Name != o.Name || bytes.Equal(stored.Data, o.Data)
			}
		}
		switch {
		case client.IsNotFound(err):
			continue
		case err != nil:
			return fmt.Errorf("%s %s: %w", kindOf(o), o.Name, err)
		case same:
			continue
		}
		from := "its content"
		if o.File != "" {
			from = "the content of " + o.File
		}
		return fmt.Errorf("%s %s (%ss.%s) exists with other content than %s, and %ss are immutable: "+
			"give the new content a new name (%ss.%s.name: %s_v2, say) or remove the %s first; nothing was changed",
			kindOf(o), o.Name, kindOf(o), o.Key, from, kindOf(o), kindOf(o), o.Key, o.Name, kindOf(o))
	}
	return nil
}

// readObjectFile reads a secret's or config's file: a regular file only
// (a FIFO would block the deploy for good, /dev/zero fill its memory), up
// to one byte more than api.MaxSecretSize, so that a huge file is refused
// instead of read.
func readObjectFile(name string) ([]byte, error) {
	return compose.ReadRegular(name, api.MaxSecretSize+1)
}

func kindOf(o compose.StackObject) string {
	if o.Secret {
		return "secret"
	}
	return "config"
}

// stackOf is the stack part of a STACK_KEY name.
func stackOf(name string) string {
	for i := 0; i < len(name); i++ {
		if name[i] == '_' {
			return name[:i]
		}
	}
	return name
}

// removeStackObjects removes the secrets, configs and networks `stack
// deploy` made for stack (labelled with its namespace), as `docker stack rm`
// does, and returns how many it found; it runs after the stack's services
// are gone, so none is in use by them. External ones carry no label and
// stay. Errors are wrapped with shell.Wrap: the agent's refusal already
// starts "remove secret NAME: used by service ...", and wrapping it again
// printed the object twice.
func (s *commands) removeStackObjects(ctx context.Context, cl *client.Client, stack string) (int, error) {
	found := 0
	var errs []error
	nets, err := cl.Networks(ctx)
	if err != nil {
		return found, fmt.Errorf("list networks: %w", err)
	}
	for _, n := range nets {
		if n.Labels[compose.StackLabel] != stack {
			continue
		}
		found++
		fmt.Fprintf(s.Stdout, "Removing network %s\n", n.Name)
		if err := cl.RemoveNetwork(ctx, n.ID); err != nil {
			errs = append(errs, shell.Wrap("remove network "+n.Name, err))
		}
	}
	secrets, err := cl.Secrets(ctx)
	if err != nil {
		return found, fmt.Errorf("list secrets: %w", err)
	}
	for _, x := range secrets {
		if x.Labels[compose.StackLabel] != stack {
			continue
		}
		found++
		fmt.Fprintf(s.Stdout, "Removing secret %s\n", x.Name)
		if err := cl.RemoveSecret(ctx, x.ID); err != nil {
			errs = append(errs, shell.Wrap("remove secret "+x.Name, err))
		}
	}
	configs, err := cl.Configs(ctx)
	if err != nil {
		return found, errors.Join(append(errs, fmt.Errorf("list configs: %w", err))...)
	}
	for _, x := range configs {
		if x.Labels[compose.StackLabel] != stack {
			continue
		}
		found++
		fmt.Fprintf(s.Stdout, "Removing config %s\n", x.Name)
		if err := cl.RemoveConfig(ctx, x.ID); err != nil {
			errs = append(errs, shell.Wrap("remove config "+x.Name, err))
		}
	}
	return found, errors.Join(errs...)
}

// created is what one deploy made (ID and name of each), so that a deploy
// the agent refuses part way (a published port another stack holds, an
// image no node has: what only the agent can tell) removes it again
// instead of leaving a stack that is half there.
type created struct {
	services, networks, secrets, configs [][2]string
}

// add records one made object of a kind (the field's name); a nil
// recorder records nothing.
func (c *created) add(kind, id, name string) {
	if c == nil {
		return
	}
	x := [2]string{id, name}
	switch kind {
	case "services":
		c.services = append(c.services, x)
	case "networks":
		c.networks = append(c.networks, x)
	case "secrets":
		c.secrets = append(c.secrets, x)
	case "configs":
		c.configs = append(c.configs, x)
	}
}

// undo removes what the deploy made, services first (the objects are in
// use until they are gone), newest first, and says so. Services the deploy
// updated or removed stay as they are now: their old specs are not
// restored.
func (s *commands) undo(ctx context.Context, cl *client.Client, made *created) error {
	var errs []error
	for i := len(made.services) - 1; i >= 0; i-- {
		x := made.services[i]
		fmt.Fprintf(s.Stdout, "Removing service %s\n", x[1])
		if err := cl.RemoveService(ctx, x[0]); err != nil {
			errs = append(errs, shell.Wrap("remove service "+x[1], err))
		}
	}
	for _, k := range []struct {
		kind string
		list [][2]string
		rm   func(context.Context, string) error
	}{
		{"network", made.networks, cl.RemoveNetwork},
		{"secret", made.secrets, cl.RemoveSecret},
		{"config", made.configs, cl.RemoveConfig},
	} {
		for i := len(k.list) - 1; i >= 0; i-- {
			x := k.list[i]
			fmt.Fprintf(s.Stdout, "Removing %s %s\n", k.kind, x[1])
			if err := k.rm(ctx, x[0]); err != nil {
				errs = append(errs, shell.Wrap("remove "+k.kind+" "+x[1], err))
			}
		}
	}
	return errors.Join(errs...)
}
