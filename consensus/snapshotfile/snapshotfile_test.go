package snapshotfile

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	goruntime "runtime"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

// savedState is a cluster c1 with nodes n1 n2, services web (s1) and db
// (s2), a task of web on each node and an image held by n1.
func savedState(t *testing.T) *harness {
	t.Helper()
	h := newHarness(t)
	h.bootstrap()
	h.must(command.UpsertNode{Node: testNode("n2", "host2")})
	h.must(command.UpdateNode{ID: "n2", Update: api.NodeUpdate{LabelAdd: map[string]string{"zone": "a"}}, Now: t0})
	h.must(command.CreateService{Service: api.Service{ID: "s1", Name: "web", Spec: api.ServiceSpec{Name: "web", Image: "bb:1", Replicas: 2, Env: []string{"A=1"}}}})
	h.must(command.CreateService{Service: api.Service{ID: "s2", Name: "db", Spec: api.ServiceSpec{Name: "db", Image: "bb:1", Replicas: 1}}})
	h.must(command.UpsertTasks{Tasks: []api.Task{
		{ID: "t1", ServiceID: "s1", Slot: 1, NodeID: "n1", DesiredState: api.TaskRunning, State: api.TaskStarting, CreatedAt: t0},
		{ID: "t2", ServiceID: "s1", Slot: 2, NodeID: "n2", DesiredState: api.TaskRunning, State: api.TaskRunning, CreatedAt: t0},
	}})
	h.must(command.UpsertImage{Image: api.Image{ID: "sha256:aa", Tags: []string{"bb:1"}}})
	h.must(command.SetImageNode{ImageID: "sha256:aa", NodeID: "n1", Present: true})
	return h
}

func saveFile(t *testing.T, s *consensus.Store) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := Write(s.Snapshot(), &buf, t0); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestSnapshotFileRoundTrip(t *testing.T) {
	h := savedState(t)
	file := saveFile(t, h.store)
	if !bytes.HasPrefix(file, []byte("SHOAL-SNAPSHOT\n{")) {
		t.Fatalf("file starts %q", file[:40])
	}
	f, err := Read(bytes.NewReader(file), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if f.Header.Format != Format || f.Header.ClusterID != "c1" || f.Header.Index != h.store.Index() || !f.Header.CreatedAt.Equal(t0) {
		t.Fatalf("header %+v", f.Header)
	}
	if len(f.Services()) != 2 || len(f.Nodes()) != 2 || len(f.Tasks()) != 2 {
		t.Fatalf("content: %d services %d nodes %d tasks", len(f.Services()), len(f.Nodes()), len(f.Tasks()))
	}
	// Nothing in the clear: no gossip key, no plaintext CA key (testCluster
	// is a pre-sealing record) — and the store itself is untouched.
	c := f.Cluster()
	if len(c.GossipKeys) != 0 || len(c.CAKeyPEM) != 0 || c.TokenSecret != "" {
		t.Fatalf("clear keys in the file: %+v", c)
	}
	if bytes.Contains(file, bytes.Repeat([]byte{1}, 32)) || strings.Contains(string(file), `"ca_key_pem"`) {
		t.Fatal("key bytes in the file")
	}
	if cur := h.store.Cluster(); len(cur.GossipKeys) != 1 || string(cur.CAKeyPEM) != "key" {
		t.Fatal("saving changed the store")
	}
	// Loading the body into a store gives the saved state back.
	other := newHarness(t)
	var body bytes.Buffer
	_ = json.NewEncoder(&body).Encode(&f.data)
	if err := other.store.Restore(&body); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"s1", "s2"} {
		want, _ := h.store.Service(id)
		got, err := other.store.Service(id)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("service %s: %+v, want %+v (%v)", id, got, want, err)
		}
	}
}

func TestSnapshotFileRefused(t *testing.T) {
	h := savedState(t)
	file := saveFile(t, h.store)
	hdrEnd := bytes.IndexByte(file[len("SHOAL-SNAPSHOT\n"):], '\n') + len("SHOAL-SNAPSHOT\n") + 1
	header := func(mut func(*Header)) []byte {
		var hd Header
		if err := json.Unmarshal(file[len("SHOAL-SNAPSHOT\n"):hdrEnd-1], &hd); err != nil {
			t.Fatal(err)
		}
		mut(&hd)
		line, _ := json.Marshal(&hd)
		out := append([]byte("SHOAL-SNAPSHOT\n"), line...)
		out = append(out, '\n')
		return append(out, file[hdrEnd:]...)
	}
	flip := func(at int) []byte {
		b := bytes.Clone(file)
		b[at] ^= 0x20
		return b
	}
	// A tampered body whose checksum the tamperer recomputed: the body's
	// cluster ID no longer matches the header's.
	retagged := func() []byte {
		var hd Header
		_ = json.Unmarshal(file[len("SHOAL-SNAPSHOT\n"):hdrEnd-1], &hd)
		body := bytes.Replace(file[hdrEnd:], []byte(`"cluster_id":"c1"`), []byte(`"cluster_id":"c2"`), 1)
		var out bytes.Buffer
		out.WriteString("SHOAL-SNAPSHOT\n")
		hd.Size = int64(len(body))
		sum := sha256.Sum256(body)
		hd.SHA256 = hex.EncodeToString(sum[:])
		line, _ := json.Marshal(&hd)
		out.Write(line)
		out.WriteByte('\n')
		out.Write(body)
		return out.Bytes()
	}
	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrNotIntact},
		{"not a snapshot", []byte("hello\nworld\n"), ErrNotIntact},
		{"header only", file[:hdrEnd], ErrNotIntact},
		{"truncated by one byte", file[:len(file)-1], ErrNotIntact},
		{"truncated in half", file[:hdrEnd+(len(file)-hdrEnd)/2], ErrNotIntact},
		{"trailing bytes", append(bytes.Clone(file), 'x'), ErrNotIntact},
		{"body byte flipped", flip(hdrEnd + 20), ErrNotIntact},
		{"last byte flipped", flip(len(file) - 2), ErrNotIntact},
		{"checksum changed", header(func(h *Header) { h.SHA256 = strings.Repeat("0", 64) }), ErrNotIntact},
		{"size grown", header(func(h *Header) { h.Size++ }), ErrNotIntact},
		{"size too big", header(func(h *Header) { h.Size = 1 << 40 }), ErrNotIntact},
		{"header cluster changed", header(func(h *Header) { h.ClusterID = "c2" }), ErrNotIntact},
		{"header index changed", header(func(h *Header) { h.Index++ }), ErrNotIntact},
		{"body retagged with a fresh checksum", retagged(), ErrNotIntact},
		{"format 2", header(func(h *Header) { h.Format = 2 }), ErrFormat},
		{"format 0", header(func(h *Header) { h.Format = 0 }), ErrFormat},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read(bytes.NewReader(tc.b), 1<<20)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
	// A body larger than the reader allows.
	if _, err := Read(bytes.NewReader(file), 16); !errors.Is(err, ErrNotIntact) {
		t.Fatalf("oversized body: %v", err)
	}
}

