package specflags

// Registry credentials of the CLI user, for `--with-registry-auth` and for
// `image pull` without -u: read as docker reads them, from the docker config
// file ($DOCKER_CONFIG/config.json or ~/.docker/config.json, credential
// helpers included). They travel in the clear only to the local agent (a
// root-only socket); the leader seals them before they reach the Raft log.

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/urfave/cli/v2"

	"github.com/shoal-org/shoal/api"
)

// ErrNoRegistryAuth: the docker config file has no credentials for the
// registry of an image.
var ErrNoRegistryAuth = errors.New("no registry credentials")

// ErrBadImageRef: an image reference names no registry repository.
var ErrBadImageRef = errors.New("invalid image reference")

// WithRegistryAuthFlag is the flag of `service create|update` and `stack
// deploy`.
func WithRegistryAuthFlag() cli.Flag {
	return &cli.BoolFlag{Name: "with-registry-auth", Usage: "send the registry credentials of the docker config file ($DOCKER_CONFIG or ~/.docker/config.json) to the nodes, sealed, so they can pull a private image"}
}

// RegistryAuthFor returns the credentials the docker config file holds
// for the registry of image ref; ErrNoRegistryAuth when it has none.
func RegistryAuthFor(ref string) (*api.RegistryAuth, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrBadImageRef, ref, err)
	}
	reg := r.Context().Registry
	auth, err := authn.DefaultKeychain.Resolve(reg)
	if err != nil {
		return nil, fmt.Errorf("read the docker config file: %w", err)
	}
	cfg, err := auth.Authorization()
	if err != nil {
		return nil, fmt.Errorf("registry credentials for %s: %w", reg.RegistryStr(), err)
	}
	user, pass := cfg.Username, cfg.Password
	if user == "" && cfg.Auth != "" {
		raw, err := base64.StdEncoding.DecodeString(cfg.Auth)
		if err != nil {
			return nil, fmt.Errorf("registry credentials for %s: the auth entry is not base64: %w", reg.RegistryStr(), err)
		}
		user, pass, _ = strings.Cut(string(raw), ":")
	}
	if user == "" || pass == "" {
		if cfg.IdentityToken != "" || cfg.RegistryToken != "" {
			return nil, fmt.Errorf("registry credentials for %s: only a username and password can be sent (the docker config file holds a token)", reg.RegistryStr())
		}
		return nil, fmt.Errorf("%w for %s in the docker config file ($DOCKER_CONFIG/config.json or ~/.docker/config.json; `docker login %s` writes them)",
			ErrNoRegistryAuth, reg.RegistryStr(), reg.RegistryStr())
	}
	return &api.RegistryAuth{Registry: reg.RegistryStr(), Username: user, Password: pass}, nil
}

// ApplyRegistryAuth sets spec's registry credentials when
// --with-registry-auth is given. Without it a spec keeps what it has (an
// update keeps the service's sealed credentials, as docker does).
func ApplyRegistryAuth(c *cli.Context, spec *api.ServiceSpec) error {
	if !c.Bool("with-registry-auth") {
		return nil
	}
	ra, err := RegistryAuthFor(spec.Image)
	if err != nil {
		return SpecError("with-registry-auth", err)
	}
	spec.RegistryAuth = ra
	return nil
}
