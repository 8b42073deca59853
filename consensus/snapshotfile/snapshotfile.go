// Package snapshotfile is the backup file of the replicated state: its
// format (Write, Read) and the merge of one into a running cluster
// (PlanRestore). It imports consensus for the store's snapshot document;
// consensus/raftnode installs a plan.
package snapshotfile

// Backups (`shoal snapshot save|restore`, `shoal init --from-snapshot`).
//
// A snapshot file is the FSM's own snapshot document
// (consensus.WriteSnapshot) behind a small header that makes it safe to
// hand around:
//
//	SHOAL-SNAPSHOT\n
//	{"format":1,"cluster_id":…,"index":…,"created_at":…,"size":N,"sha256":…}\n
//	N bytes: the snapshot document
//
// Read checks the magic, the format version, the size and the sha256 over
// the whole body, that nothing follows it, that the body's cluster ID and
// index are the header's and that no table holds a null entry, before
// anything is decoded into a state: a truncated or damaged file, or one
// changed without its checksum, is refused as a whole. The sha256 is a
// checksum, not a signature: whoever can write the file can change the body
// and recompute it, and Read accepts the result. What a restore checks past
// that is PlanRestore's (checkDesired) and raftnode's (the state must load
// into a store); anything else the file says becomes the cluster's
// desired state. Backups are to be kept where only the cluster's admins
// can write them.
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
// running cluster's identity and members. Raft.RestoreSnapshot
// (consensus/raftnode) installs the result as a user snapshot on the leader
// (raft.Restore), which then sends it to every follower like any other
// snapshot.

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
)

// Format is the version of the snapshot file layout (header and
// body). A reader refuses any other.
const Format = 1

// magicLine is the first line of a snapshot file.
const magicLine = "SHOAL-SNAPSHOT"

// maxHeader bounds the header line a reader buffers.
const maxHeader = 4 << 10

// Errors of snapshot files and restores.
var (
	// ErrNotIntact: the bytes are not an intact snapshot file (not one at
	// all, truncated, changed without its checksum, or larger than the
	// reader allows).
	ErrNotIntact = errors.New("not an intact shoal snapshot file")
	// ErrFormat: the file is a snapshot of a format this binary
	// does not read.
	ErrFormat = errors.New("unsupported snapshot file format")
	// ErrOtherCluster: the file was saved from another cluster than the one
	// it is restored onto (restore with force to do it anyway).
	ErrOtherCluster = errors.New("snapshot of another cluster")
)

// Header is the header line of a snapshot file.
type Header struct {
	Format    int       `json:"format"`
	ClusterID string    `json:"cluster_id"`
	Index     uint64    `json:"index"`
	CreatedAt time.Time `json:"created_at"`
	// Size is the length of the body in bytes.
	Size int64 `json:"size"`
	// SHA256 is the hex sha256 of the body.
	SHA256 string `json:"sha256"`
}

// File is a verified snapshot file.
type File struct {
	Header Header
	data   consensus.SnapshotData
}

// Cluster returns the file's cluster record (nil if the saved store had none).
func (f *File) Cluster() *consensus.ClusterState { return f.data.Cluster }

// Services returns the file's services (the file's own objects: do not modify).
func (f *File) Services() []*api.Service { return f.data.Services }

// Networks returns the file's networks (the file's own objects: do not
// modify).
func (f *File) Networks() []*api.Network { return f.data.Networks }

// Nodes returns the file's nodes (the file's own objects: do not modify).
func (f *File) Nodes() []*api.Node { return f.data.Nodes }

// Tasks returns the file's tasks (the file's own objects: do not modify).
func (f *File) Tasks() []*api.Task { return f.data.Tasks }