func TestPlanRestore(t *testing.T) {
	saved := savedState(t)
	f, err := Read(bytes.NewReader(saveFile(t, saved.store)), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	// The running cluster moved on: n2 was removed and n3 joined, the
	// token and gossip key rotated, web's task t1 is now running, db was
	// removed and cache created.
	cur := savedState(t)
	cur.must(command.RemoveNode{ID: "n2", Now: t0})
	cur.must(command.UpsertNode{Node: testNode("n3", "host3")})
	cur.must(command.RotateToken{SecretHash: "new"})
	cur.must(command.SetGossipKeys{Keys: [][]byte{bytes.Repeat([]byte{2}, 32)}})
	cur.must(command.TaskStatus{NodeID: "n1", Statuses: []api.TaskStatus{{TaskID: "t1", State: api.TaskRunning, ContainerID: "ctr1"}}})
	cur.must(command.DeleteService{ID: "s2"})
	cur.must(command.CreateService{Service: api.Service{ID: "s3", Name: "cache", Spec: api.ServiceSpec{Name: "cache", Image: "bb:1", Replicas: 1}}})
	cur.must(command.UpsertTasks{Tasks: []api.Task{{ID: "t3", ServiceID: "s3", Slot: 1, NodeID: "n3", DesiredState: api.TaskRunning, CreatedAt: t0}}})
	cur.must(command.SetImageNode{ImageID: "sha256:aa", NodeID: "n3", Present: true})
	cur.must(command.UpsertImage{Image: api.Image{ID: "sha256:bb", Tags: []string{"new:1"}}})
	curCluster := cur.store.Cluster()

	plan, err := PlanRestore(f, cur.store.Snapshot(), false)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(plan.Services, []string{"db", "web"}) || !reflect.DeepEqual(plan.DroppedNodes, []string{"host2"}) || plan.DroppedTasks != 1 {
		t.Fatalf("plan summary %+v", plan)
	}
	// Install it into a store, as the FSM does, and look.
	var body bytes.Buffer
	_ = json.NewEncoder(&body).Encode(&plan.data)
	got := consensus.NewStore()
	if err := got.Restore(&body); err != nil {
		t.Fatal(err)
	}
	if c := got.Cluster(); !reflect.DeepEqual(c, curCluster) {
		t.Fatalf("cluster record not the running one:\n%+v\n%+v", c, curCluster)
	}
	var names []string
	for _, s := range got.Services() {
		names = append(names, s.Name)
	}
	if !reflect.DeepEqual(names, []string{"web", "db"}) && !reflect.DeepEqual(names, []string{"db", "web"}) {
		t.Fatalf("services %v", names)
	}
	if s, _ := got.ServiceByName("web"); s == nil || s.Spec.Env[0] != "A=1" || s.Spec.Replicas != 2 {
		t.Fatalf("web %+v", s)
	}
	var nodes []string
	for _, n := range got.Nodes() {
		nodes = append(nodes, n.ID)
	}
	if !reflect.DeepEqual(nodes, []string{"n1", "n3"}) {
		t.Fatalf("nodes %v, want the members n1 n3", nodes)
	}
	tasks := got.Tasks()
	if len(tasks) != 1 || tasks[0].ID != "t1" || tasks[0].State != api.TaskRunning || tasks[0].ContainerID != "ctr1" {
		t.Fatalf("tasks %+v, want t1 with its current observed state", tasks)
	}
	img, err := got.Image("sha256:aa")
	if err != nil || !reflect.DeepEqual(img.Nodes, []string{"n1", "n3"}) {
		t.Fatalf("image aa %+v %v", img, err)
	}
	if _, err := got.Image("sha256:bb"); err != nil {
		t.Fatalf("image loaded after the save dropped: %v", err)
	}

	// The file's labels and availability come back for a member.
	cur2 := savedState(t)
	cur2.must(command.UpdateNode{ID: "n2", Update: api.NodeUpdate{Availability: api.AvailabilityDrain, LabelRm: []string{"zone"}}, Now: t0})
	plan2, err := PlanRestore(f, cur2.store.Snapshot(), false)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range plan2.data.Nodes {
		if n.ID == "n2" && (n.Availability != api.AvailabilityActive || n.Labels["zone"] != "a") {
			t.Fatalf("n2 after restore: %+v", n)
		}
	}

	// Another cluster's file needs force.
	other := newHarness(t)
	oc := testCluster()
	oc.ClusterID = "c2"
	other.must(command.BootstrapCluster{Cluster: oc, Node: testNode("m1", "m1")})
	if _, err := PlanRestore(f, other.store.Snapshot(), false); !errors.Is(err, ErrOtherCluster) {
		t.Fatalf("other cluster: %v", err)
	}
	p3, err := PlanRestore(f, other.store.Snapshot(), true)
	if err != nil {
		t.Fatal(err)
	}
	if p3.data.Cluster.ClusterID != "c2" || len(p3.data.Tasks) != 0 || len(p3.DroppedNodes) != 2 || len(p3.data.Nodes) != 1 {
		t.Fatalf("forced plan: cluster %s, %d tasks, dropped %v, nodes %d", p3.data.Cluster.ClusterID, len(p3.data.Tasks), p3.DroppedNodes, len(p3.data.Nodes))
	}
	// Planning changed neither the file nor the store.
	if len(f.Tasks()) != 2 || len(f.Nodes()) != 2 || len(cur.store.Tasks()) != 3 {
		t.Fatal("planning changed its inputs")
	}
}

// FuzzRead: a snapshot file comes from the user's disk; the
// reader must never panic, and whatever it accepts is consistent.
func FuzzRead(f *testing.F) {
	// savedState only fails its T on a broken FSM, which other tests catch.
	h := savedState(&testing.T{})
	var buf bytes.Buffer
	if _, err := Write(h.store.Snapshot(), &buf, t0); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte("SHOAL-SNAPSHOT\n{\"format\":1,\"size\":2,\"sha256\":\"44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a\"}\n{}"))
	f.Add([]byte("SHOAL-SNAPSHOT\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		sf, err := Read(bytes.NewReader(b), 1<<20)
		if err != nil {
			if !errors.Is(err, ErrNotIntact) && !errors.Is(err, ErrFormat) {
				t.Fatalf("error without a sentinel: %v", err)
			}
			return
		}
		if sf.Cluster() == nil || sf.Cluster().ClusterID != sf.Header.ClusterID || sf.data.Index != sf.Header.Index {
			t.Fatalf("accepted an inconsistent file: %+v", sf.Header)
		}
	})
}

