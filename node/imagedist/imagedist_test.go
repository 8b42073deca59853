package imagedist

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/clusterport"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/wire"
	"github.com/shoal-org/shoal/runtime"
	"github.com/shoal-org/shoal/runtime/image"
)

// fakeStore is an image store in memory: descriptors by ref, blobs by
// digest. It records what it was asked to pull and commit.
type fakeStore struct {
	mu        sync.Mutex
	images    map[string]api.Image
	manifests map[string][]byte
	// anyManifest, when set, is the descriptor served for every ref: a
	// holder that answers whatever it is asked with an image of its own.
	anyManifest []byte
	blobs       map[string][]byte
	pullErr     error
	pulled      []api.PullRequest
	ingested    []string
	sizes       []int64
	committed   [][]byte
}

func newFakeStore() *fakeStore {
	return &fakeStore{images: map[string]api.Image{}, manifests: map[string][]byte{}, blobs: map[string][]byte{}}
}

func (s *fakeStore) Get(ref string) (api.Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	img, ok := s.images[ref]
	if !ok {
		return api.Image{}, fmt.Errorf("image %s: %w", ref, errors.New("not found"))
	}
	return img, nil
}

func (s *fakeStore) Manifest(ref string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.anyManifest != nil {
		return s.anyManifest, nil
	}
	m, ok := s.manifests[ref]
	if !ok {
		return nil, fmt.Errorf("image %s not found", ref)
	}
	return m, nil
}

func (s *fakeStore) OpenBlob(digest string) (io.ReadCloser, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.blobs[digest]
	if !ok {
		return nil, 0, fmt.Errorf("blob %s not found", digest)
	}
	return io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
}

func (s *fakeStore) HasBlob(digest string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.blobs[digest]
	return ok
}

func (s *fakeStore) IngestBlob(digest string, size int64, r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.blobs[digest] = b
	s.ingested = append(s.ingested, digest)
	s.sizes = append(s.sizes, size)
	return nil
}