// Write writes a snapshot file of s (use a Store.Snapshot view:
// it is read more than once) to w and returns its header. now is the
// creation time recorded in the header.
func Write(s *consensus.Store, w io.Writer, now time.Time) (Header, error) {
	// Through WriteSnapshot and back, so that every table the FSM snapshots
	// is in the file, including ones added after this was written.
	var doc bytes.Buffer
	if err := consensus.WriteSnapshot(s, &doc); err != nil {
		return Header{}, err
	}
	var data consensus.SnapshotData
	if err := json.Unmarshal(doc.Bytes(), &data); err != nil {
		return Header{}, fmt.Errorf("re-read snapshot: %w", err)
	}
	if data.Cluster == nil {
		return Header{}, fmt.Errorf("snapshot: %w", consensus.ErrNotBootstrapped)
	}
	stripClearKeys(data.Cluster)
	body, err := json.Marshal(&data)
	if err != nil {
		return Header{}, fmt.Errorf("encode snapshot: %w", err)
	}
	sum := sha256.Sum256(body)
	h := Header{
		Format: Format, ClusterID: data.Cluster.ClusterID, Index: data.Index,
		CreatedAt: now.UTC(), Size: int64(len(body)), SHA256: hex.EncodeToString(sum[:]),
	}
	line, err := json.Marshal(&h)
	if err != nil {
		return Header{}, err
	}
	var out bytes.Buffer
	out.Grow(len(magicLine) + len(line) + len(body) + 2)
	out.WriteString(magicLine + "\n")
	out.Write(line)
	out.WriteByte('\n')
	out.Write(body)
	if _, err := w.Write(out.Bytes()); err != nil {
		return Header{}, fmt.Errorf("write snapshot file: %w", err)
	}
	return h, nil
}

// stripClearKeys removes what the cluster record holds in the clear and no
// restore uses: the gossip keyring and the pre-sealing plaintext CA key and
// join secret. The sealed blobs stay (ciphertext; the KEK is not in the file).
func stripClearKeys(c *consensus.ClusterState) {
	c.GossipKeys = nil
	c.CAKeyPEM = nil
	c.TokenSecret = ""
}

// Read reads and verifies a whole snapshot file from r. A body
// larger than maxSize is refused. Errors wrap ErrNotIntact or
// ErrFormat and say what is wrong.
func Read(r io.Reader, maxSize int64) (*File, error) {
	br := bufio.NewReaderSize(r, maxHeader)
	magic, err := readHeaderLine(br)
	if err != nil || string(magic) != magicLine {
		return nil, fmt.Errorf("%w: it does not start with %q", ErrNotIntact, magicLine)
	}
	line, err := readHeaderLine(br)
	if err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrNotIntact, err)
	}
	var h Header
	if err := json.Unmarshal(line, &h); err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrNotIntact, err)
	}
	if h.Format != Format {
		return nil, fmt.Errorf("%w: format %d (this binary reads format %d)", ErrFormat, h.Format, Format)
	}
	if h.Size <= 0 || h.Size > maxSize {
		return nil, fmt.Errorf("%w: body size %d out of range (at most %d)", ErrNotIntact, h.Size, maxSize)
	}
	// Read what arrives rather than allocate what the header claims: a
	// header is a claim of the sender, and a peer that sends a few bytes
	// under a claim of the maximum should cost a few bytes.
	body, err := io.ReadAll(io.LimitReader(br, h.Size))
	if err != nil || int64(len(body)) != h.Size {
		return nil, fmt.Errorf("%w: truncated: %d of %d body bytes", ErrNotIntact, len(body), h.Size)
	}
	if n, _ := io.CopyN(io.Discard, br, 1); n != 0 {
		return nil, fmt.Errorf("%w: bytes after the %d-byte body", ErrNotIntact, h.Size)
	}
	sum := sha256.Sum256(body)
	if got := hex.EncodeToString(sum[:]); got != h.SHA256 {
		return nil, fmt.Errorf("%w: checksum mismatch (body sha256 %s, header says %s)", ErrNotIntact, got, h.SHA256)
	}
	f := &File{Header: h}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f.data); err != nil {
		return nil, fmt.Errorf("%w: body: %w", ErrNotIntact, err)
	}
	switch {
	case f.data.Version != consensus.SnapshotVersion:
		return nil, fmt.Errorf("%w: state layout version %d (this binary reads %d)", ErrFormat, f.data.Version, consensus.SnapshotVersion)
	case f.data.Cluster == nil || f.data.Cluster.ClusterID != h.ClusterID:
		return nil, fmt.Errorf("%w: the body is not the state of cluster %s", ErrNotIntact, h.ClusterID)
	case f.data.Index != h.Index:
		return nil, fmt.Errorf("%w: body index %d, header index %d", ErrNotIntact, f.data.Index, h.Index)
	}
	if table := nullRow(&f.data); table != "" {
		return nil, fmt.Errorf("%w: body: a null entry in %s", ErrNotIntact, table)
	}
	return f, nil
}

