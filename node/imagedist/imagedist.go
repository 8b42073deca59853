package node

// Image distribution and remote logs over the cluster port. A node that must
// run an image it lacks asks the cluster record which nodes hold it, fetches
// the image descriptor from one of them, then only the blobs it is missing;
// the image store verifies every digest on ingest. Images that came from a
// registry are pulled from it instead when no peer has them.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/wire"
	"github.com/shoal-org/shoal/runtime"
	"github.com/shoal-org/shoal/runtime/image"
)

type runtimeLogOptions = runtime.LogOptions

func (a *Agent) serveBlobRPC(ctx context.Context, call *rpcCall) {
	var req wire.BlobRequest
	if err := json.Unmarshal(call.req.Body, &req); err != nil {
		_ = call.reply(nil, fmt.Errorf("malformed blob request: %w", err))
		return
	}
	rc, size, err := a.images.OpenBlob(req.Digest)
	if err != nil {
		_ = call.reply(nil, err)
		return
	}
	defer rc.Close()
	if err := call.reply(wire.BlobResponse{Size: size}, nil); err != nil {
		return
	}
	_, _ = io.Copy(call.conn, rc)
}

func (a *Agent) serveManifestRPC(ctx context.Context, call *rpcCall) {
	var req wire.ManifestRequest
	if err := json.Unmarshal(call.req.Body, &req); err != nil {
		_ = call.reply(nil, fmt.Errorf("malformed manifest request: %w", err))
		return
	}
	raw, err := a.images.Manifest(req.Ref)
	if err != nil {
		_ = call.reply(nil, err)
		return
	}
	_ = call.reply(json.RawMessage(raw), nil)
}

func (a *Agent) serveLogsRPC(ctx context.Context, call *rpcCall) {
	var req wire.LogsRequest
	if err := json.Unmarshal(call.req.Body, &req); err != nil {
		_ = call.reply(nil, fmt.Errorf("malformed logs request: %w", err))
		return
	}
	opts := runtime.LogOptions{Follow: req.Follow, Tail: req.Tail}
	if req.Since != "" {
		if err := opts.Since.UnmarshalText([]byte(req.Since)); err != nil {
			_ = call.reply(nil, fmt.Errorf("bad since: %w", err))
			return
		}
	}
	// The stream ends when the peer hangs up: watch the read side.
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_, _ = io.Copy(io.Discard, call.r)
		cancel()
	}()
	ch, err := a.rt.Logs(lctx, req.ContainerID, opts)
	if err != nil {
		_ = call.reply(nil, err)
		return
	}
	if err := call.reply(struct{}{}, nil); err != nil {
		return
	}
	w := bufio.NewWriter(call.conn)
	enc := json.NewEncoder(w)
	for l := range ch {
		if enc.Encode(l) != nil {
			return
		}
		if len(ch) == 0 && w.Flush() != nil {
			return
		}
	}
	_ = w.Flush()
}

// remoteLogs streams a container's logs from node n into send.
func (a *Agent) remoteLogs(ctx context.Context, cl *cluster, n *api.Node, containerID string, opts runtime.LogOptions, send func(api.LogLine) bool) error {
	req := wire.LogsRequest{ContainerID: containerID, Follow: opts.Follow, Tail: opts.Tail}
	if !opts.Since.IsZero() {
		b, _ := opts.Since.MarshalText()
		req.Since = string(b)
	}
	addr := joinHostPort(n.Addr, n.ClusterPort)
	return callRPC(ctx, addr, cl.client, wire.MethodLogs, req, nil, func(r io.Reader) error {
		dec := json.NewDecoder(r)
		for {
			var l api.LogLine
			if err := dec.Decode(&l); err != nil {
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			}
			if !send(l) {
				return nil
			}
		}
	})
}

// registryCreds returns the credentials for a pull from the image's
// registry; nil means anonymous. ensureImage calls it only when it has to
// pull (a task's credentials come from the leader: no round trip when a peer
// has the image).
type registryCreds func(ctx context.Context) (*api.RegistryAuth, error)

