package consensus

// Backups (`shoal snapshot save|restore`, `shoal init --from-snapshot`).
//
// A snapshot file is the FSM's own snapshot document (WriteSnapshot) behind
// a small header that makes it safe to hand around:
//
//	SHOAL-SNAPSHOT\n
//	{"format":1,"cluster_id":…,"index":…,"created_at":…,"size":N,"sha256":…}\n
//	N bytes: the snapshot document
//
// ReadSnapshotFile checks the magic, the format version, the size and the
// sha256 over the whole body, that nothing follows it, and that the body's
// cluster ID and index are the header's, before anything is decoded into a
// state: a truncated or tampered file is refused as a whole.
//
// What the file holds of the cluster record: the CA certificate, the CA key
// and the join secret sealed with the voters' key-encryption key (the KEK
// itself is never in the file), the token hash, the revocations and the
// address pools. Keys that would be in the clear are stripped when saving:
// the gossip keyring and the plaintext CA key / join secret of a cluster made
// before sealing. Neither restore path uses them: a restore onto a running
// cluster keeps that cluster's whole record (its CA, KEK, token, gossip keys,
// revocations and epoch are the current truth; an old backup must not bring
// back a rotated CA or un-revoke a certificate), and a new cluster made from
// a file has its own new identity. Service specs (environment variables) are
// in the clear: the file is written 0600.
//
// PlanRestore is the pure half of a restore: it merges the file's desired
// state (services, and whatever tables a later version adds) with the
// running cluster's identity and members. Raft.RestoreSnapshot installs the
// result as a user snapshot on the leader (raft.Restore), which then sends it
// to every follower like any other snapshot.

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"time"

	"github.com/shoal-org/shoal/api"
)

// SnapshotFileFormat is the version of the snapshot file layout (header and
// body). A reader refuses any other.
const SnapshotFileFormat = 1

// snapshotMagic is the first line of a snapshot file.
const snapshotMagic = "SHOAL-SNAPSHOT"

// maxSnapshotHeader bounds the header line a reader buffers.
const maxSnapshotHeader = 4 << 10

// Errors of snapshot files and restores.
var (
	// ErrSnapshotFile: the bytes are not an intact snapshot file (not one at
	// all, truncated, tampered with, or larger than the reader allows).
	ErrSnapshotFile = errors.New("not an intact shoal snapshot file")
	// ErrSnapshotFormat: the file is a snapshot of a format this binary
	// does not read.
	ErrSnapshotFormat = errors.New("unsupported snapshot file format")
	// ErrOtherCluster: the file was saved from another cluster than the one
	// it is restored onto (restore with force to do it anyway).
	ErrOtherCluster = errors.New("snapshot of another cluster")
)

// SnapshotHeader is the header line of a snapshot file.
type SnapshotHeader struct {
	Format    int       `json:"format"`
	ClusterID string    `json:"cluster_id"`
	Index     uint64    `json:"index"`
	CreatedAt time.Time `json:"created_at"`
	// Size is the length of the body in bytes.
	Size int64 `json:"size"`
	// SHA256 is the hex sha256 of the body.
	SHA256 string `json:"sha256"`
}

// SnapshotFile is a verified snapshot file.
type SnapshotFile struct {
	Header SnapshotHeader
	data   snapshotData
}

// Cluster returns the file's cluster record (nil if the saved store had none).
func (f *SnapshotFile) Cluster() *ClusterState { return f.data.Cluster }

// Services returns the file's services (the file's own objects: do not modify).
func (f *SnapshotFile) Services() []*api.Service { return f.data.Services }

// Nodes returns the file's nodes (the file's own objects: do not modify).
func (f *SnapshotFile) Nodes() []*api.Node { return f.data.Nodes }

// Tasks returns the file's tasks (the file's own objects: do not modify).
func (f *SnapshotFile) Tasks() []*api.Task { return f.data.Tasks }

