package stack

// The stack's networks, secrets and configs on the cluster: stack deploy
// makes what compose.StackNetworks and compose.StackObjects list, stack rm
// removes them.

import (
	"context"
	"errors"
	"fmt"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/api/client"
	"github.com/shoal-org/shoal/cmd/shoal/compose"
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
func (s *commands) createStackNetworks(ctx context.Context, cl *client.Client, nets []compose.StackNetwork) error {
	for _, n := range nets {
		if _, err := cl.CreateNetwork(ctx, n.Network); err != nil {
			return fmt.Errorf("create network %s: %w", n.Name, err)
		}
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
			return fmt.Errorf("%s %s: %w", kindOf(o), o.Key, err)
		}
		objs[i].Data = b
	}
	for _, o := range objs {
		if len(o.Data) > api.MaxSecretSize {
			return fmt.Errorf("%s %s: %d bytes, at most 500 KiB allowed: nothing was created", kindOf(o), o.Key, len(o.Data))
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
func (s *commands) createStackObjects(ctx context.Context, cl *client.Client, objs []compose.StackObject) error {
	for _, o := range objs {
		var err error
		if o.Secret {
			_, err = cl.CreateSecret(ctx, objectRequest(o))
		} else {
			_, err = cl.CreateConfig(ctx, objectRequest(o))
		}
		if err != nil {
			return fmt.Errorf("create %s %s: %w", kindOf(o), o.Name, err)
		}
		fmt.Fprintf(s.Stdout, "Creating %s %s\n", kindOf(o), o.Name)
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
// does; it runs after the stack's services are gone, so none is in use by
// them. External ones carry no label and stay.
func (s *commands) removeStackObjects(ctx context.Context, cl *client.Client, stack string) error {
	var errs []error
	nets, err := cl.Networks(ctx)
	if err != nil {
		return fmt.Errorf("list networks: %w", err)
	}
	for _, n := range nets {
		if n.Labels[compose.StackLabel] != stack {
			continue
		}
		fmt.Fprintf(s.Stdout, "Removing network %s\n", n.Name)
		if err := cl.RemoveNetwork(ctx, n.ID); err != nil {
			errs = append(errs, fmt.Errorf("remove network %s: %w", n.Name, err))
		}
	}
	secrets, err := cl.Secrets(ctx)
	if err != nil {
		return fmt.Errorf("list secrets: %w", err)
	}
	for _, x := range secrets {
		if x.Labels[compose.StackLabel] != stack {
			continue
		}
		fmt.Fprintf(s.Stdout, "Removing secret %s\n", x.Name)
		if err := cl.RemoveSecret(ctx, x.ID); err != nil {
			errs = append(errs, fmt.Errorf("remove secret %s: %w", x.Name, err))
		}
	}
	configs, err := cl.Configs(ctx)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("list configs: %w", err))...)
	}
	for _, x := range configs {
		if x.Labels[compose.StackLabel] != stack {
			continue
		}
		fmt.Fprintf(s.Stdout, "Removing config %s\n", x.Name)
		if err := cl.RemoveConfig(ctx, x.ID); err != nil {
			errs = append(errs, fmt.Errorf("remove config %s: %w", x.Name, err))
		}
	}
	return errors.Join(errs...)
}
