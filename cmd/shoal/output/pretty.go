package output

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/shoal-org/shoal/api"
)

// RenderServicePretty prints a service as `docker service inspect
// --pretty` does: the spec as indented "Key: value" lines, for reading
// rather than for scripts (those use the JSON). Values come from the
// cluster's records and are sanitized.
func RenderServicePretty(w io.Writer, sv api.Service) error {
	p := &prettyWriter{w: SafeWriter(w)}
	spec := sv.Spec
	p.kv(0, "ID", sv.ID)
	p.kv(0, "Name", spec.Name)
	p.labels(0, spec.Labels)
	mode := spec.Mode
	if mode == "" {
		mode = api.ModeReplicated
	}
	p.kv(0, "Service Mode", titleWords(mode))
	if !api.GlobalMode(mode) {
		p.kv(1, "Replicas", strconv.FormatUint(spec.Replicas, 10))
	}
	if us := sv.UpdateStatus; us != nil {
		p.line(0, "UpdateStatus:")
		p.kv(1, "State", us.State)
		if !us.StartedAt.IsZero() {
			p.kv(1, "Started", us.StartedAt.Format(time.RFC3339))
		}
		if !us.CompletedAt.IsZero() {
			p.kv(1, "Completed", us.CompletedAt.Format(time.RFC3339))
		}
		p.kv(1, "Message", us.Message)
	}
	if len(spec.Constraints) > 0 {
		p.line(0, "Placement:")
		p.kv(1, "Constraints", "["+strings.Join(spec.Constraints, " ")+"]")
	}
	rp := spec.RestartPolicy
	p.line(0, "RestartPolicy:")
	p.kv(1, "Condition", rp.Condition)
	p.kv(1, "Delay", rp.DelayPeriod().String())
	p.kv(1, "Max attempts", strconv.Itoa(rp.MaxAttempts))
	p.updateConfig("UpdateConfig", spec.UpdateConfig)
	p.updateConfig("RollbackConfig", spec.RollbackConfig)
	p.line(0, "ContainerSpec:")
	p.kv(1, "Image", spec.Image)
	if len(spec.Entrypoint) > 0 {
		p.kv(1, "Entrypoint", strings.Join(spec.Entrypoint, " "))
	}
	if len(spec.Command) > 0 {
		p.kv(1, "Args", strings.Join(spec.Command, " "))
	}
	if len(spec.Env) > 0 {
		p.kv(1, "Env", strings.Join(spec.Env, " "))
	}
	if spec.Workdir != "" {
		p.kv(1, "Dir", spec.Workdir)
	}
	if spec.User != "" {
		p.kv(1, "User", spec.User)
	}
	if hc := spec.Healthcheck; hc != nil && len(hc.Test) > 0 {
		p.line(1, "Healthcheck:")
		p.kv(2, "Test", strings.Join(hc.Test, " "))
		p.kv(2, "Interval", hc.Interval.String())
		p.kv(2, "Retries", strconv.Itoa(hc.Retries))
	}
	if len(spec.Mounts) > 0 {
		p.line(0, "Mounts:")
		for _, m := range spec.Mounts {
			p.kv(1, "Target", m.Target)
			if m.Source != "" {
				p.kv(2, "Source", m.Source)
			}
			p.kv(2, "ReadOnly", strconv.FormatBool(m.ReadOnly))
			p.kv(2, "Type", m.Type)
		}
	}
	lim, res := spec.Resources.Limits, spec.Resources.Reservations
	if lim.NanoCPUs != 0 || lim.MemoryBytes != 0 || res.NanoCPUs != 0 || res.MemoryBytes != 0 {
		p.line(0, "Resources:")
		p.resources("Reservations", res)
		p.resources("Limits", lim)
	}
	if len(sv.Networks) > 0 {
		p.kv(0, "Networks", strings.Join(sv.Networks, " "))
	}
	em := spec.EndpointMode
	if em == "" {
		em = api.EndpointVIP
	}
	p.kv(0, "Endpoint Mode", em)
	if len(spec.Ports) > 0 {
		p.line(0, "Ports:")
		for _, pc := range spec.Ports {
			mode := pc.Mode
			if mode == "" {
				mode = "ingress"
			}
			p.line(1, fmt.Sprintf("PublishedPort = %d", pc.Published))
			p.line(2, "Protocol = "+pc.Protocol)
			p.line(2, fmt.Sprintf("TargetPort = %d", pc.Target))
			p.line(2, "PublishMode = "+mode)
		}
	}
	return p.err
}