// ensureImage makes ref available locally: already here, fetched from a
// peer that holds it, or pulled from its registry (with creds, when the
// service carries registry credentials). An image the cluster does not know
// is pulled from its registry only with credentials (`--with-registry-auth`
// lets a service name an image no node has yet, as docker does).
func (a *Agent) ensureImage(ctx context.Context, cl *cluster, ref string, creds registryCreds) error {
	if _, err := a.images.Get(ref); err == nil {
		return nil
	}
	rec, ok := findClusterImage(cl, ref)
	if !ok && creds == nil {
		return fmt.Errorf("image %s is not known in the cluster", ref)
	}
	var errs []error
	src := ref
	if ok {
		for _, nodeID := range rec.Nodes {
			if nodeID == a.id.NodeID {
				continue
			}
			n, err := cl.store.Node(nodeID)
			if err != nil || n.Status != api.NodeReady {
				continue
			}
			img, err := a.fetchImageFrom(ctx, cl, n, ref)
			if err == nil {
				a.announceImage(ctx, img, "peer")
				return nil
			}
			errs = append(errs, fmt.Errorf("from %s: %w", n.Hostname, err))
		}
		var pulled bool
		if src, pulled = strings.CutPrefix(rec.Source, "pull "); !pulled {
			src = ""
		}
	}
	if src != "" {
		req := api.PullRequest{Ref: src}
		if creds != nil {
			auth, err := creds(ctx)
			if err != nil {
				return fmt.Errorf("image %s: registry credentials: %w", ref, err)
			}
			if auth != nil {
				req.Username, req.Password = auth.Username, auth.Password
			}
		}
		img, err := a.images.Pull(ctx, req)
		if err == nil {
			a.announceImage(ctx, img, "pull "+src)
			return nil
		}
		if req.Username == "" && errors.Is(err, image.ErrUnauthorized) {
			err = fmt.Errorf("%w (the registry wants credentials: create or update the service with --with-registry-auth)", err)
		}
		errs = append(errs, err) // "pull REF: ..."
	}
	if len(errs) == 0 {
		return fmt.Errorf("image %s: no ready node holds it", ref)
	}
	return fmt.Errorf("fetch image %s: %w", ref, errors.Join(errs...))
}

// imageDescriptor is the subset of the image store's descriptor this side
// needs to know which blobs to fetch.
type imageDescriptor struct {
	Config struct {
		Digest string `json:"digest"`
	} `json:"config"`
	Layers []struct {
		Digest string `json:"digest"`
	} `json:"layers"`
}

// fetchImageFrom copies the image ref from node n: its descriptor, then the
// blobs this node lacks; it returns the image as stored here.
func (a *Agent) fetchImageFrom(ctx context.Context, cl *cluster, n *api.Node, ref string) (api.Image, error) {
	addr := joinHostPort(n.Addr, n.ClusterPort)
	var raw json.RawMessage
	if err := callRPC(ctx, addr, cl.client, wire.MethodManifest, wire.ManifestRequest{Ref: ref}, &raw, nil); err != nil {
		return api.Image{}, err
	}
	var d imageDescriptor
	if err := json.Unmarshal(raw, &d); err != nil {
		return api.Image{}, fmt.Errorf("decode image descriptor: %w", err)
	}
	digests := []string{d.Config.Digest}
	for _, l := range d.Layers {
		digests = append(digests, l.Digest)
	}
	for _, dg := range digests {
		if dg == "" || a.images.HasBlob(dg) {
			continue
		}
		err := callRPC(ctx, addr, cl.client, wire.MethodBlob, wire.BlobRequest{Digest: dg}, nil, func(r io.Reader) error {
			return a.images.IngestBlob(dg, r)
		})
		if err != nil {
			return api.Image{}, fmt.Errorf("blob %s: %w", dg, err)
		}
	}
	img, err := a.images.CommitImage(raw)
	if err != nil {
		return api.Image{}, fmt.Errorf("commit image: %w", err)
	}
	return img, nil
}
