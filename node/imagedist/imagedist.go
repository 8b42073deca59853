// Package imagedist moves images and task logs between nodes over the
// cluster port. A node that must run an image it lacks asks the cluster
// record which nodes hold it, fetches the image descriptor from one of
// them, then only the blobs it is missing; the image store verifies every
// digest on ingest. Images that came from a registry are pulled from it
// instead when no peer has them.
//
// Who may fetch what (only images of the cluster, only task logs) is
// Guard's rule (guard.go), which the agent checks with its replica, image
// store and containers before a Serve function runs (node/rpcserver).
package imagedist

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/clusterport"
	"github.com/shoal-org/shoal/node/wire"
	"github.com/shoal-org/shoal/runtime"
	"github.com/shoal-org/shoal/runtime/image"
)

// Store is the part of the local image store (runtime/image.Store) that
// distribution reads and fills.
type Store interface {
	Get(ref string) (api.Image, error)
	Manifest(ref string) ([]byte, error)
	OpenBlob(digest string) (io.ReadCloser, int64, error)
	HasBlob(digest string) bool
	IngestBlob(digest string, size int64, r io.Reader) error
	CommitImage(descriptor []byte) (api.Image, error)
	Pull(ctx context.Context, req api.PullRequest) (api.Image, error)
}

var _ Store = (*image.Store)(nil)

// Logs streams a container's stored output (runtime.Runtime.Logs).
type Logs func(ctx context.Context, containerID string, opts runtime.LogOptions) (<-chan api.LogLine, error)

// Caller performs one RPC against the cluster port at addr with the agent's
// TLS (clusterport.Dialer.Call); stream, when set, gets the rest of the
// connection after the answer.
type Caller func(ctx context.Context, addr, method string, body, out any, stream func(io.Reader) error) error

// ServeBlob answers wire.MethodBlob: the blob's size, then its bytes, each
// write bounded by the call (clusterport.Call.Write).
func ServeBlob(store Store, call *clusterport.Call) {
	var req wire.BlobRequest
	if err := json.Unmarshal(call.Req.Body, &req); err != nil {
		_ = call.Reply(nil, fmt.Errorf("malformed blob request: %w", err))
		return
	}
	rc, size, err := store.OpenBlob(req.Digest)
	if err != nil {
		_ = call.Reply(nil, err)
		return
	}
	defer rc.Close()
	if err := call.Reply(wire.BlobResponse{Size: size}, nil); err != nil {
		return
	}
	// A peer that stops reading must not hold the handler, the open blob
	// and a connection of the port for good: call bounds each write.
	_, _ = io.Copy(call, rc)
}

// ServeManifest answers wire.MethodManifest with the image's descriptor.
func ServeManifest(store Store, call *clusterport.Call) {
	var req wire.ManifestRequest
	if err := json.Unmarshal(call.Req.Body, &req); err != nil {
		_ = call.Reply(nil, fmt.Errorf("malformed manifest request: %w", err))
		return
	}
	raw, err := store.Manifest(req.Ref)
	if err != nil {
		_ = call.Reply(nil, err)
		return
	}
	_ = call.Reply(json.RawMessage(raw), nil)
}

// logOptions are the runtime's options for a logs request's fields.
func logOptions(follow bool, tail int, since string) (runtime.LogOptions, error) {
	opts := runtime.LogOptions{Follow: follow, Tail: tail}
	if since != "" {
		if err := opts.Since.UnmarshalText([]byte(since)); err != nil {
			return opts, fmt.Errorf("bad since: %w", err)
		}
	}
	return opts, nil
}

// untilHangup is ctx until the peer of call hangs up too: a log stream
// ends when its reader goes, which only the read side shows.
func untilHangup(ctx context.Context, call *clusterport.Call) (context.Context, context.CancelFunc) {
	lctx, cancel := context.WithCancel(ctx)
	go func() {
		_, _ = io.Copy(io.Discard, call.R)
		cancel()
	}()
	return lctx, cancel
}

// ServeLogs answers wire.MethodLogs: an empty answer, then one JSON log
// line after another until the logs end, ctx ends or the peer hangs up.
func ServeLogs(ctx context.Context, logs Logs, call *clusterport.Call) {
	var req wire.LogsRequest
	if err := json.Unmarshal(call.Req.Body, &req); err != nil {
		_ = call.Reply(nil, fmt.Errorf("malformed logs request: %w", err))
		return
	}
	opts, err := logOptions(req.Follow, req.Tail, req.Since)
	if err != nil {
		_ = call.Reply(nil, err)
		return
	}
	lctx, cancel := untilHangup(ctx, call)
	defer cancel()
	ch, err := logs(lctx, req.ContainerID, opts)
	if err != nil {
		_ = call.Reply(nil, err)
		return
	}
	streamLines(call, ch)
}