// RenderNodePretty prints a node as `docker node inspect --pretty` does.
func RenderNodePretty(w io.Writer, n api.Node) error {
	p := &prettyWriter{w: SafeWriter(w)}
	p.kv(0, "ID", n.ID)
	p.kv(0, "Hostname", n.Hostname)
	p.labels(0, n.Labels)
	if !n.CreatedAt.IsZero() {
		p.kv(0, "Joined at", n.CreatedAt.Format(time.RFC3339))
	}
	p.line(0, "Status:")
	p.kv(1, "State", titleWords(n.Status))
	if n.StatusMessage != "" {
		p.kv(1, "Message", n.StatusMessage)
	}
	p.kv(1, "Availability", titleWords(n.Availability))
	p.kv(1, "Address", n.Addr)
	role := n.Role
	if role == "" {
		role = api.RoleManager
	}
	p.kv(0, "Role", role)
	if n.ManagerStatus != "" {
		p.line(0, "Manager Status:")
		p.kv(1, "Address", fmt.Sprintf("%s:%d", n.Addr, n.ClusterPort))
		raft := "Reachable"
		if n.ManagerStatus == "unreachable" {
			raft = "Unreachable"
		}
		p.kv(1, "Raft Status", raft)
		leader := "No"
		if n.ManagerStatus == "leader" {
			leader = "Yes"
		}
		p.kv(1, "Leader", leader)
	}
	p.line(0, "Resources:")
	p.kv(1, "CPUs", strconv.FormatFloat(float64(n.Resources.NanoCPUs)/1e9, 'f', -1, 64))
	p.kv(1, "Memory", binarySize(n.Resources.MemoryBytes))
	if n.AgentVersion != "" {
		p.kv(0, "Engine Version", n.AgentVersion)
	}
	return p.err
}

// prettyWriter writes indented lines and keeps the first error.
type prettyWriter struct {
	w   io.Writer
	err error
}

func (p *prettyWriter) line(indent int, s string) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, "%s%s\n", strings.Repeat(" ", indent), s)
	}
}

// kv writes "Key:" and value aligned at column 20 (docker's look).
func (p *prettyWriter) kv(indent int, k, v string) {
	head := strings.Repeat(" ", indent) + k + ":"
	p.line(0, fmt.Sprintf("%-19s %s", head, v))
}

func (p *prettyWriter) labels(indent int, labels map[string]string) {
	p.line(indent, "Labels:")
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p.line(indent+1, "- "+k+"="+labels[k])
	}
}

func (p *prettyWriter) updateConfig(name string, u api.UpdateConfig) {
	p.line(0, name+":")
	p.kv(1, "Parallelism", strconv.Itoa(u.Parallelism))
	if u.Delay > 0 {
		p.kv(1, "Delay", u.Delay.String())
	}
	p.kv(1, "On failure", u.FailureAction)
	p.kv(1, "Monitoring Period", u.MonitorPeriod().String())
	p.kv(1, "Max failure ratio", strconv.FormatFloat(u.MaxFailureRatio, 'g', -1, 64))
	p.kv(1, "Update order", u.Order)
}

func (p *prettyWriter) resources(name string, r api.Resources) {
	if r.NanoCPUs == 0 && r.MemoryBytes == 0 {
		return
	}
	p.line(1, name+":")
	if r.NanoCPUs != 0 {
		p.kv(2, "CPU", strconv.FormatFloat(float64(r.NanoCPUs)/1e9, 'f', -1, 64))
	}
	if r.MemoryBytes != 0 {
		p.kv(2, "Memory", binarySize(r.MemoryBytes))
	}
}

// titleWords capitalizes the first letter of each dash-separated word:
// replicated-job → Replicated-Job, ready → Ready.
func titleWords(s string) string {
	parts := strings.Split(s, "-")
	for i, w := range parts {
		if w != "" {
			parts[i] = strings.ToUpper(w[:1]) + w[1:]
		}
	}
	return strings.Join(parts, "-")
}

// binarySize is a memory size in powers of 1024, as docker's pretty
// inspect prints limits (64MiB for --limit-memory 64M).
func binarySize(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	v := float64(n)
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.4g%s", v, units[i])
}