// WriteSnapshotFile writes a snapshot file of s (use a Store.Snapshot view:
// it is read more than once) to w and returns its header. now is the
// creation time recorded in the header.
func WriteSnapshotFile(s *Store, w io.Writer, now time.Time) (SnapshotHeader, error) {
	// Through WriteSnapshot and back, so that every table the FSM snapshots
	// is in the file, including ones added after this was written.
	var doc bytes.Buffer
	if err := WriteSnapshot(s, &doc); err != nil {
		return SnapshotHeader{}, err
	}
	var data snapshotData
	if err := json.Unmarshal(doc.Bytes(), &data); err != nil {
		return SnapshotHeader{}, fmt.Errorf("re-read snapshot: %w", err)
	}
	if data.Cluster == nil {
		return SnapshotHeader{}, fmt.Errorf("snapshot: %w", ErrNotBootstrapped)
	}
	stripClearKeys(data.Cluster)
	body, err := json.Marshal(&data)
	if err != nil {
		return SnapshotHeader{}, fmt.Errorf("encode snapshot: %w", err)
	}
	sum := sha256.Sum256(body)
	h := SnapshotHeader{
		Format: SnapshotFileFormat, ClusterID: data.Cluster.ClusterID, Index: data.Index,
		CreatedAt: now.UTC(), Size: int64(len(body)), SHA256: hex.EncodeToString(sum[:]),
	}
	line, err := json.Marshal(&h)
	if err != nil {
		return SnapshotHeader{}, err
	}
	var out bytes.Buffer
	out.Grow(len(snapshotMagic) + len(line) + len(body) + 2)
	out.WriteString(snapshotMagic + "\n")
	out.Write(line)
	out.WriteByte('\n')
	out.Write(body)
	if _, err := w.Write(out.Bytes()); err != nil {
		return SnapshotHeader{}, fmt.Errorf("write snapshot file: %w", err)
	}
	return h, nil
}

// stripClearKeys removes what the cluster record holds in the clear and no
// restore uses: the gossip keyring and the pre-sealing plaintext CA key and
// join secret. The sealed blobs stay (ciphertext; the KEK is not in the file).
func stripClearKeys(c *ClusterState) {
	c.GossipKeys = nil
	c.CAKeyPEM = nil
	c.TokenSecret = ""
}

// ReadSnapshotFile reads and verifies a whole snapshot file from r. A body
// larger than maxSize is refused. Errors wrap ErrSnapshotFile or
// ErrSnapshotFormat and say what is wrong.
func ReadSnapshotFile(r io.Reader, maxSize int64) (*SnapshotFile, error) {
	br := bufio.NewReaderSize(r, maxSnapshotHeader)
	magic, err := readHeaderLine(br)
	if err != nil || string(magic) != snapshotMagic {
		return nil, fmt.Errorf("%w: it does not start with %q", ErrSnapshotFile, snapshotMagic)
	}
	line, err := readHeaderLine(br)
	if err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrSnapshotFile, err)
	}
	var h SnapshotHeader
	if err := json.Unmarshal(line, &h); err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrSnapshotFile, err)
	}
	if h.Format != SnapshotFileFormat {
		return nil, fmt.Errorf("%w: format %d (this binary reads format %d)", ErrSnapshotFormat, h.Format, SnapshotFileFormat)
	}
	if h.Size <= 0 || h.Size > maxSize {
		return nil, fmt.Errorf("%w: body size %d out of range (at most %d)", ErrSnapshotFile, h.Size, maxSize)
	}
	body := make([]byte, h.Size)
	if n, err := io.ReadFull(br, body); err != nil {
		return nil, fmt.Errorf("%w: truncated: %d of %d body bytes", ErrSnapshotFile, n, h.Size)
	}
	if n, _ := io.CopyN(io.Discard, br, 1); n != 0 {
		return nil, fmt.Errorf("%w: bytes after the %d-byte body", ErrSnapshotFile, h.Size)
	}
	sum := sha256.Sum256(body)
	if got := hex.EncodeToString(sum[:]); got != h.SHA256 {
		return nil, fmt.Errorf("%w: checksum mismatch (body sha256 %s, header says %s)", ErrSnapshotFile, got, h.SHA256)
	}
	f := &SnapshotFile{Header: h}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f.data); err != nil {
		return nil, fmt.Errorf("%w: body: %w", ErrSnapshotFile, err)
	}
	switch {
	case f.data.Version != snapshotVersion:
		return nil, fmt.Errorf("%w: state layout version %d (this binary reads %d)", ErrSnapshotFormat, f.data.Version, snapshotVersion)
	case f.data.Cluster == nil || f.data.Cluster.ClusterID != h.ClusterID:
		return nil, fmt.Errorf("%w: the body is not the state of cluster %s", ErrSnapshotFile, h.ClusterID)
	case f.data.Index != h.Index:
		return nil, fmt.Errorf("%w: body index %d, header index %d", ErrSnapshotFile, f.data.Index, h.Index)
	}
	return f, nil
}

// readHeaderLine reads one '\n'-terminated line of at most maxSnapshotHeader
// bytes, without the newline.
func readHeaderLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return nil, errors.New("line too long")
	}
	if err != nil {
		return nil, errors.New("truncated")
	}
	return line[:len(line)-1], nil
}