// TestReadAllocatesWhatArrives: a header that claims a huge body followed by
// a few bytes is refused as truncated without the reader allocating the
// claimed size (a restore RPC's header is the sender's claim).
func TestReadAllocatesWhatArrives(t *testing.T) {
	const claim = 200 << 20
	in := magicLine + "\n" + fmt.Sprintf(`{"format":%d,"cluster_id":"c","index":1,"size":%d,"sha256":"00"}`, Format, claim) + "\nshort"
	var before, after goruntime.MemStats
	goruntime.ReadMemStats(&before)
	_, err := Read(strings.NewReader(in), claim)
	goruntime.ReadMemStats(&after)
	if !errors.Is(err, ErrNotIntact) || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("Read: %v, want a truncated ErrNotIntact", err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 16<<20 {
		t.Fatalf("Read allocated %d MiB for a 5-byte body that claimed %d MiB", got>>20, claim>>20)
	}
}

// withHeader makes body a snapshot file: a header with the body's cluster
// ID and index (when it has them), its size and its sha256, as anyone who
// edits a backup can write. The checksum is not a signature.
func withHeader(body []byte) []byte {
	var probe struct {
		Index   uint64 `json:"index"`
		Cluster *struct {
			ClusterID string `json:"cluster_id"`
		} `json:"cluster"`
	}
	_ = json.Unmarshal(body, &probe)
	h := Header{Format: Format, Index: probe.Index, CreatedAt: t0, Size: int64(len(body))}
	if probe.Cluster != nil {
		h.ClusterID = probe.Cluster.ClusterID
	}
	sum := sha256.Sum256(body)
	h.SHA256 = hex.EncodeToString(sum[:])
	line, _ := json.Marshal(&h)
	return slices.Concat([]byte(magicLine+"\n"), line, []byte("\n"), body)
}

// editFile returns file with its body changed by edit and a fresh header.
func editFile(t *testing.T, file []byte, edit func(*consensus.SnapshotData)) []byte {
	t.Helper()
	f, err := Read(bytes.NewReader(file), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	data := f.data
	edit(&data)
	body, err := json.Marshal(&data)
	if err != nil {
		t.Fatal(err)
	}
	return withHeader(body)
}

// TestReadRefusesNullRows: a body edited to hold a null entry in a table,
// its checksum recomputed, is refused whole. Before, Read accepted it and
// PlanRestore dereferenced the entry: a nil-pointer panic on the leader,
// which ends the agent when the file came from another manager over the
// cluster port.
func TestReadRefusesNullRows(t *testing.T) {
	h := savedState(t)
	file := saveFile(t, h.store)
	if _, err := Read(bytes.NewReader(editFile(t, file, func(*consensus.SnapshotData) {})), 1<<20); err != nil {
		t.Fatalf("the unedited body with a fresh header: %v", err)
	}
	for table, edit := range map[string]func(*consensus.SnapshotData){
		"nodes":    func(d *consensus.SnapshotData) { d.Nodes = append(d.Nodes, nil) },
		"services": func(d *consensus.SnapshotData) { d.Services = append(d.Services, nil) },
		"tasks":    func(d *consensus.SnapshotData) { d.Tasks = append(d.Tasks, nil) },
		"images":   func(d *consensus.SnapshotData) { d.Images = append(d.Images, nil) },
		"networks": func(d *consensus.SnapshotData) { d.Networks = append(d.Networks, nil) },
		"secrets":  func(d *consensus.SnapshotData) { d.Secrets = append(d.Secrets, nil) },
		"configs":  func(d *consensus.SnapshotData) { d.Configs = append(d.Configs, nil) },
	} {
		t.Run(table, func(t *testing.T) {
			f, err := Read(bytes.NewReader(editFile(t, file, edit)), 1<<20)
			if err == nil {
				_, err = PlanRestore(f, h.store.Snapshot(), false)
				t.Fatalf("a null entry in %s was read (plan: %v)", table, err)
			}
			if !errors.Is(err, ErrNotIntact) || !strings.Contains(err.Error(), "null entry in "+table) {
				t.Fatalf("err %v, want ErrNotIntact naming %s", err, table)
			}
		})
	}
}

// FuzzPlanRestore: a backup's body is whatever its editor wrote, under a
// header that matches it. Whatever Read accepts, PlanRestore must not
// panic on, and a refusal is ErrInvalid.
func FuzzPlanRestore(f *testing.F) {
	// savedState only fails its T on a broken FSM, which other tests catch.
	h := savedState(&testing.T{})
	var doc bytes.Buffer
	if err := consensus.WriteSnapshot(h.store.Snapshot(), &doc); err != nil {
		f.Fatal(err)
	}
	f.Add(doc.Bytes())
	f.Add(bytes.Replace(doc.Bytes(), []byte(`"services":[`), []byte(`"services":[null,`), 1))
	f.Add(bytes.Replace(doc.Bytes(), []byte(`"tasks":[`), []byte(`"tasks":[null,`), 1))
	f.Add([]byte(`{"version":1,"index":3,"cluster":{"cluster_id":"c1"},"nodes":[null],"services":null,"tasks":null,"images":[null]}`))
	cur := h.store.Snapshot()
	f.Fuzz(func(t *testing.T, body []byte) {
		sf, err := Read(bytes.NewReader(withHeader(body)), 1<<20)
		if err != nil {
			return
		}
		if _, err := PlanRestore(sf, cur, true); err != nil && !errors.Is(err, consensus.ErrInvalid) {
			t.Fatalf("refusal without a sentinel: %v", err)
		}
	})
}

// TestPlanRestoreRefusesWhatCreateRefuses: a file edited to hold services
// or networks the state machine would not create (its checksum
// recomputed) is refused by PlanRestore, naming the row. Before, the plan
// carried them into the state: a service without a name panicked the
// leader in raft (consensus/raftnode refuses that now), the others went in.
// Where only services are edited, the state machine is asked to create
// them too, so that these rules and consensus/fsm's do not drift apart.
func TestPlanRestoreRefusesWhatCreateRefuses(t *testing.T) {
	saved := savedState(t)
	file := saveFile(t, saved.store)
	svc := func(d *consensus.SnapshotData, id string) *api.Service {
		for _, s := range d.Services {
			if s.ID == id {
				return s
			}
		}
		t.Fatalf("no service %s", id)
		return nil
	}
	port := func(published, target int, proto string) api.PortConfig {
		return api.PortConfig{Published: published, Target: target, Protocol: proto}
	}
	network := func(id, name string) *api.Network {
		return &api.Network{ID: id, Name: name, Subnet: "10.44.0.0/24", VNI: 4100, CreatedAt: t0}
	}
	cases := []struct {
		name string
		edit func(*consensus.SnapshotData)
		want string // in the error
	}{
		{"service without a name", func(d *consensus.SnapshotData) { svc(d, "s1").Name = "" }, `service "" (ID "s1"): name: must not be empty`},
		{"service without an ID", func(d *consensus.SnapshotData) { svc(d, "s1").ID = "" }, `"web" (ID ""): no ID`},
		{"service ID twice", func(d *consensus.SnapshotData) { svc(d, "s2").ID = "s1" }, "ID listed twice"},
		{"dotted name", func(d *consensus.SnapshotData) { svc(d, "s1").Name = "web.v1" }, `character '.' not allowed`},
		{"names differing in case", func(d *consensus.SnapshotData) { svc(d, "s2").Name = "WEB" }, `name taken by service "web"`},
		// (A published port 0 is refused too, but is no drift: a create
		// asks the state machine to pick one with it, while a restored
		// state is installed as it is. TestPlanRestoreRefusesPortZero.)
		{"published port -1", func(d *consensus.SnapshotData) { svc(d, "s1").Spec.Ports = []api.PortConfig{port(-1, 80, "")} }, "port -1:80 out of range"},
		{"target port 70000", func(d *consensus.SnapshotData) { svc(d, "s1").Spec.Ports = []api.PortConfig{port(80, 70000, "")} }, "port 80:70000 out of range"},
		{"protocol sctp", func(d *consensus.SnapshotData) { svc(d, "s1").Spec.Ports = []api.PortConfig{port(80, 80, "sctp")} }, `protocol "sctp"`},
		{"port twice in a service", func(d *consensus.SnapshotData) {
			svc(d, "s1").Spec.Ports = []api.PortConfig{port(80, 80, ""), port(80, 81, "tcp")}
		}, "published port 80/tcp listed twice"},
		{"port in two services", func(d *consensus.SnapshotData) {
			svc(d, "s1").Spec.Ports = []api.PortConfig{port(80, 80, "")}
			svc(d, "s2").Spec.Ports = []api.PortConfig{port(80, 5432, "tcp")}
		}, "published port 80/tcp taken by service"},
		{"VIP not IPv4", func(d *consensus.SnapshotData) { svc(d, "s1").VIP = "fd00::1" }, `VIP "fd00::1" is not an IPv4 address`},
		{"VIP in two services", func(d *consensus.SnapshotData) { svc(d, "s1").VIP, svc(d, "s2").VIP = "10.43.0.5", "10.43.0.5" }, "VIP 10.43.0.5 taken by service"},
		// A dnsrr service's VIP is dropped (TestPlanRestoreDNSRRHoldsNoVIP),
		// but one that is no address is refused, as create refuses it.
		{"dnsrr service's VIP not IPv4", func(d *consensus.SnapshotData) {
			svc(d, "s1").Spec.EndpointMode, svc(d, "s1").VIP = api.EndpointDNSRR, "nope"
		}, `VIP "nope" is not an IPv4 address`},
		// The state machine's alias rules (consensus/fsm checkAliases): a
		// name answers for one service per network.
		{"alias that is another service's name", func(d *consensus.SnapshotData) {
			svc(d, "s1").Spec.NetworkAliases = map[string][]string{api.DefaultNetwork: {"DB"}}
		}, `alias DB of service "web" on network default: the name is taken there by service "db"`},
		{"alias in two services", func(d *consensus.SnapshotData) {
			svc(d, "s1").Spec.NetworkAliases = map[string][]string{api.DefaultNetwork: {"www"}}
			svc(d, "s2").Spec.NetworkAliases = map[string][]string{api.DefaultNetwork: {"WWW"}}
		}, `alias WWW of service "db" on network default: the name is taken there by alias www of service "web"`},
		{"network without a name", func(d *consensus.SnapshotData) { d.Networks = append(d.Networks, network("w1", "")) }, `network "" (ID "w1"): name: must not be empty`},
		{"network without an ID", func(d *consensus.SnapshotData) { d.Networks = append(d.Networks, network("", "back")) }, `network "back" (ID ""): no ID`},
		{"network named default", func(d *consensus.SnapshotData) { d.Networks = append(d.Networks, network("w1", "Default")) }, "default network's"},
		{"networks differing in case", func(d *consensus.SnapshotData) {
			d.Networks = append(d.Networks, network("w1", "back"), network("w2", "BACK"))
		}, `name taken by network "back"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Read(bytes.NewReader(editFile(t, file, tc.edit)), 1<<20)
			if err != nil {
				t.Fatalf("read: %v (the edit is for PlanRestore to refuse)", err)
			}
			_, err = PlanRestore(f, saved.store.Snapshot(), false)
			if !errors.Is(err, consensus.ErrInvalid) || !strings.Contains(err.Error(), tc.want) ||
				!strings.HasPrefix(err.Error(), "snapshot file refused, nothing changed: ") {
				t.Fatalf("plan: %v, want a refusal wrapping ErrInvalid with %q", err, tc.want)
			}
			if len(f.data.Networks) == 0 && !createRefused(t, f.Services()) {
				t.Fatal("the state machine creates these services: the rules drifted apart")
			}
		})
	}
	// The unedited file still plans, and its services create.
	f, err := Read(bytes.NewReader(editFile(t, file, func(*consensus.SnapshotData) {})), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := PlanRestore(f, saved.store.Snapshot(), false); err != nil {
		t.Fatalf("plan of the unedited file: %v", err)
	}
	if createRefused(t, f.Services()) {
		t.Fatal("the state machine refuses the unedited services")
	}
	// Many problems are listed up to a bound.
	many := editFile(t, file, func(d *consensus.SnapshotData) {
		for i := range 20 {
			d.Services = append(d.Services, &api.Service{ID: fmt.Sprintf("x%d", i), Name: "-"})
		}
	})
	f, err = Read(bytes.NewReader(many), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := PlanRestore(f, saved.store.Snapshot(), false); err == nil || !strings.HasSuffix(err.Error(), "; and 10 more: "+consensus.ErrInvalid.Error()) {
		t.Fatalf("20 bad services: %v", err)
	}
}

// createRefused reports whether the state machine refuses to create
// services, one after another, on a fresh cluster whose only networks are
// the default one's.
func createRefused(t *testing.T, services []*api.Service) bool {
	t.Helper()
	h := newHarness(t)
	h.bootstrap()
	for _, s := range services {
		s := consensus.CloneService(s)
		s.Spec.Name = s.Name // a create names the service by its spec when Name is empty
		s.Spec.Networks = nil
		data, err := command.Encode(command.CreateService{Service: *s})
		if err != nil {
			t.Fatal(err)
		}
		h.idx++
		if r := h.fsm.Apply(&raft.Log{Index: h.idx, Type: raft.LogCommand, Data: data}).(fsm.Result); r.Err != nil {
			return true
		}
	}
	return false
}

// TestPlanRestoreRefusesBrokenReferences: a file whose rows break what the
// state machine guarantees across rows — overlapping subnets, a VNI twice,
// an ID twice, a service naming a network, secret or config the file
// lacks — is refused naming the row, with nothing changed. Before, the
// plan installed them: two bridges routed one subnet, a second row with an
// ID replaced the first silently, a service's tasks failed on every node
// for good. A file with consistent references plans, and the tasks of
// services it lacks are dropped and counted.
func TestPlanRestoreRefusesBrokenReferences(t *testing.T) {
	saved := savedState(t)
	file := saveFile(t, saved.store)
	net := func(id, name, subnet string, vni int) *api.Network {
		return &api.Network{ID: id, Name: name, Subnet: subnet, VNI: vni, CreatedAt: t0}
	}
	ref := func(name string) []api.FileReference { return []api.FileReference{{Source: name}} }
	// consistent: a network, a secret and a config the services name.
	consistent := func(d *consensus.SnapshotData) {
		d.Networks = []*api.Network{net("w1", "back", "10.50.0.0/16", 4100), net("w2", "front", "10.51.0.0/16", 4101)}
		d.Secrets = []*consensus.Secret{{ID: "x1", Name: "pw", CreatedAt: t0}}
		d.Configs = []*consensus.ConfigObject{{ID: "c1", Name: "conf", CreatedAt: t0}}
		for _, s := range d.Services {
			if s.ID == "s1" {
				s.Spec.Networks = []string{"back", api.DefaultNetwork}
				s.Spec.Secrets, s.Spec.Configs = ref("pw"), ref("conf")
			}
		}
	}
	svc := func(d *consensus.SnapshotData) *api.Service { return d.Services[0] }
	cases := []struct {
		name string
		edit func(*consensus.SnapshotData)
		want string
	}{
		{"overlapping subnets", func(d *consensus.SnapshotData) { d.Networks[1].Subnet = "10.50.128.0/17" },
			`network "front" (ID "w2"): subnet 10.50.128.0/17 overlaps network "back"'s subnet 10.50.0.0/16`},
		{"subnet in the cluster's range", func(d *consensus.SnapshotData) { d.Networks[1].Subnet = "10.42.0.0/17" },
			"overlaps the cluster's node range 10.42.0.0/16"},
		{"subnet in the VIP range", func(d *consensus.SnapshotData) { d.Networks[1].Subnet = "10.43.0.0/16" },
			"overlaps the cluster's VIP range"},
		{"subnet in the tunnel range", func(d *consensus.SnapshotData) { d.Networks[1].Subnet = "100.64.0.0/17" },
			"overlaps the WireGuard tunnel range"},
		{"subnet not a prefix", func(d *consensus.SnapshotData) { d.Networks[1].Subnet = "" }, `subnet "" is not an IPv4 prefix`},
		{"subnet too small", func(d *consensus.SnapshotData) { d.Networks[1].Subnet = "10.51.0.0/24" }, "smaller than a /19"},
		{"small subnet, shares not allocated", func(d *consensus.SnapshotData) { d.Networks[1].Subnet = "10.51.0.0/24" }, "its node shares are not allocated"},
		{"share_bits on a large subnet", func(d *consensus.SnapshotData) { d.Networks[1].ShareBits = api.AllocatedShareBits }, "large enough for index-derived node shares"},
		{"subnet too small for a share", func(d *consensus.SnapshotData) {
			d.Networks[1].Subnet, d.Networks[1].ShareBits = "10.51.0.0/28", api.AllocatedShareBits
		}, "want 28, on a /27 or larger"},
		{"share outside the lower half", func(d *consensus.SnapshotData) {
			d.Networks[1].Subnet, d.Networks[1].ShareBits = "10.51.0.0/24", api.AllocatedShareBits
			d.Networks[1].Shares = map[string]string{"n1": "10.51.0.128/28"}
		}, `node n1's share "10.51.0.128/28" is not a /28 of the lower half`},
		{"share held twice", func(d *consensus.SnapshotData) {
			d.Networks[1].Subnet, d.Networks[1].ShareBits = "10.51.0.0/24", api.AllocatedShareBits
			d.Networks[1].Shares = map[string]string{"n1": "10.51.0.16/28", "n2": "10.51.0.16/28"}
		}, "share 10.51.0.16/28 held by nodes n1 and n2"},
		{"VNI twice", func(d *consensus.SnapshotData) { d.Networks[1].VNI = 4100 }, `VNI 4100 taken by network "back"`},
		{"VNI 0", func(d *consensus.SnapshotData) { d.Networks[1].VNI = 0 }, "VNI 0 (want"},
		{"service on a network the file lacks", func(d *consensus.SnapshotData) { svc(d).Spec.Networks = []string{"gone"} },
			`network "gone" is not in the file`},
		{"service on a network twice", func(d *consensus.SnapshotData) { svc(d).Spec.Networks = []string{"back", "back"} },
			`network "back" listed twice`},
		{"service with a secret the file lacks", func(d *consensus.SnapshotData) { svc(d).Spec.Secrets = ref("gone") },
			`secret "gone" is not in the file`},
		{"service with a config the file lacks", func(d *consensus.SnapshotData) { svc(d).Spec.Configs = ref("gone") },
			`config "gone" is not in the file`},
		{"secret ID twice", func(d *consensus.SnapshotData) {
			d.Secrets = append(d.Secrets, &consensus.Secret{ID: "x1", Name: "other"})
		}, `secret "other" (ID "x1"): ID listed twice`},
		{"secret name twice", func(d *consensus.SnapshotData) {
			d.Secrets = append(d.Secrets, &consensus.Secret{ID: "x2", Name: "pw"})
		}, `secret "pw" (ID "x2"): name taken by secret x1`},
		{"config ID twice", func(d *consensus.SnapshotData) {
			d.Configs = append(d.Configs, &consensus.ConfigObject{ID: "c1", Name: "other"})
		}, `config "other" (ID "c1"): ID listed twice`},
		{"task ID twice", func(d *consensus.SnapshotData) { d.Tasks[1].ID = d.Tasks[0].ID }, `(ID "t1"): ID listed twice`},
		{"image ID twice", func(d *consensus.SnapshotData) { d.Images = append(d.Images, &api.Image{ID: "sha256:aa"}) },
			`image "sha256:aa": ID listed twice`},
		{"task state unknown", func(d *consensus.SnapshotData) { d.Tasks[0].State = "dancing" }, `(ID "t1"): state "dancing"`},
		{"node ID twice", func(d *consensus.SnapshotData) { d.Nodes[1].ID = d.Nodes[0].ID }, `(ID "n1"): ID listed twice`},
		{"node availability unknown", func(d *consensus.SnapshotData) { d.Nodes[1].Availability = "off" }, `availability "off"`},
		{"node label with an empty key", func(d *consensus.SnapshotData) { d.Nodes[1].Labels = map[string]string{"": "x"} }, "an empty label key"},
	}
	before := stateDoc(t, saved.store)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Read(bytes.NewReader(editFile(t, file, func(d *consensus.SnapshotData) { consistent(d); tc.edit(d) })), 1<<20)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			_, err = PlanRestore(f, saved.store.Snapshot(), false)
			if !errors.Is(err, consensus.ErrInvalid) || !strings.Contains(err.Error(), tc.want) ||
				!strings.HasPrefix(err.Error(), "snapshot file refused, nothing changed: ") {
				t.Fatalf("plan: %v, want a refusal wrapping ErrInvalid with %q", err, tc.want)
			}
			if stateDoc(t, saved.store) != before {
				t.Fatal("a refused plan changed the state")
			}
		})
	}

	f, err := Read(bytes.NewReader(editFile(t, file, func(d *consensus.SnapshotData) {
		consistent(d)
		d.Tasks = append(d.Tasks, &api.Task{ID: "t9", ServiceID: "gone", NodeID: "n1", CreatedAt: t0})
	})), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := PlanRestore(f, saved.store.Snapshot(), false)
	if err != nil {
		t.Fatalf("plan of a consistent file: %v", err)
	}
	if plan.OrphanTasks != 1 {
		t.Errorf("orphan tasks %d, want 1", plan.OrphanTasks)
	}
	body, _, err := plan.Encode(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := consensus.NewStore().Restore(bytes.NewReader(body)); err != nil {
		t.Fatalf("the plan does not load: %v", err)
	}
}

// stateDoc is the store's snapshot document, to compare.
func stateDoc(t *testing.T, s *consensus.Store) string {
	t.Helper()
	var buf bytes.Buffer
	if err := consensus.WriteSnapshot(s, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// TestPlanRestoreRefusesPortZero: a stored spec always holds its published
// port (the state machine picks one for a create that leaves it at 0), and
// a restored state is installed as it is, picking nothing: a file with a
// port 0 is refused.
func TestPlanRestoreRefusesPortZero(t *testing.T) {
	saved := savedState(t)
	file := saveFile(t, saved.store)
	edited := editFile(t, file, func(d *consensus.SnapshotData) {
		d.Services[0].Spec.Ports = []api.PortConfig{{Published: 0, Target: 80, Protocol: "tcp"}}
	})
	f, err := Read(bytes.NewReader(edited), 1<<20)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if _, err := PlanRestore(f, saved.store.Snapshot(), false); !errors.Is(err, consensus.ErrInvalid) || !strings.Contains(err.Error(), "port 0:80 out of range") {
		t.Fatalf("plan: %v, want port 0 refused", err)
	}
}

// TestPlanRestoreDNSRRHoldsNoVIP: a service in endpoint mode dnsrr holds
// no VIP on any network (create and update drop one: consensus/fsm
// assignNetworks). A file that gives one a VIP (edited, or written by a
// bug) was installed as it was: the service kept the VIP (`service
// inspect` showed it) and the address stayed taken for every later
// allocation. The plan drops it, as a create of the service would.
func TestPlanRestoreDNSRRHoldsNoVIP(t *testing.T) {
	saved := savedState(t)
	saved.must(command.CreateNetwork{Network: api.Network{ID: "net1", Name: "back"}})
	web, _ := saved.store.Service("s1")
	web.Spec.Networks = []string{api.DefaultNetwork, "back"}
	saved.must(command.UpdateService{Service: *web})
	web, _ = saved.store.Service("s1")
	if web.VIP == "" || web.VIPs["back"] == "" {
		t.Fatalf("web holds no VIPs to begin with: %q %v", web.VIP, web.VIPs)
	}
	oldVIP, oldBack := web.VIP, web.VIPs["back"]
	edited := editFile(t, saveFile(t, saved.store), func(d *consensus.SnapshotData) {
		for _, s := range d.Services {
			if s.ID == "s1" {
				s.Spec.EndpointMode = api.EndpointDNSRR // VIP and VIPs kept
			}
		}
	})
	f, err := Read(bytes.NewReader(edited), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := PlanRestore(f, saved.store.Snapshot(), false)
	if err != nil {
		t.Fatal(err)
	}
	body, _, err := plan.Encode(0)
	if err != nil {
		t.Fatal(err)
	}
	got := consensus.NewStore()
	if err := got.Restore(bytes.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	s, err := got.Service("s1")
	if err != nil {
		t.Fatal(err)
	}
	if s.VIP != "" || len(s.VIPs) != 0 || s.VIPs == nil {
		t.Fatalf("restored dnsrr service holds VIP %q, VIPs %v (want \"\" and {})", s.VIP, s.VIPs)
	}
	// The addresses are free again: the FSM allocates them to the next
	// services that need them.
	held := map[string]bool{}
	for _, o := range got.Services() {
		held[o.VIP] = true
		for _, v := range o.VIPs {
			held[v] = true
		}
	}
	if held[oldVIP] || held[oldBack] {
		t.Fatalf("%s or %s still held after the restore", oldVIP, oldBack)
	}
	// A VIP the dnsrr service had is no clash: it is dropped, and the
	// service that holds it keeps it (as the state machine creates the
	// dnsrr service, then the other).
	clash := editFile(t, edited, func(d *consensus.SnapshotData) {
		for _, s := range d.Services {
			if s.ID == "s2" {
				s.VIP, s.VIPs = oldVIP, map[string]string{api.DefaultNetwork: oldVIP}
			}
		}
	})
	fc, err := Read(bytes.NewReader(clash), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := PlanRestore(fc, saved.store.Snapshot(), false); err != nil {
		t.Fatalf("a dnsrr service's VIP counted as taken: %v", err)
	}
	if createRefused(t, fc.Services()) {
		t.Fatal("the state machine refuses what the restore accepts")
	}
	// The file itself is unchanged (the plan works on its own copy).
	for _, fs := range f.Services() {
		if fs.ID == "s1" && fs.VIP != oldVIP {
			t.Fatal("planning changed the file")
		}
	}
}

// TestPlanRestoreNetworkVIPs: a service's VIP on a network is checked as
// the state machine gives it — inside the network's VIP range, one
// service's on the network — and VIPs for networks the service does not
// join (or the default network's, when it does not join it) are dropped,
// as create and update drop them. Before, a file could give two services
// one VIP on a network (two load balancer entries for one address), a VIP
// outside the network, or hold addresses on networks the service left,
// which stayed taken for every later allocation.
func TestPlanRestoreNetworkVIPs(t *testing.T) {
	saved := savedState(t)
	saved.must(command.CreateNetwork{Network: api.Network{ID: "net1", Name: "back"}})
	for _, id := range []string{"s1", "s2"} {
		s, _ := saved.store.Service(id)
		s.Spec.Networks = []string{api.DefaultNetwork, "back"}
		saved.must(command.UpdateService{Service: *s})
	}
	web, _ := saved.store.Service("s1")
	webBack := web.VIPs["back"]
	file := saveFile(t, saved.store)
	svc := func(d *consensus.SnapshotData, id string) *api.Service {
		for _, s := range d.Services {
			if s.ID == id {
				return s
			}
		}
		t.Fatalf("no service %s", id)
		return nil
	}
	for _, tc := range []struct {
		name string
		edit func(*consensus.SnapshotData)
		want string
	}{
		{"one VIP for two services", func(d *consensus.SnapshotData) { svc(d, "s2").VIPs["back"] = webBack },
			fmt.Sprintf(`VIP %s on network back taken by service "web"`, webBack)},
		{"VIP outside the network", func(d *consensus.SnapshotData) { svc(d, "s1").VIPs["back"] = "10.99.0.1" },
			`VIP 10.99.0.1 on network back is outside its VIP range`},
		{"VIP not IPv4", func(d *consensus.SnapshotData) { svc(d, "s1").VIPs["back"] = "nope" },
			`VIP "nope" on network back is not an IPv4 address`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Read(bytes.NewReader(editFile(t, file, tc.edit)), 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := PlanRestore(f, saved.store.Snapshot(), false); !errors.Is(err, consensus.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("plan: %v, want a refusal with %q", err, tc.want)
			}
		})
	}

	// web leaves the default network; its VIPs name a network it never
	// joined: both are dropped, its VIP on back stays.
	stray := editFile(t, file, func(d *consensus.SnapshotData) {
		s := svc(d, "s1")
		s.Spec.Networks = []string{"back"}
		s.VIPs["ghost"] = "10.44.200.1"
	})
	f, err := Read(bytes.NewReader(stray), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := PlanRestore(f, saved.store.Snapshot(), false)
	if err != nil {
		t.Fatal(err)
	}
	body, _, err := plan.Encode(0)
	if err != nil {
		t.Fatal(err)
	}
	got := consensus.NewStore()
	if err := got.Restore(bytes.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	s, _ := got.Service("s1")
	if s.VIP != "" || !reflect.DeepEqual(s.VIPs, map[string]string{"back": webBack}) {
		t.Fatalf("restored web: VIP %q, VIPs %v; want \"\" and back only", s.VIP, s.VIPs)
	}
}