// nullRow names the first table of d that holds a null entry, or "".
// Write never writes one, and PlanRestore reads every row's fields.
func nullRow(d *consensus.SnapshotData) string {
	for _, t := range []struct {
		name string
		null bool
	}{
		{"nodes", slices.Contains(d.Nodes, nil)},
		{"services", slices.Contains(d.Services, nil)},
		{"tasks", slices.Contains(d.Tasks, nil)},
		{"images", slices.Contains(d.Images, nil)},
		{"networks", slices.Contains(d.Networks, nil)},
		{"secrets", slices.Contains(d.Secrets, nil)},
		{"configs", slices.Contains(d.Configs, nil)},
	} {
		if t.null {
			return t.name
		}
	}
	return ""
}

// readHeaderLine reads one '\n'-terminated line of at most maxHeader
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
	data consensus.SnapshotData
	// Services are the names of the restored services, sorted.
	Services []string
	// DroppedNodes are the hostnames of nodes the file lists that are not
	// members of the running cluster: they are left out (a node that
	// comes back with their identity is treated as removed). Sorted.
	DroppedNodes []string
	// DroppedTasks counts the file's tasks left out because their node is
	// not a member; the scheduler places their slots again.
	DroppedTasks int
	// OrphanTasks counts the file's tasks left out because the file has
	// no service of theirs: nothing would ever run or remove them.
	OrphanTasks int
}

// PlanRestore merges file f into the running cluster's state cur (a
// Store.Snapshot view of the leader's store). Pure. force allows a file of
// another cluster (ErrOtherCluster otherwise). A file with services or
// networks the state machine would not create is refused, consensus.ErrInvalid
// (checkDesired). The result:
//
//   - cluster record: cur's, whole (identity, keys, revocations, epoch,
//     pools): the running cluster stays the cluster it is;
//   - nodes: cur's members, with the file's labels and availability for the
//     ones the file knows; the file's other nodes are dropped;
//   - services (and any other desired-state table): the file's, without
//     the VIPs the state machine would not store (releaseStrayVIPs: a
//     dnsrr service's, one on a network the service does not join);
//   - tasks: the file's, on member nodes, with cur's observed state where it
//     is further along (the reconcilers then converge: a task whose
//     container is gone is reported failed and replaced, a container whose
//     task is not in the state is removed);
//   - images: the file's and cur's, with cur's record of which nodes hold
//     them (image records describe blobs on disks, not intent).
func PlanRestore(f *File, cur *consensus.Store, force bool) (*RestorePlan, error) {
	cc := cur.Cluster()
	if cc == nil {
		return nil, fmt.Errorf("restore: %w", consensus.ErrNotBootstrapped)
	}
	if f.Header.ClusterID != cc.ClusterID && !force {
		return nil, fmt.Errorf("%w: the file is of cluster %s, this is cluster %s (restore with --force to replace this cluster's services with it anyway)",
			ErrOtherCluster, f.Header.ClusterID, cc.ClusterID)
	}
	if err := checkDesired(&f.data, cc); err != nil {
		return nil, err
	}
	// Decode the file's state afresh: the plan owns (and changes) it.
	var data consensus.SnapshotData
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
		// A dnsrr service holds no VIP, nor a service one on a network it
		// does not join: create and update drop them (consensus/fsm
		// assignNetworks), and so does the restore, which installs the
		// state without a command; kept, the address stayed taken for
		// every later allocation.
		releaseStrayVIPs(s)
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
			plan.OrphanTasks++
			continue
		}
		if now, err := cur.Task(t.ID); err == nil && now.NodeID == t.NodeID {
			consensus.KeepObserved(now, t)
		}
		tasks = append(tasks, t)
	}
	data.Tasks = tasks
	restoreShares(&data, cur, isMember)

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

// maxProblems bounds the problems a refused file's error lists.
const maxProblems = 10