// streamLines answers call with an empty reply, then writes ch's values
// as JSON lines until ch closes or the peer stops reading; a batch is
// flushed whenever ch has nothing more waiting.
func streamLines[T any](call *clusterport.Call, ch <-chan T) {
	if err := call.Reply(struct{}{}, nil); err != nil {
		return
	}
	w := bufio.NewWriter(call)
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

// RemoteLogs streams a container's logs from the node at addr into send,
// until the logs end, ctx ends or send returns false.
func RemoteLogs(ctx context.Context, call Caller, addr, containerID string, opts runtime.LogOptions, send func(api.LogLine) bool) error {
	req := wire.LogsRequest{ContainerID: containerID, Follow: opts.Follow, Tail: opts.Tail, Since: sinceText(opts)}
	return call(ctx, addr, wire.MethodLogs, req, nil, func(r io.Reader) error {
		return readLogLines(r, addr, func(l api.LogLine) (bool, error) { return send(l), nil })
	})
}

// sinceText is opts.Since as a logs request carries it ("" for none).
func sinceText(opts runtime.LogOptions) string {
	if opts.Since.IsZero() {
		return ""
	}
	b, _ := opts.Since.MarshalText()
	return string(b)
}

// readLogLines decodes the JSON lines of a log stream from addr, each
// bounded by maxRemoteLogLine, into each until the stream ends or each
// says stop (false) or fails.
func readLogLines[T any](r io.Reader, addr string, each func(T) (bool, error)) error {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReader(r)
	}
	for {
		line, err := wire.ReadLine(br, maxRemoteLogLine)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("logs from %s: %w", addr, err)
		}
		var l T
		if err := json.Unmarshal(line, &l); err != nil {
			return fmt.Errorf("logs from %s: %w", addr, err)
		}
		if more, err := each(l); err != nil || !more {
			return err
		}
	}
}

// maxRemoteLogLine bounds one log line a peer streams: a stored line is at
// most 1 MiB (runtime/logfile.MaxLine), re-encoded with its task and node.
// A json.Decoder had no bound: a peer (a valid certificate is all it
// takes) could grow the memory of the node running `service logs -f`
// without end with one endless line.
const maxRemoteLogLine = 4 << 20

// ErrWrongImage means a holder answered with another image than the
// cluster record names; Ensure tries the record's next holder.
var ErrWrongImage = errors.New("a holder sent another image than the cluster records")

// Creds returns the credentials for a pull from the image's registry; nil
// means anonymous. Ensure calls it only when it has to pull (a task's
// credentials come from the leader: no round trip when a peer has the
// image).
type Creds func(ctx context.Context) (*api.RegistryAuth, error)

// Peer is a ready node that holds an image.
type Peer struct {
	Hostname string
	Addr     string // its cluster port, host:port
}

// Source is what the cluster knows of an image.
type Source struct {
	// Record is the image's cluster record; nil when the cluster does not
	// know the image.
	Record *api.Image
	// Peer resolves a node ID of Record.Nodes to a node to fetch from;
	// false skips it (this node itself, a node that is not ready). It is
	// asked just before each attempt.
	Peer func(nodeID string) (Peer, bool)
}