func (s *fakeStore) CommitImage(descriptor []byte) (api.Image, error) {
	var d struct {
		ID     string   `json:"id"`
		Tags   []string `json:"tags"`
		Source string   `json:"source"`
	}
	if err := json.Unmarshal(descriptor, &d); err != nil {
		return api.Image{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.committed = append(s.committed, descriptor)
	img := api.Image{ID: d.ID, Tags: d.Tags, Source: d.Source}
	for _, t := range d.Tags {
		s.images[t] = img
	}
	return img, nil
}

func (s *fakeStore) Pull(_ context.Context, req api.PullRequest) (api.Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pulled = append(s.pulled, req)
	if s.pullErr != nil {
		return api.Image{}, fmt.Errorf("pull %s: %w", req.Ref, s.pullErr)
	}
	img := api.Image{ID: "sha256:pulled", Tags: []string{req.Ref}}
	s.images[req.Ref] = img
	return img, nil
}

// holder is a node serving a store's images on a loopback cluster port.
type holder struct {
	addr  string
	calls []string // methods served
	mu    sync.Mutex
}

var testPKI struct {
	once sync.Once
	ca   *pki.CA
	err  error
}

func ca(t *testing.T) *pki.CA {
	t.Helper()
	testPKI.once.Do(func() { testPKI.ca, testPKI.err = pki.NewCA("cluster-a", time.Now()) })
	if testPKI.err != nil {
		t.Fatal(testPKI.err)
	}
	return testPKI.ca
}

func certFor(t *testing.T, id string) tls.Certificate {
	t.Helper()
	certPEM, keyPEM, _, err := ca(t).IssueNodeCert(id, []net.IP{net.ParseIP("127.0.0.1")}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pki.TLSCertificate(certPEM, keyPEM, ca(t).CertPEM())
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// startHolder serves store's blobs, descriptors and logs (from logs) over
// the real cluster port.
func startHolder(t *testing.T, store Store, logs Logs) *holder {
	t.Helper()
	h := &holder{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	methods := func(method string) clusterport.Handler {
		return func(ctx context.Context, call *clusterport.Call) {
			h.mu.Lock()
			h.calls = append(h.calls, method)
			h.mu.Unlock()
			switch method {
			case wire.MethodBlob:
				ServeBlob(store, call)
			case wire.MethodManifest:
				ServeManifest(store, call)
			case wire.MethodLogs:
				ServeLogs(ctx, logs, call)
			}
		}
	}
	m := clusterport.NewMux(clusterport.MuxConfig{
		Listener: ln, TLS: pki.ServerTLS(certFor(t, "holder"), ca(t).Pool(), nil),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		RPC: func(c *tls.Conn) { clusterport.Serve(ctx, c, methods) },
	})
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return h
}

func (h *holder) served() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string{}, h.calls...)
}

// caller calls as node "fetcher" of the same cluster.
func caller(t *testing.T) Caller {
	cfg := pki.ClientTLS(certFor(t, "fetcher"), ca(t).Pool())
	return func(ctx context.Context, addr, method string, body, out any, stream func(io.Reader) error) error {
		return clusterport.Dialer{}.Call(ctx, addr, cfg, method, body, out, stream)
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// webImage puts an image with a config and two layers in s.
func webImage(s *fakeStore) {
	s.blobs["sha256:cfg"] = []byte(`{"config":true}`)
	s.blobs["sha256:l1"] = []byte("layer one")
	s.blobs["sha256:l2"] = []byte("layer two")
	s.manifests["web:1"] = []byte(`{"id":"sha256:cfg","tags":["web:1"],"config":{"digest":"sha256:cfg","size":15},"layers":[{"digest":"sha256:l1","size":9},{"digest":"sha256:l2","size":9}]}`)
	s.manifests["sha256:cfg"] = s.manifests["web:1"]
	s.images["web:1"] = api.Image{ID: "sha256:cfg", Tags: []string{"web:1"}}
}

// webRecord is the cluster record of webImage.
var webRecord = api.Image{ID: "sha256:cfg", Tags: []string{"web:1"}, Source: "import"}

// TestFetchOnlyMissingBlobs copies an image over the cluster port: the
// descriptor (asked for by the record's ID), then only the blobs this side
// lacks, byte for byte.
func TestFetchOnlyMissingBlobs(t *testing.T) {
	src := newFakeStore()
	webImage(src)
	h := startHolder(t, src, nil)
	dst := newFakeStore()
	dst.blobs["sha256:l1"] = []byte("layer one") // shared with another image
	img, err := Fetch(ctx(t), dst, caller(t), h.addr, webRecord, "web:1")
	if err != nil {
		t.Fatal(err)
	}
	if img.ID != "sha256:cfg" || !slices.Equal(img.Tags, []string{"web:1"}) || img.Source != "import" {
		t.Errorf("fetched %+v", img)
	}
	if want := []string{"sha256:cfg", "sha256:l2"}; !slices.Equal(dst.ingested, want) {
		t.Errorf("ingested %v, want %v", dst.ingested, want)
	}
	// The store bounds each blob's stream by the size the descriptor gives.
	if want := []int64{15, 9}; !slices.Equal(dst.sizes, want) {
		t.Errorf("ingested with sizes %v, want %v", dst.sizes, want)
	}
	for d, b := range src.blobs {
		if !bytes.Equal(dst.blobs[d], b) {
			t.Errorf("blob %s: %q, want %q", d, dst.blobs[d], b)
		}
	}
	var d image.Descriptor
	if len(dst.committed) != 1 || json.Unmarshal(dst.committed[0], &d) != nil || d.ID != "sha256:cfg" || len(d.Layers) != 2 || d.Layers[1].Digest != "sha256:l2" {
		t.Errorf("committed %q, want the holder's descriptor", dst.committed)
	}
	if want := []string{wire.MethodManifest, wire.MethodBlob, wire.MethodBlob}; !slices.Equal(h.served(), want) {
		t.Errorf("holder served %v, want %v", h.served(), want)
	}
}

func TestFetchErrors(t *testing.T) {
	src := newFakeStore()
	webImage(src)
	delete(src.blobs, "sha256:l2")
	h := startHolder(t, src, nil)
	dst := newFakeStore()
	if _, err := Fetch(ctx(t), dst, caller(t), h.addr, api.Image{ID: "sha256:nope"}, ""); err == nil || !strings.Contains(err.Error(), "sha256:nope not found") {
		t.Errorf("unknown image: %v", err)
	}
	_, err := Fetch(ctx(t), dst, caller(t), h.addr, webRecord, "web:1")
	if err == nil || !strings.Contains(err.Error(), "blob sha256:l2") {
		t.Errorf("missing blob: %v", err)
	}
	if len(dst.committed) != 0 {
		t.Error("an image with a missing blob was committed")
	}
}

// TestEnsure walks the sources in order: here, a ready peer, the
// registry; and says where the image came from.
func TestEnsure(t *testing.T) {
	src := newFakeStore()
	webImage(src)
	h := startHolder(t, src, nil)
	record := func(source string, nodes ...string) *api.Image {
		return &api.Image{ID: "sha256:cfg", Tags: []string{"web:1"}, Nodes: nodes, Source: source}
	}
	peers := map[string]Peer{
		"holder": {Hostname: "holder-host", Addr: h.addr},
		"dead":   {Hostname: "dead-host", Addr: "127.0.0.1:1"},
	}
	peer := func(id string) (Peer, bool) { p, ok := peers[id]; return p, ok }
	creds := func(context.Context) (*api.RegistryAuth, error) {
		return &api.RegistryAuth{Username: "u", Password: "p"}, nil
	}
	for _, tt := range []struct {
		name      string
		local     bool
		rec       *api.Image
		creds     Creds
		pullErr   error
		announced string // "" when nothing was announced
		pulled    string
		wantErr   string
	}{
		{name: "already here", local: true, rec: record("", "holder"), announced: ""},
		{name: "from a ready peer", rec: record("", "self", "unready", "holder"), announced: "peer"},
		{name: "a dead peer, then a ready one", rec: record("", "dead", "holder"), announced: "peer"},
		{name: "unknown to the cluster, no credentials", wantErr: "image web:1 is not known in the cluster"},
		{name: "unknown to the cluster, with credentials: pulled", creds: creds, announced: "pull web:1", pulled: "web:1"},
		{name: "no peer has it, pulled image: pulled again", rec: record("pull registry.example/web:1", "dead"),
			announced: "pull registry.example/web:1", pulled: "registry.example/web:1"},
		{name: "no ready node holds an imported image", rec: record("import", "self"), wantErr: "image web:1: no ready node holds it"},
		{name: "every source failed", rec: record("import", "dead"), wantErr: "fetch image web:1: from dead-host: connect to 127.0.0.1:1"},
		{name: "the registry wants credentials", rec: record("pull web:1"), pullErr: image.ErrUnauthorized,
			pulled: "web:1", wantErr: "--with-registry-auth"},
		{name: "credentials the registry refused", rec: record("pull web:1"), creds: creds, pullErr: image.ErrUnauthorized,
			pulled: "web:1", wantErr: "registry refused the credentials"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dst := newFakeStore()
			dst.pullErr = tt.pullErr
			if tt.local {
				dst.images["web:1"] = api.Image{ID: "sha256:cfg"}
			}
			var announced []string
			err := Ensure(ctx(t), dst, caller(t), "web:1", Source{Record: tt.rec, Peer: peer}, tt.creds, func(img api.Image, source string) {
				announced = append(announced, source)
			})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if tt.creds != nil && strings.Contains(err.Error(), "--with-registry-auth") {
					t.Errorf("the credentials hint on a pull that had credentials: %v", err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if want := []string{}; tt.announced != "" {
				want = []string{tt.announced}
				if !slices.Equal(announced, want) {
					t.Errorf("announced %v, want %v", announced, want)
				}
			} else if len(announced) != 0 {
				t.Errorf("announced %v, want nothing", announced)
			}
			var pulled []string
			for _, p := range dst.pulled {
				pulled = append(pulled, p.Ref)
				if (tt.creds != nil) != (p.Username == "u") {
					t.Errorf("pull credentials %q, with creds %v", p.Username, tt.creds != nil)
				}
			}
			if want := []string{}; tt.pulled != "" {
				want = []string{tt.pulled}
				if !slices.Equal(pulled, want) {
					t.Errorf("pulled %v, want %v", pulled, want)
				}
			} else if len(pulled) != 0 {
				t.Errorf("pulled %v, want nothing", pulled)
			}
		})
	}
}

// TestLogsRoundTrip streams a container's log lines from ServeLogs to
// RemoteLogs, options included.
func TestLogsRoundTrip(t *testing.T) {
	since := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var got runtime.LogOptions
	var gotID string
	logs := func(_ context.Context, id string, opts runtime.LogOptions) (<-chan api.LogLine, error) {
		if id == "missing" {
			return nil, errors.New("no such container")
		}
		gotID, got = id, opts
		ch := make(chan api.LogLine, 3)
		for i := range 3 {
			ch <- api.LogLine{Stream: "stdout", Line: fmt.Sprintf("line %d", i)}
		}
		close(ch)
		return ch, nil
	}
	h := startHolder(t, newFakeStore(), logs)
	var lines []string
	opts := runtime.LogOptions{Tail: 7, Since: since}
	err := RemoteLogs(ctx(t), caller(t), h.addr, "c1", opts, func(l api.LogLine) bool {
		lines = append(lines, l.Line)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if gotID != "c1" || got.Tail != 7 || !got.Since.Equal(since) || got.Follow {
		t.Errorf("served %q with %+v, want c1 with %+v", gotID, got, opts)
	}
	if want := []string{"line 0", "line 1", "line 2"}; !slices.Equal(lines, want) {
		t.Errorf("lines %v, want %v", lines, want)
	}
	// send may stop the stream early.
	lines = nil
	err = RemoteLogs(ctx(t), caller(t), h.addr, "c1", runtime.LogOptions{}, func(l api.LogLine) bool {
		lines = append(lines, l.Line)
		return false
	})
	if err != nil || len(lines) != 1 {
		t.Errorf("stopped stream: %v, %v", lines, err)
	}
	err = RemoteLogs(ctx(t), caller(t), h.addr, "missing", runtime.LogOptions{}, func(api.LogLine) bool { return true })
	var re *wire.Error
	if !errors.As(err, &re) || !strings.Contains(re.Msg, "no such container") {
		t.Errorf("missing container: %v", err)
	}
}

// TestRemoteLogsBoundsLines: a peer's log stream is read a line at a time,
// each at most maxRemoteLogLine; one endless line fails the stream instead
// of growing the reader's memory for as long as the peer sends.
func TestRemoteLogsBoundsLines(t *testing.T) {
	// 16 MiB of one line stands for an endless one (and keeps a reader
	// without a bound from reading forever).
	endless := io.MultiReader(strings.NewReader(`{"stream":"stdout","line":"ok"}`+"\n"+`{"line":"`), io.LimitReader(infiniteX{}, 16<<20))
	fake := func(_ context.Context, _, _ string, _, _ any, stream func(io.Reader) error) error {
		return stream(bufio.NewReader(endless))
	}
	var lines []string
	err := RemoteLogs(ctx(t), fake, "peer:2377", "c1", runtime.LogOptions{Follow: true}, func(l api.LogLine) bool {
		lines = append(lines, l.Line)
		return true
	})
	if !errors.Is(err, wire.ErrLineTooLong) || !slices.Equal(lines, []string{"ok"}) {
		t.Fatalf("endless line: lines %v, err %v; want [ok] then ErrLineTooLong", lines, err)
	}
}

// infiniteX reads as an endless run of 'x'.
type infiniteX struct{}

func (infiniteX) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

// TestServeBlobWriteDeadline: a peer that asks for a blob and never reads
// it held the handler, the open blob and a connection of the port for
// good; each write now fails after the call's write timeout.
func TestServeBlobWriteDeadline(t *testing.T) {
	store := newFakeStore()
	store.blobs["sha256:big"] = bytes.Repeat([]byte("x"), 32<<20)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	methods := func(string) clusterport.Handler {
		return func(_ context.Context, call *clusterport.Call) {
			call.WriteTimeout = 500 * time.Millisecond
			ServeBlob(store, call)
			close(served)
		}
	}
	m := clusterport.NewMux(clusterport.MuxConfig{
		Listener: ln, TLS: pki.ServerTLS(certFor(t, "holder"), ca(t).Pool(), nil),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		RPC: func(c *tls.Conn) { clusterport.Serve(ctx, c, methods) },
	})
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	c, err := clusterport.Dialer{}.Dial(ln.Addr().String(), time.Second, pki.ClientTLS(certFor(t, "fetcher"), ca(t).Pool()), clusterport.ProtoRPC)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(`{"method":"blob","body":{"digest":"sha256:big"}}` + "\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-served:
	case <-time.After(10 * time.Second):
		t.Fatal("ServeBlob still writing to a peer that does not read")
	}
}

// TestEnsureRefusesAnotherImageThanTheRecord: a node on a record's holder
// list (a worker may add itself to any record) that answers with an image
// of its own is refused, nothing of its image is kept, and the next holder
// serves the record's image. Ensure committed whatever the first holder
// sent, under the tags it chose (web:1 and db:1 on the fetching node, which
// then announced them).
func TestEnsureRefusesAnotherImageThanTheRecord(t *testing.T) {
	evil := newFakeStore()
	evil.blobs["sha256:evil"] = []byte(`{"config":true}`)
	evil.blobs["sha256:le"] = []byte("evil layer")
	evil.anyManifest = []byte(`{"id":"sha256:evil","tags":["web:1","db:1"],"config":{"digest":"sha256:evil","size":15},"layers":[{"digest":"sha256:le","size":10}]}`)
	bad := startHolder(t, evil, nil)
	src := newFakeStore()
	webImage(src)
	good := startHolder(t, src, nil)
	peers := map[string]Peer{"worker": {Hostname: "worker", Addr: bad.addr}, "holder": {Hostname: "holder", Addr: good.addr}}
	peer := func(id string) (Peer, bool) { p, ok := peers[id]; return p, ok }
	rec := &api.Image{ID: "sha256:cfg", Tags: []string{"web:1"}, Nodes: []string{"worker", "holder"}}
	dst := newFakeStore()
	var got []api.Image
	err := Ensure(ctx(t), dst, caller(t), "web:1", Source{Record: rec, Peer: peer}, nil, func(img api.Image, source string) { got = append(got, img) })
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != rec.ID {
		t.Fatalf("announced %+v, want the record's image %s", got, rec.ID)
	}
	if img, ok := dst.images["db:1"]; ok {
		t.Errorf("db:1 is %s here: the worker's extra tag was kept", img.ID)
	}
	for _, d := range dst.ingested {
		if d == "sha256:evil" || d == "sha256:le" {
			t.Errorf("ingested the worker's blob %s", d)
		}
	}
	for _, c := range dst.committed {
		if strings.Contains(string(c), "sha256:evil") {
			t.Errorf("committed the worker's image: %s", c)
		}
	}

	// The worker alone: no image, and the error says why.
	rec.Nodes = []string{"worker"}
	dst = newFakeStore()
	err = Ensure(ctx(t), dst, caller(t), "web:1", Source{Record: rec, Peer: peer}, nil, func(api.Image, string) { t.Error("announced") })
	if !errors.Is(err, ErrWrongImage) || len(dst.committed) != 0 || len(dst.ingested) != 0 {
		t.Errorf("the worker alone: err %v, committed %d, ingested %v; want ErrWrongImage and nothing kept", err, len(dst.committed), dst.ingested)
	}
}

// TestFetchKeepsOnlyTheRecordsWord: what a fetched image is called here
// comes from the cluster record, not from the holder's descriptor: the tag
// asked for (when the record carries it) and the record's source. The
// holder's other tags re-tagged this node's images (and the node announced
// them cluster-wide), and its source became this node's `pull REF` for the
// image, which a manager then wrote into the record.
func TestFetchKeepsOnlyTheRecordsWord(t *testing.T) {
	src := newFakeStore()
	webImage(src)
	forged := []byte(`{"id":"sha256:cfg","tags":["web:1","db:1"],"source":"pull attacker.example/web:1","config":{"digest":"sha256:cfg","size":15},"layers":[{"digest":"sha256:l1","size":9},{"digest":"sha256:l2","size":9}]}`)
	src.manifests["web:1"], src.manifests["sha256:cfg"] = forged, forged
	h := startHolder(t, src, nil)
	peer := func(id string) (Peer, bool) { return Peer{Hostname: "holder", Addr: h.addr}, id == "holder" }
	for _, tt := range []struct {
		ref, wantTags string
	}{
		{ref: "web:1", wantTags: "web:1"},
		{ref: "docker.io/library/web:1", wantTags: "web:1"},
		{ref: "sha256:cfg", wantTags: ""}, // an ID names no tag
	} {
		rec := &api.Image{ID: "sha256:cfg", Tags: []string{"web:1", "web:latest"}, Nodes: []string{"holder"}, Source: "import"}
		dst := newFakeStore()
		var announced []api.Image
		err := Ensure(ctx(t), dst, caller(t), tt.ref, Source{Record: rec, Peer: peer}, nil, func(img api.Image, _ string) { announced = append(announced, img) })
		if err != nil {
			t.Fatalf("%s: %v", tt.ref, err)
		}
		if len(announced) != 1 {
			t.Fatalf("%s: announced %v", tt.ref, announced)
		}
		img := announced[0]
		if strings.Join(img.Tags, ",") != tt.wantTags || img.Source != "import" {
			t.Errorf("%s: committed tags %v source %q; want %q and the record's source", tt.ref, img.Tags, img.Source, tt.wantTags)
		}
		if _, ok := dst.images["db:1"]; ok {
			t.Errorf("%s: the holder's db:1 was kept", tt.ref)
		}
	}
}

// rootfsTar is a one-file rootfs tarball whose file holds body.
func rootfsTar(t *testing.T, body string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "hello", Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg,
		ModTime: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func realStore(t *testing.T) *image.Store {
	t.Helper()
	s, err := image.Open(image.DefaultConfig(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestEnsureBetweenRealStores: between two image stores, a fetched image
// gets the tag asked for and keeps the record's source; the holder's other
// tags do not move this node's own tags (db:1 here), which the store's
// commit did for every tag of the holder's descriptor.
func TestEnsureBetweenRealStores(t *testing.T) {
	src := realStore(t)
	web, err := src.Import(ctx(t), bytes.NewReader(rootfsTar(t, "web")), "web:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Tag("web:1", "db:1"); err != nil {
		t.Fatal(err)
	}
	h := startHolder(t, src, nil)
	dst := realStore(t)
	db, err := dst.Import(ctx(t), bytes.NewReader(rootfsTar(t, "db")), "db:1")
	if err != nil {
		t.Fatal(err)
	}
	rec := &api.Image{ID: web.ID, Tags: []string{"web:1"}, Nodes: []string{"holder"}, Source: "load"}
	peer := func(id string) (Peer, bool) { return Peer{Hostname: "holder", Addr: h.addr}, id == "holder" }
	var announced []api.Image
	if err := Ensure(ctx(t), dst, caller(t), "web:1", Source{Record: rec, Peer: peer}, nil, func(img api.Image, _ string) { announced = append(announced, img) }); err != nil {
		t.Fatal(err)
	}
	if len(announced) != 1 || announced[0].ID != web.ID || !slices.Equal(announced[0].Tags, []string{"web:1"}) || announced[0].Source != "load" {
		t.Errorf("announced %+v; want %s tagged web:1 alone, from the record's source", announced, web.ID)
	}
	if got, err := dst.Get("db:1"); err != nil || got.ID != db.ID {
		t.Errorf("db:1 here is %s (%v), want this node's own %s", got.ID, err, db.ID)
	}
}

// TestEnsureAsksAFailedHolderLast: a holder that sent another image than
// the record is asked for that image only after the other holders, by
// every later fetch of this node for BadHolderFor; alone it is still
// tried. Before, every fetch asked it first again (holders in ID order).
func TestEnsureAsksAFailedHolderLast(t *testing.T) {
	evil := newFakeStore()
	evil.blobs["sha256:evil"] = []byte(`{"config":true}`)
	evil.anyManifest = []byte(`{"id":"sha256:evil","config":{"digest":"sha256:evil","size":15},"layers":[]}`)
	bad := startHolder(t, evil, nil)
	src := newFakeStore()
	webImage(src)
	good := startHolder(t, src, nil)
	peers := map[string]Peer{"a-liar": {Hostname: "liar", Addr: bad.addr}, "b-honest": {Hostname: "honest", Addr: good.addr}}
	peer := func(id string) (Peer, bool) { p, ok := peers[id]; return p, ok }
	rec := &api.Image{ID: "sha256:cfg", Tags: []string{"web:1"}, Nodes: []string{"a-liar", "b-honest"}}
	badHolders.set("a-liar", rec.ID, time.Time{}) // this process's memory of an earlier run (-count)
	asked := func() int { bad.mu.Lock(); defer bad.mu.Unlock(); return len(bad.calls) }
	for i := range 3 {
		before := asked()
		if err := Ensure(ctx(t), newFakeStore(), caller(t), "web:1", Source{Record: rec, Peer: peer}, nil, func(api.Image, string) {}); err != nil {
			t.Fatal(err)
		}
		if n := asked() - before; (i == 0) != (n > 0) {
			t.Fatalf("fetch %d asked the liar %d times", i, n)
		}
	}

	now := time.Now()
	if got := badHolders.order(rec.ID, rec.Nodes, now); !slices.Equal(got, []string{"b-honest", "a-liar"}) {
		t.Errorf("order now: %v", got)
	}
	if got := badHolders.order(rec.ID, rec.Nodes, now.Add(BadHolderFor+time.Minute)); !slices.Equal(got, rec.Nodes) {
		t.Errorf("order after BadHolderFor: %v", got)
	}
	if got := badHolders.order("sha256:other", rec.Nodes, now); !slices.Equal(got, rec.Nodes) {
		t.Errorf("order for another image: %v", got)
	}
}

// stallStore serves its descriptors, then blobs that never send a byte.
type stallStore struct {
	*fakeStore
	stop chan struct{}
}

func (s stallStore) OpenBlob(digest string) (io.ReadCloser, int64, error) {
	r, w := io.Pipe()
	go func() { <-s.stop; w.Close() }()
	return r, 9, nil
}

// TestEnsureGivesUpAStalledHolder: a holder that answers and then sends
// nothing is given up after FetchStall, the next holder serves, and the
// staller is asked last afterwards; alone, it fails with ErrStalled.
// Before, the fetch waited for as long as its context: a task's start,
// for good.
func TestEnsureGivesUpAStalledHolder(t *testing.T) {
	defer func(d time.Duration) { FetchStall = d }(FetchStall)
	FetchStall = 200 * time.Millisecond
	stall := newFakeStore()
	webImage(stall)
	st := stallStore{fakeStore: stall, stop: make(chan struct{})}
	staller := startHolder(t, st, nil)
	t.Cleanup(func() { close(st.stop) }) // before the holder's cleanup waits for its handlers
	src := newFakeStore()
	webImage(src)
	good := startHolder(t, src, nil)
	peers := map[string]Peer{"a-staller": {Hostname: "staller", Addr: staller.addr}, "b-good": {Hostname: "good", Addr: good.addr}}
	peer := func(id string) (Peer, bool) { p, ok := peers[id]; return p, ok }
	rec := &api.Image{ID: "sha256:cfg", Tags: []string{"web:1"}, Nodes: []string{"a-staller", "b-good"}}
	badHolders.set("a-staller", rec.ID, time.Time{}) // this process's memory of an earlier run (-count)
	if err := Ensure(ctx(t), newFakeStore(), caller(t), "web:1", Source{Record: rec, Peer: peer}, nil, func(api.Image, string) {}); err != nil {
		t.Fatal(err)
	}
	if got := badHolders.order(rec.ID, rec.Nodes, time.Now()); !slices.Equal(got, []string{"b-good", "a-staller"}) {
		t.Errorf("order after the stall: %v", got)
	}
	rec.Nodes = []string{"a-staller"}
	err := Ensure(ctx(t), newFakeStore(), caller(t), "web:1", Source{Record: rec, Peer: peer}, nil, func(api.Image, string) { t.Error("announced") })
	if !errors.Is(err, ErrStalled) {
		t.Fatalf("the staller alone: %v, want ErrStalled", err)
	}
}