// checkDesired refuses the file's services and networks where the state
// machine would refuse to create them (consensus/fsm: checkService,
// CreateNetwork), listing what is wrong (at most maxProblems) in an error
// wrapping consensus.ErrInvalid. A restore installs them without a
// command, so these rules are checked here or not at all; the file's
// checksum says nothing about who wrote it.
//
//   - every service has an ID of its own and a name that is a DNS label
//     (api.ServiceNameProblem), unique in any case;
//   - its published ports are in 1-65535 (target ports too), tcp or udp,
//     and each protocol and port is published once in the whole file;
//   - its VIP, when set, is an IPv4 address no other service holds (one
//     the plan drops — a dnsrr service's, one off the default network —
//     only an IPv4 address); its VIP on another network is in that
//     network's VIP range and no other service's there
//     (checkNetworkVIPs);
//   - every network has an ID of its own and a name that is a DNS label,
//     not the default network's, unique in any case;
//   - across rows and tables (references.go): network subnets and VNIs
//     (checkNetworkRanges, against cc's ranges, which the restore keeps),
//     the IDs of every other table and the names of secrets and configs
//     (checkRows), the networks, secrets and configs services name
//     (checkReferences), and network aliases, which answer for one service
//     per network (checkAliases).
//
// A state written before the state machine enforced these (a dotted name,
// two services on one port) is refused too: the error names each service,
// and lb copes with such a state but a restore need not bring one back.
func checkDesired(d *consensus.SnapshotData, cc *consensus.ClusterState) error {
	var p []string
	bad := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }

	// uniqueID checks one row's ID against the rows of its table before it.
	uniqueID := func(ids map[string]bool, what, id string) {
		switch {
		case id == "":
			bad("%s: no ID", what)
		case ids[id]:
			bad("%s: ID listed twice", what)
		}
		ids[id] = true
	}

	ids := map[string]bool{}
	names := map[string]string{} // lower-case name: the first service's name
	ports := map[string]string{} // "8080/tcp": the service that publishes it
	vips := map[netip.Addr]string{}
	for _, s := range d.Services {
		what := fmt.Sprintf("service %q (ID %q)", s.Name, s.ID)
		uniqueID(ids, what, s.ID)
		if pr := api.ServiceNameProblem(s.Name); pr != "" {
			bad("%s: name: %s", what, pr)
		} else if other, ok := names[strings.ToLower(s.Name)]; ok {
			bad("%s: name taken by service %q (service names are DNS names: case does not count)", what, other)
		} else {
			names[strings.ToLower(s.Name)] = s.Name
		}
		own := map[string]bool{}
		for _, port := range s.Spec.Ports {
			key := publishedKey(port)
			switch {
			case port.Published < 1 || port.Published > 65535 || port.Target < 1 || port.Target > 65535:
				bad("%s: port %d:%d out of range 1-65535", what, port.Published, port.Target)
			case port.Protocol != "" && port.Protocol != "tcp" && port.Protocol != "udp":
				bad("%s: port %d: protocol %q (want tcp or udp)", what, port.Published, port.Protocol)
			case own[key]:
				bad("%s: published port %s listed twice", what, key)
			case ports[key] != "":
				bad("%s: published port %s taken by service %q", what, key, ports[key])
			default:
				ports[key] = s.Name
			}
			own[key] = true
		}
		if s.VIP != "" {
			a, err := netip.ParseAddr(strings.TrimSpace(s.VIP))
			switch {
			case err != nil || !a.Is4():
				bad("%s: VIP %q is not an IPv4 address", what, s.VIP)
			case heldVIPs(s)[api.DefaultNetwork] == "":
				// Dropped by the plan (dnsrr, or off the default
				// network), as create drops it: it takes no address
				// from another service.
			case vips[a] != "":
				bad("%s: VIP %s taken by service %q", what, a, vips[a])
			default:
				vips[a] = s.Name
			}
		}
	}

	ids = map[string]bool{}
	names = map[string]string{}
	for _, n := range d.Networks {
		what := fmt.Sprintf("network %q (ID %q)", n.Name, n.ID)
		uniqueID(ids, what, n.ID)
		switch other, taken := names[strings.ToLower(n.Name)]; {
		case api.NetworkNameProblem(n.Name) != "":
			bad("%s: name: %s", what, api.NetworkNameProblem(n.Name))
		case strings.EqualFold(n.Name, api.DefaultNetwork):
			bad("%s: the name is the cluster's default network's", what)
		case taken:
			bad("%s: name taken by network %q (case does not count)", what, other)
		default:
			names[strings.ToLower(n.Name)] = n.Name
		}
	}
	checkNetworkRanges(d, cc, bad)
	checkNetworkVIPs(d, bad)
	checkRows(d, bad)
	checkReferences(d, bad)
	checkAliases(d, bad)

	if len(p) == 0 {
		return nil
	}
	if len(p) > maxProblems {
		p = append(p[:maxProblems], fmt.Sprintf("and %d more", len(p)-maxProblems))
	}
	return fmt.Errorf("snapshot file refused, nothing changed: %s: %w", strings.Join(p, "; "), consensus.ErrInvalid)
}

// publishedKey names what a published port occupies on every node:
// "8080/tcp" (an empty protocol is tcp), as the state machine counts it.
func publishedKey(p api.PortConfig) string {
	proto := p.Protocol
	if proto == "" {
		proto = "tcp"
	}
	return fmt.Sprintf("%d/%s", p.Published, proto)
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
