package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/api/client"
	"github.com/shoal-org/shoal/cmd/shoal/output"
	"github.com/shoal-org/shoal/cmd/shoal/shell"
	"github.com/shoal-org/shoal/cmd/shoal/specflags"
)

// imageCommand defines `shoal image import|load|pull|ls|rm|inspect`.
func (s *commands) imageCommand() *cli.Command {
	return &cli.Command{
		Name:  "image",
		Usage: "manage images on this node",
		Subcommands: []*cli.Command{
			{
				Name:      "import",
				Usage:     "make a single-layer image from a rootfs tarball (FILE may be - for stdin)",
				ArgsUsage: "FILE NAME[:TAG]",
				Action:    s.imageImport,
			},
			{
				Name:  "load",
				Usage: "load images from a docker-save archive or an OCI layout tar",
				Flags: []cli.Flag{&cli.StringFlag{Name: "input", Aliases: []string{"i"}, Usage: "archive to read (default stdin)"}},
				Action: func(c *cli.Context) error {
					return s.imageLoad(c)
				},
			},
			{
				Name:      "pull",
				Usage:     "pull an image from a registry",
				ArgsUsage: "REF",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "insecure", Usage: "allow plain HTTP and unverified TLS"},
					&cli.StringFlag{Name: "username", Aliases: []string{"u"}, Usage: "registry user"},
					&cli.StringFlag{Name: "password", Aliases: []string{"p"}, Usage: "registry password"},
					&cli.BoolFlag{Name: "password-stdin", Usage: "read the password from stdin"},
				},
				Action: s.imagePull,
			},
			shell.ListCommand(s.Shell, &cli.Command{
				Name:    "ls",
				Aliases: []string{"list"},
				Usage:   "list images",
				Flags:   []cli.Flag{shell.NoTruncFlag},
			}, shell.Lister[api.Image]{
				Fetch: shell.FetchAll("images", (*client.Client).Images),
				ID:    imageID,
				Table: func(w io.Writer, ims []api.Image, r shell.ListRun) error {
					return output.RenderImages(w, ims, r.NoTrunc)
				},
			}),
			{
				Name:      "rm",
				Aliases:   []string{"remove", "rmi"},
				Usage:     "remove images",
				ArgsUsage: "REF...",
				Action:    s.imageRm,
			},
			shell.InspectCommand(s.Shell, &cli.Command{
				Name:      "inspect",
				Usage:     "show images as JSON",
				ArgsUsage: "REF...",
			}, "image", shell.GetOne((*client.Client).Image), imageID),
		},
	}
}

func (s *commands) imageImport(c *cli.Context) error {
	if err := shell.NeedArgs(c, 2, 2); err != nil {
		return err
	}
	file, ref := c.Args().Get(0), c.Args().Get(1)
	if ref == "" || strings.ContainsAny(ref, " \t") {
		return specflags.UsageErrorf("invalid image name %q", ref)
	}
	cl, err := s.Client(c)
	if err != nil {
		return err
	}
	in, err := s.OpenInputContext(c.Context, file)
	if err != nil {
		return err
	}
	defer in.Close()
	im, err := cl.ImportImage(c.Context, in, ref)
	if err != nil {
		return fmt.Errorf("import %s as %s: %w", file, ref, err)
	}
	fmt.Fprintln(s.Stdout, im.ID)
	return nil
}

func (s *commands) imageLoad(c *cli.Context) error {
	if err := shell.NeedArgs(c, 0, 0); err != nil {
		return err
	}
	file := c.String("input")
	if file == "" {
		file = "-"
	}
	cl, err := s.Client(c)
	if err != nil {
		return err
	}
	in, err := s.OpenInputContext(c.Context, file)
	if err != nil {
		return err
	}
	defer in.Close()
	ims, err := cl.LoadImages(c.Context, in)
	if err != nil {
		return fmt.Errorf("load %s: %w", file, err)
	}
	for _, im := range ims {
		if len(im.Tags) == 0 {
			fmt.Fprintf(s.Stdout, "Loaded image ID: %s\n", im.ID)
		}
		for _, t := range im.Tags {
			fmt.Fprintf(s.Stdout, "Loaded image: %s\n", t)
		}
	}
	return nil
}

func (s *commands) imagePull(c *cli.Context) error {
	if err := shell.NeedArgs(c, 1, 1); err != nil {
		return err
	}
	req := api.PullRequest{
		Ref:      c.Args().First(),
		Insecure: c.Bool("insecure"),
		Username: c.String("username"),
		Password: c.String("password"),
	}
	if c.Bool("password-stdin") {
		if req.Password != "" {
			return specflags.UsageErrorf("--password and --password-stdin are mutually exclusive")
		}
		line, err := bufio.NewReader(s.Stdin).ReadString('\n')
		if err != nil && err != io.EOF {
			return fmt.Errorf("read password from stdin: %w", err)
		}
		req.Password = strings.TrimRight(line, "\r\n")
	}
	if (req.Username == "") != (req.Password == "") {
		return specflags.UsageErrorf("--username and --password go together")
	}
	if req.Username == "" {
		// As docker does: the credentials of the docker config file.
		if ra, err := specflags.RegistryAuthFor(req.Ref); err == nil {
			req.Username, req.Password = ra.Username, ra.Password
		} else if !errors.Is(err, specflags.ErrNoRegistryAuth) && !errors.Is(err, specflags.ErrBadImageRef) {
			fmt.Fprintf(s.Stderr, "Warning: %v (pulling without credentials)\n", err)
		}
	}
	cl, err := s.Client(c)
	if err != nil {
		return err
	}
	im, err := cl.PullImage(c.Context, req)
	if err != nil {
		return shell.Wrap("pull "+req.Ref, err)
	}
	fmt.Fprintf(s.Stdout, "%s: pulled %s\n", req.Ref, im.ID)
	return nil
}

func (s *commands) imageRm(c *cli.Context) error {
	cl, err := s.Connect(c, 1, -1)
	if err != nil {
		return err
	}
	return s.EachArg(c.Args().Slice(), func(ref string) error {
		if err := cl.RemoveImage(c.Context, ref); err != nil {
			// The agent's message already names the image (and the
			// operation): "remove image bb:1: image in use".
			return err
		}
		fmt.Fprintf(s.Stdout, "Untagged: %s\n", ref)
		return nil
	})
}

// imageID is what -q prints for an image.
func imageID(i api.Image) string { return i.ID }
