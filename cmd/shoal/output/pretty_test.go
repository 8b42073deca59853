package output

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

// TestRenderServicePretty: `service inspect --pretty` prints docker's
// sections, with limits in binary units and the defaults spelled out.
func TestRenderServicePretty(t *testing.T) {
	sv := api.Service{ID: "s1", Networks: []string{"default"}, Spec: api.ServiceSpec{
		Name: "web", Mode: api.ModeReplicated, Replicas: 3, Image: "demo:1", Command: []string{"httpd", "-f"},
		Env: []string{"A=1"}, Labels: map[string]string{"b": "2", "a": "1"}, Constraints: []string{"node.labels.zone==a"},
		Resources:    api.ResourceRequirements{Limits: api.Resources{NanoCPUs: 5e8, MemoryBytes: 64 << 20}},
		Ports:        []api.PortConfig{{Published: 8080, Target: 80, Protocol: "tcp"}},
		UpdateConfig: api.UpdateConfig{Parallelism: 2, Delay: 10 * time.Second, FailureAction: "rollback", Monitor: 5 * time.Second, Order: "start-first"},
	}}
	var b bytes.Buffer
	if err := RenderServicePretty(&b, sv); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"ID:                 s1\n", "Name:               web\n", "Labels:\n - a=1\n - b=2\n",
		"Service Mode:       Replicated\n Replicas:          3\n",
		"Placement:\n Constraints:       [node.labels.zone==a]\n",
		"UpdateConfig:\n Parallelism:       2\n Delay:             10s\n On failure:        rollback\n",
		"ContainerSpec:\n Image:             demo:1\n Args:              httpd -f\n Env:               A=1\n",
		"Resources:\n Limits:\n  CPU:              0.5\n  Memory:           64MiB\n",
		"Endpoint Mode:      vip\n",
		"Ports:\n PublishedPort = 8080\n  Protocol = tcp\n  TargetPort = 80\n  PublishMode = ingress\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("pretty output lacks %q:\n%s", want, b.String())
		}
	}
}

func TestRenderNodePretty(t *testing.T) {
	n := api.Node{ID: "n1", Hostname: "h1", Addr: "10.0.0.1", ClusterPort: 2377, Status: "ready", Availability: "drain",
		ManagerStatus: "leader", Resources: api.Resources{NanoCPUs: 2e9, MemoryBytes: 3 << 30}, AgentVersion: "v1"}
	var b bytes.Buffer
	if err := RenderNodePretty(&b, n); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Hostname:           h1\n", " State:             Ready\n", " Availability:      Drain\n",
		"Role:               manager\n", " Leader:            Yes\n", " CPUs:              2\n", " Memory:            3GiB\n"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("pretty output lacks %q:\n%s", want, b.String())
		}
	}
}