// RestorePlan is the state a restore installs, and what it changes.
type RestorePlan struct {
	data snapshotData
	// Services are the names of the restored services, sorted.
	Services []string
	// DroppedNodes are the hostnames of nodes the file lists that are not
	// members of the running cluster: they are left out (a node that
	// comes back with their identity is treated as removed). Sorted.
	DroppedNodes []string
	// DroppedTasks counts the file's tasks left out because their node is
	// not a member; the scheduler places their slots again.
	DroppedTasks int
}

// PlanRestore merges file f into the running cluster's state cur (a
// Store.Snapshot view of the leader's store). Pure. force allows a file of
// another cluster (ErrOtherCluster otherwise). The result:
//
//   - cluster record: cur's, whole (identity, keys, revocations, epoch,
//     pools): the running cluster stays the cluster it is;
//   - nodes: cur's members, with the file's labels and availability for the
//     ones the file knows; the file's other nodes are dropped;
//   - services (and any other desired-state table): the file's;
//   - tasks: the file's, on member nodes, with cur's observed state where it
//     is further along (the reconcilers then converge: a task whose
//     container is gone is reported failed and replaced, a container whose
//     task is not in the state is removed);
//   - images: the file's and cur's, with cur's record of which nodes hold
//     them (image records describe blobs on disks, not intent).
func PlanRestore(f *SnapshotFile, cur *Store, force bool) (*RestorePlan, error) {
	cc := cur.Cluster()
	if cc == nil {
		return nil, fmt.Errorf("restore: %w", ErrNotBootstrapped)
	}
	if f.Header.ClusterID != cc.ClusterID && !force {
		return nil, fmt.Errorf("%w: the file is of cluster %s, this is cluster %s (restore with --force to replace this cluster's services with it anyway)",
			ErrOtherCluster, f.Header.ClusterID, cc.ClusterID)
	}
	// Decode the file's state afresh: the plan owns (and changes) it.
	var data snapshotData
	b, err := json.Marshal(&f.data)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &data); err != nil {
		return nil, err
	}
	plan := &RestorePlan{}
	data.Cluster = cc

	saved := map[string]*api.Node{}
	for _, n := range data.Nodes {
		saved[n.ID] = n
	}
	members := cur.Nodes()
	isMember := map[string]bool{}
	for _, n := range members {
		isMember[n.ID] = true
		if s, ok := saved[n.ID]; ok {
			n.Labels = s.Labels
			if s.Availability != "" {
				n.Availability = s.Availability
			}
		}
	}
	for _, n := range data.Nodes {
		if !isMember[n.ID] {
			plan.DroppedNodes = append(plan.DroppedNodes, n.Hostname)
		}
	}
	data.Nodes = members

	services := map[string]bool{}
	for _, s := range data.Services {
		services[s.ID] = true
		plan.Services = append(plan.Services, s.Name)
	}
	tasks := data.Tasks[:0]
	for _, t := range data.Tasks {
		if t.NodeID != "" && !isMember[t.NodeID] {
			plan.DroppedTasks++
			continue
		}
		if !services[t.ServiceID] {
			continue
		}
		if now, err := cur.Task(t.ID); err == nil && now.NodeID == t.NodeID {
			keepObserved(now, t)
		}
		tasks = append(tasks, t)
	}
	data.Tasks = tasks

	curImages := map[string]*api.Image{}
	for _, img := range cur.Images() {
		curImages[img.ID] = img
	}
	images := data.Images[:0]
	for _, img := range data.Images {
		if now, ok := curImages[img.ID]; ok {
			img.Nodes = now.Nodes
			delete(curImages, img.ID)
		} else {
			img.Nodes = slices.DeleteFunc(img.Nodes, func(id string) bool { return !isMember[id] })
		}
		images = append(images, img)
	}
	for _, img := range curImages {
		images = append(images, img)
	}
	sort.Slice(images, func(i, j int) bool { return images[i].ID < images[j].ID })
	data.Images = images

	sort.Strings(plan.Services)
	sort.Strings(plan.DroppedNodes)
	plan.data = data
	return plan, nil
}

// Encode returns the state plan installs as one snapshot document, its
// index the first past both the file's and after (the leader passes its
// last log index and its store's index, so that versions stay monotonic),
// and that index. Raft.RestoreSnapshot (consensus/raftnode) installs it.
func (p *RestorePlan) Encode(after uint64) (body []byte, index uint64, err error) {
	data := p.data
	data.Index = max(after, data.Index) + 1
	body, err = json.Marshal(&data)
	return body, data.Index, err
}
