package output

// Rendering of lists and objects: docker-like tables (text/tabwriter), JSON
// (--format json), Go templates (--format '{{.ID}}') and IDs only (-q).
// The render* functions are pure so tests can compare their output.

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/cmd/shoal/specflags"
)

// shortIDLen is how many characters of an ID tables show.
const shortIDLen = 12

// Opts are the --format, -q and --no-trunc flags of a command.
type Opts struct {
	Format  string
	Quiet   bool
	NoTrunc bool
}

// NewTable returns a tabwriter laid out like docker's tables.
func NewTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(SafeWriter(w), 0, 0, 3, ' ', 0)
}

// ShortID trims an ID (and a "sha256:" prefix) for tables.
func ShortID(id string, noTrunc bool) string {
	if noTrunc {
		return id
	}
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > shortIDLen {
		return id[:shortIDLen]
	}
	return id
}

// WriteJSON prints v indented, with a trailing newline. A nil slice prints
// as [] so that scripts always get an array.
func WriteJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode json: %w", err)
	}
	if string(b) == "null" {
		b = []byte("[]")
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// writeTemplate executes a Go template once per item, one line each.
func writeTemplate[T any](w io.Writer, format string, items []T) error {
	tmpl, err := template.New("format").Funcs(template.FuncMap{
		"json": func(v any) (string, error) {
			b, err := json.Marshal(v)
			return string(b), err
		},
		"join": strings.Join,
	}).Parse(format)
	if err != nil {
		return specflags.UsageErrorf("invalid --format template: %v", err)
	}
	w = SafeWriter(w)
	for _, it := range items {
		if err := tmpl.Execute(w, it); err != nil {
			return fmt.Errorf("format: %w", err)
		}
		if _, err := io.WriteString(w, "\n"); err != nil {
			return err
		}
	}
	return nil
}

// WriteList prints items per opts: IDs only, JSON array, template lines, or
// the table drawn by table.
func WriteList[T any](w io.Writer, opts Opts, items []T, id func(T) string, table func(io.Writer) error) error {
	switch {
	case opts.Quiet:
		for _, it := range items {
			if _, err := fmt.Fprintln(w, id(it)); err != nil {
				return err
			}
		}
		return nil
	case opts.Format == "json":
		if items == nil {
			items = []T{}
		}
		return WriteJSON(w, items)
	case opts.Format == "" || opts.Format == "table":
		return table(w)
	default:
		return writeTemplate(w, opts.Format, items)
	}
}

// WriteInspect prints one object (or an array for several, or whenever
// many: several were asked for) as JSON, IDs with -q, or template lines.
func WriteInspect[T any](w io.Writer, opts Opts, items []T, id func(T) string, many bool) error {
	switch {
	case opts.Quiet:
		return WriteList(w, opts, items, id, nil)
	case opts.Format == "" || opts.Format == "json":
		if len(items) == 1 && !many {
			return WriteJSON(w, items[0])
		}
		return WriteJSON(w, items)
	default:
		return writeTemplate(w, opts.Format, items)
	}
}

// RenderNodes draws `node ls`; localID gets a "*" like docker's "self".
func RenderNodes(w io.Writer, nodes []api.Node, localID string, noTrunc bool) error {
	tw := NewTable(w)
	fmt.Fprintln(tw, "ID\tHOSTNAME\tSTATUS\tAVAILABILITY\tMANAGER STATUS\tADDR\tVERSION")
	for _, n := range nodes {
		id := ShortID(n.ID, noTrunc)
		if n.ID == localID && localID != "" {
			id += " *"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", id, n.Hostname, NodeStatus(n), n.Availability, n.ManagerStatus, n.Addr, n.AgentVersion)
	}
	return tw.Flush()
}

// NodeStatus is `node ls`'s STATUS: the status, and the gist of a status
// message in parentheses ("ready (disk full)"; `node inspect` shows the
// whole message), so that a ready node taking no tasks says why.
func NodeStatus(n api.Node) string {
	if n.StatusMessage == "" {
		return n.Status
	}
	gist, _, _ := strings.Cut(n.StatusMessage, ":")
	return n.Status + " (" + gist + ")"
}

// formatPorts renders published ports like docker: *:8080->80/tcp.
func formatPorts(ports []api.PortConfig) string {
	parts := make([]string, 0, len(ports))
	for _, p := range ports {
		proto := p.Protocol
		if proto == "" {
			proto = "tcp"
		}
		if p.Published == 0 {
			parts = append(parts, fmt.Sprintf("%d/%s", p.Target, proto))
			continue
		}
		parts = append(parts, fmt.Sprintf("*:%d->%d/%s", p.Published, p.Target, proto))
	}
	return strings.Join(parts, ", ")
}

// ServiceView fills the display fields of a service from its spec when the
// agent left them empty.
func ServiceView(s api.Service) api.Service {
	if s.Name == "" {
		s.Name = s.Spec.Name
	}
	if s.Mode == "" {
		s.Mode = s.Spec.Mode
	}
	if s.Image == "" {
		s.Image = s.Spec.Image
	}
	if s.Ports == nil {
		s.Ports = s.Spec.Ports
	}
	if s.Replicas == 0 && !api.GlobalMode(s.Mode) {
		s.Replicas = s.Spec.Replicas
	}
	return s
}

// RenderServices draws `service ls`.
func RenderServices(w io.Writer, services []api.Service, noTrunc bool) error {
	tw := NewTable(w)
	fmt.Fprintln(tw, "ID\tNAME\tMODE\tREPLICAS\tIMAGE\tPORTS")
	for _, s := range services {
		s = ServiceView(s)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", ShortID(s.ID, noTrunc), s.Name, s.Mode, ReplicasCell(s), s.Image, formatPorts(s.Ports))
	}
	return tw.Flush()
}

// ReplicasCell is the REPLICAS of `service ls`: running/desired, and for a
// job docker's "running/desired (completed/total completed)", desired
// being what may run now: the completions still due, at most
// MaxConcurrent for a replicated job.
func ReplicasCell(s api.Service) string {
	if !api.IsJob(s.Mode) {
		return fmt.Sprintf("%d/%d", s.Running, s.Replicas)
	}
	total := s.Replicas
	due := uint64(0)
	if c := uint64(max(s.Completed, 0)); c < total {
		due = total - c
	}
	if m := s.Spec.MaxConcurrent; s.Mode == api.ModeReplicatedJob && m > 0 && m < due {
		due = m
	}
	return fmt.Sprintf("%d/%d (%d/%d completed)", s.Running, due, s.Completed, total)
}

// SortTasks orders tasks by service, slot (or node for global services),
// the slot's current task (desired running) first, then newest first, so a
// slot's history reads downwards like docker's. Current first: when a node
// comes back after a blip, its original task is kept and the newer
// replacement stopped, and the kept one must head its slot.
func SortTasks(tasks []api.Task) {
	sort.SliceStable(tasks, func(i, j int) bool {
		a, b := tasks[i], tasks[j]
		if a.Service != b.Service {
			return a.Service < b.Service
		}
		if a.Slot != b.Slot {
			return a.Slot < b.Slot
		}
		if a.Slot == 0 && a.NodeID != b.NodeID {
			return a.NodeID < b.NodeID
		}
		if ar, br := a.DesiredState == api.TaskRunning, b.DesiredState == api.TaskRunning; ar != br {
			return ar
		}
		return a.CreatedAt.After(b.CreatedAt)
	})
}

// taskGroupKey groups the tasks of one slot (or one node for global).
func taskGroupKey(t api.Task) string {
	if t.Slot > 0 {
		return fmt.Sprintf("%s/%d", t.ServiceID+t.Service, t.Slot)
	}
	return t.ServiceID + t.Service + "/" + t.NodeID
}

// RenderTasks draws `service ps`; older tasks of a slot are shown as
// " \_ web.1" under the newest, as docker does.
func RenderTasks(w io.Writer, tasks []api.Task, noTrunc bool, now time.Time) error {
	sorted := append([]api.Task(nil), tasks...)
	SortTasks(sorted)
	tw := NewTable(w)
	fmt.Fprintln(tw, "ID\tNAME\tIMAGE\tNODE\tDESIRED STATE\tCURRENT STATE\tERROR")
	prev := ""
	for _, t := range sorted {
		name := t.Name
		if k := taskGroupKey(t); k == prev {
			name = " \\_ " + name
		} else {
			prev = k
		}
		node := t.Node
		if node == "" {
			node = ShortID(t.NodeID, noTrunc)
		}
		errText := t.Error
		if errText == "" && t.State == api.TaskNew {
			// Why a task waits for a node ("no suitable node (...)"):
			// docker shows it in this column, and nothing else tells.
			errText = t.Message
		}
		if !noTrunc && len(errText) > 60 {
			errText = errText[:57] + "..."
		}
		current := t.State
		ts := t.UpdatedAt
		if t.State == api.TaskRunning && !t.StartedAt.IsZero() {
			// Since it runs, as docker's "Running 5 minutes ago": a task's
			// record is written again without a change of state (a
			// health report, a node reporting anew to a new leader).
			ts = t.StartedAt
		}
		if !ts.IsZero() {
			current += " " + HumanAgo(now.Sub(ts))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ShortID(t.ID, noTrunc), name, t.Image, node, t.DesiredState, current, quoteErr(errText))
	}
	return tw.Flush()
}

// quoteErr wraps a non-empty error in quotes, as docker's task table does.
func quoteErr(s string) string {
	if s == "" {
		return ""
	}
	return fmt.Sprintf("%q", s)
}

// containerStatus renders docker's STATUS column.
func containerStatus(c api.Container, now time.Time) string {
	switch c.State {
	case api.ContainerRunning:
		if c.StartedAt.IsZero() {
			return "Up"
		}
		return "Up " + HumanDuration(now.Sub(c.StartedAt))
	case api.ContainerExited:
		if c.FinishedAt.IsZero() {
			return fmt.Sprintf("Exited (%d)", c.ExitCode)
		}
		return fmt.Sprintf("Exited (%d) %s", c.ExitCode, HumanAgo(now.Sub(c.FinishedAt)))
	case api.ContainerCreated:
		return "Created"
	default:
		return c.State
	}
}

// RenderContainers draws `ps`.
func RenderContainers(w io.Writer, cs []api.Container, noTrunc bool, now time.Time) error {
	tw := NewTable(w)
	fmt.Fprintln(tw, "CONTAINER ID\tIMAGE\tCOMMAND\tSTATUS\tHEALTH\tNAMES")
	for _, c := range cs {
		cmd := strings.Join(c.Command, " ")
		if !noTrunc && len(cmd) > 20 {
			cmd = cmd[:17] + "..."
		}
		fmt.Fprintf(tw, "%s\t%s\t%q\t%s\t%s\t%s\n", ShortID(c.ID, noTrunc), c.Image, cmd, containerStatus(c, now), c.Health, c.Name)
	}
	return tw.Flush()
}

// splitRef splits "repo:tag" (a registry port is not a tag).
func splitRef(ref string) (string, string) {
	if at := strings.Index(ref, "@"); at >= 0 {
		return ref[:at], "<none>"
	}
	i := strings.LastIndex(ref, ":")
	if i < 0 || strings.Contains(ref[i:], "/") {
		return ref, "latest"
	}
	return ref[:i], ref[i+1:]
}

// RenderImages draws `image ls`, one row per tag.
func RenderImages(w io.Writer, images []api.Image, noTrunc bool) error {
	tw := NewTable(w)
	fmt.Fprintln(tw, "REPOSITORY\tTAG\tIMAGE ID\tSIZE")
	for _, im := range images {
		tags := im.Tags
		if len(tags) == 0 {
			tags = []string{"<none>:<none>"}
		}
		for _, t := range tags {
			repo, tag := splitRef(t)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", repo, tag, ShortID(im.ID, noTrunc), HumanSize(im.Size))
		}
	}
	return tw.Flush()
}

// HumanSize formats bytes with decimal units and 4 significant digits, as
// docker's image list does (e.g. 1.24MB).
func HumanSize(n int64) string {
	units := []string{"B", "kB", "MB", "GB", "TB", "PB"}
	f := float64(n)
	i := 0
	for f >= 1000 && i < len(units)-1 {
		f /= 1000
		i++
	}
	return fmt.Sprintf("%.4g%s", f, units[i])
}

// HumanDuration renders a duration like docker's "Up 5 minutes".
func HumanDuration(d time.Duration) string {
	// Whole seconds, as docker counts them: 1.5 s is "1 second".
	switch s := int(d.Seconds()); {
	case s < 1:
		return "Less than a second"
	case s == 1:
		return "1 second"
	case s < 60:
		return fmt.Sprintf("%d seconds", s)
	}
	switch m := d.Minutes(); {
	case m < 2:
		return "About a minute"
	case m < 60:
		return fmt.Sprintf("%d minutes", int(m))
	}
	switch h := d.Hours(); {
	case h < 2:
		return "About an hour"
	case h < 48:
		return fmt.Sprintf("%d hours", int(h))
	case h < 24*7*2:
		return fmt.Sprintf("%d days", int(h/24))
	case h < 24*30*2:
		return fmt.Sprintf("%d weeks", int(h/24/7))
	case h < 24*365*2:
		return fmt.Sprintf("%d months", int(h/24/30))
	default:
		return fmt.Sprintf("%d years", int(h/24/365))
	}
}

// HumanAgo is HumanDuration with " ago".
func HumanAgo(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	return HumanDuration(d) + " ago"
}