// Ensure makes ref available in store: already there (announce is not
// called), fetched from a peer the record lists (announce(img, "peer");
// only the record's image, tagged ref alone: Fetch), or
// pulled from its registry (announce(img, "pull REF")), with creds when the
// service carries registry credentials. An image the cluster does not know
// is pulled from its registry only with credentials (`--with-registry-auth`
// lets a service name an image no node has yet, as docker does).
func Ensure(ctx context.Context, store Store, call Caller, ref string, src Source, creds Creds, announce func(img api.Image, source string)) error {
	if _, err := store.Get(ref); err == nil {
		return nil
	}
	rec := src.Record
	if rec == nil && creds == nil {
		return fmt.Errorf("image %s is not known in the cluster", ref)
	}
	var errs []error
	from := ref
	if rec != nil {
		for _, nodeID := range badHolders.order(rec.ID, rec.Nodes, time.Now()) {
			p, ok := src.Peer(nodeID)
			if !ok {
				continue
			}
			img, err := fetchWatched(ctx, store, call, p.Addr, *rec, recordTag(ref, *rec))
			if err == nil {
				badHolders.set(nodeID, rec.ID, time.Time{})
				announce(img, "peer")
				return nil
			}
			if errors.Is(err, ErrWrongImage) || errors.Is(err, image.ErrDigestMismatch) || errors.Is(err, ErrStalled) {
				badHolders.set(nodeID, rec.ID, time.Now())
			}
			errs = append(errs, fmt.Errorf("from %s: %w", p.Hostname, err))
		}
		var pulled bool
		if from, pulled = strings.CutPrefix(rec.Source, "pull "); !pulled {
			from = ""
		}
	}
	if from != "" {
		req := api.PullRequest{Ref: from}
		if creds != nil {
			auth, err := creds(ctx)
			if err != nil {
				return fmt.Errorf("image %s: registry credentials: %w", ref, err)
			}
			if auth != nil {
				req.Username, req.Password = auth.Username, auth.Password
			}
		}
		img, err := store.Pull(ctx, req)
		if err == nil {
			announce(img, "pull "+from)
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

// Fetch copies the image rec records from the node at addr into store:
// its descriptor (asked for by the record's ID), then the blobs store
// lacks; it returns the image as stored.
//
// The holder is only a source of bytes, never of names: a node lists
// itself on any record (command.SetImageNode, its own holdings), so what it
// answers is checked against the record. A descriptor of another image is
// refused before any blob is fetched (ErrWrongImage), and the image is
// committed under tag alone (a tag of the record; "" for none) with the
// record's source. The holder's own tags would re-tag this node's images,
// and its source would become this node's word on where the image comes
// from (the registry Ensure pulls from, with a service's credentials);
// both are then announced to the cluster.
func Fetch(ctx context.Context, store Store, call Caller, addr string, rec api.Image, tag string) (api.Image, error) {
	var raw json.RawMessage
	if err := call(ctx, addr, wire.MethodManifest, wire.ManifestRequest{Ref: rec.ID}, &raw, nil); err != nil {
		return api.Image{}, err
	}
	// Only what this side needs is read here: the store validates the
	// whole descriptor when it commits it.
	var d image.Descriptor
	if err := json.Unmarshal(raw, &d); err != nil {
		return api.Image{}, fmt.Errorf("decode image descriptor: %w", err)
	}
	if d.ID != rec.ID || d.Config.Digest != rec.ID {
		return api.Image{}, fmt.Errorf("%w: the cluster records %s, the holder sent %s (config %s)", ErrWrongImage, rec.ID, d.ID, d.Config.Digest)
	}
	blobs := []image.BlobRef{d.Config}
	for _, l := range d.Layers {
		blobs = append(blobs, l.BlobRef)
	}
	for _, b := range blobs {
		if b.Digest == "" || store.HasBlob(b.Digest) {
			continue
		}
		err := call(ctx, addr, wire.MethodBlob, wire.BlobRequest{Digest: b.Digest}, nil, func(r io.Reader) error {
			return store.IngestBlob(b.Digest, b.Size, r)
		})
		if err != nil {
			return api.Image{}, fmt.Errorf("blob %s: %w", b.Digest, err)
		}
	}
	d.Tags, d.Source = nil, rec.Source
	if tag != "" {
		d.Tags = []string{tag}
	}
	own, err := json.Marshal(d)
	if err != nil {
		return api.Image{}, fmt.Errorf("encode image descriptor: %w", err)
	}
	img, err := store.CommitImage(own)
	if err != nil {
		return api.Image{}, fmt.Errorf("commit image: %w", err)
	}
	if img.ID != rec.ID {
		// The store names an image by the digest of its config, which
		// the holder cannot choose: only a broken store gets here.
		return api.Image{}, fmt.Errorf("%w: the cluster records %s, the store committed %s", ErrWrongImage, rec.ID, img.ID)
	}
	return img, nil
}

// recordTag is the tag of rec that ref names ("" when ref names none of
// them: an ID or ID prefix), the one tag a fetched image gets here.
func recordTag(ref string, rec api.Image) string {
	want, err := image.NormalizeTag(ref)
	if err != nil {
		return ""
	}
	for _, t := range rec.Tags {
		if nt, err := image.NormalizeTag(t); err == nil && nt == want {
			return nt
		}
	}
	return ""
}

// BadHolderFor is how long a holder that sent another image than a record
// names (ErrWrongImage) or bytes that failed their digest is tried for
// that image only after every other holder.
const BadHolderFor = 10 * time.Minute

// maxBadHolders bounds what badHolders remembers; past it, the oldest
// entry goes.
const maxBadHolders = 4096

// badHolders is this process's memory of the holders that failed the
// check of an image (keyed by node and image ID). The cluster record
// lists the nodes that say they hold an image, in ID order, and a node's
// word is about itself only: one that lists itself and then serves
// another image, or garbage, was asked first by every node at every
// fetch, each paying a round trip (or a blob's transfer) before going on.
// A node cannot strike another from the record (it speaks for itself), so
// it moves the failed holder to the end of its own order: still tried
// when no other holder serves, never first again for BadHolderFor.
var badHolders = &holderMemory{m: map[string]time.Time{}}

type holderMemory struct {
	mu sync.Mutex
	m  map[string]time.Time // node + "\x00" + image ID -> when it failed
}

// set records node's failure on imageID at at (zero: it served it).
func (h *holderMemory) set(node, imageID string, at time.Time) {
	key := node + "\x00" + imageID
	h.mu.Lock()
	defer h.mu.Unlock()
	if at.IsZero() {
		delete(h.m, key)
		return
	}
	if _, ok := h.m[key]; !ok && len(h.m) >= maxBadHolders {
		oldest, first := "", time.Time{}
		for k, t := range h.m {
			if oldest == "" || t.Before(first) {
				oldest, first = k, t
			}
		}
		delete(h.m, oldest)
	}
	h.m[key] = at
}

// order returns nodes with those that failed imageID within BadHolderFor
// of now moved to the end, the rest in their order.
func (h *holderMemory) order(imageID string, nodes []string, now time.Time) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	bad := func(n string) bool {
		t, ok := h.m[n+"\x00"+imageID]
		return ok && now.Sub(t) < BadHolderFor
	}
	out := slices.Clone(nodes)
	slices.SortStableFunc(out, func(a, b string) int {
		switch ba, bb := bad(a), bad(b); {
		case ba == bb:
			return 0
		case ba:
			return 1
		}
		return -1
	})
	return out
}

// ErrStalled means a holder sent nothing for FetchStall while this node
// waited on it; Ensure tries the record's next holder.
var ErrStalled = errors.New("the holder sent nothing")

// FetchStall is how long a fetch from one holder may wait for the next
// byte (an answer, a blob's bytes) before it gives that holder up. A
// holder's answers and blobs come from its local store at once, so only a
// holder that does not send at all waits this long. Nothing bounded it:
// the call waits for as long as its context, and the task's start has
// none, so a holder that answered and then sent nothing (a worker lists
// itself as holding its task's image) held every node's start of that
// image's tasks for good. A variable for tests.
var FetchStall = 30 * time.Second

// fetchWatched is Fetch from one holder, given up with ErrStalled once it
// has waited FetchStall on that holder without a byte; the time this node
// spends on its own (ingesting, committing) does not count.
func fetchWatched(ctx context.Context, store Store, call Caller, addr string, rec api.Image, tag string) (api.Image, error) {
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	w := &stallWatch{}
	watched := func(ctx context.Context, addr, method string, body, out any, stream func(io.Reader) error) error {
		w.wait(true)
		defer w.wait(false)
		var s func(io.Reader) error
		if stream != nil {
			s = func(r io.Reader) error {
				w.wait(false)
				return stream(&watchedReader{r: r, w: w})
			}
		}
		return call(ctx, addr, method, body, out, s)
	}
	limit := FetchStall
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		tick := time.NewTicker(max(limit/10, time.Millisecond))
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if w.stalled(limit) {
					cancel(ErrStalled)
					return
				}
			}
		}
	}()
	img, err := Fetch(wctx, store, watched, addr, rec, tag)
	close(done)
	<-exited
	if err != nil && errors.Is(context.Cause(wctx), ErrStalled) && ctx.Err() == nil {
		return api.Image{}, fmt.Errorf("%w for %s: %w", ErrStalled, limit, err)
	}
	return img, err
}

// stallWatch records whether a fetch waits on its holder and since when.
type stallWatch struct {
	waiting atomic.Bool
	since   atomic.Int64 // unix nanoseconds of the last byte or state change
}

func (w *stallWatch) wait(on bool) {
	w.since.Store(time.Now().UnixNano())
	w.waiting.Store(on)
}

func (w *stallWatch) stalled(limit time.Duration) bool {
	return w.waiting.Load() && time.Since(time.Unix(0, w.since.Load())) > limit
}

// watchedReader marks each read from the holder as a wait.
type watchedReader struct {
	r io.Reader
	w *stallWatch
}

func (r *watchedReader) Read(p []byte) (int, error) {
	r.w.wait(true)
	n, err := r.r.Read(p)
	r.w.wait(false)
	return n, err
}
