package main

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

// outputOpts are the --format, -q and --no-trunc flags of a command.
type outputOpts struct {
	format  string
	quiet   bool
	noTrunc bool
}

// newTable returns a tabwriter laid out like docker's tables.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
}

// shortID trims an ID (and a "sha256:" prefix) for tables.
func shortID(id string, noTrunc bool) string {
	if noTrunc {
		return id
	}
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > shortIDLen {
		return id[:shortIDLen]
	}
	return id
}

// writeJSON prints v indented, with a trailing newline. A nil slice prints
// as [] so that scripts always get an array.
func writeJSON(w io.Writer, v any) error {
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

// writeList prints items per opts: IDs only, JSON array, template lines, or
// the table drawn by table.
func writeList[T any](w io.Writer, opts outputOpts, items []T, id func(T) string, table func(io.Writer) error) error {
	switch {
	case opts.quiet:
		for _, it := range items {
			if _, err := fmt.Fprintln(w, id(it)); err != nil {
				return err
			}
		}
		return nil
	case opts.format == "json":
		if items == nil {
			items = []T{}
		}
		return writeJSON(w, items)
	case opts.format == "" || opts.format == "table":
		return table(w)
	default:
		return writeTemplate(w, opts.format, items)
	}
}

// writeInspect prints one object (or an array for several) as JSON, IDs
// with -q, or template lines.
func writeInspect[T any](w io.Writer, opts outputOpts, items []T, id func(T) string) error {
	switch {
	case opts.quiet:
		return writeList(w, opts, items, id, nil)
	case opts.format == "" || opts.format == "json":
		if len(items) == 1 {
			return writeJSON(w, items[0])
		}
		return writeJSON(w, items)
	default:
		return writeTemplate(w, opts.format, items)
	}
}

// renderNodes draws `node ls`; localID gets a "*" like docker's "self".
func renderNodes(w io.Writer, nodes []api.Node, localID string, noTrunc bool) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tHOSTNAME\tSTATUS\tAVAILABILITY\tMANAGER STATUS\tADDR\tVERSION")
	for _, n := range nodes {
		id := shortID(n.ID, noTrunc)
		if n.ID == localID && localID != "" {
			id += " *"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", id, n.Hostname, n.Status, n.Availability, n.ManagerStatus, n.Addr, n.AgentVersion)
	}
	return tw.Flush()
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

// serviceView fills the display fields of a service from its spec when the
// agent left them empty.
func serviceView(s api.Service) api.Service {
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
	if s.Replicas == 0 && s.Mode != api.ModeGlobal {
		s.Replicas = s.Spec.Replicas
	}
	return s
}

// renderServices draws `service ls`.
func renderServices(w io.Writer, services []api.Service, noTrunc bool) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tNAME\tMODE\tREPLICAS\tIMAGE\tPORTS")
	for _, s := range services {
		s = serviceView(s)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\t%s\n", shortID(s.ID, noTrunc), s.Name, s.Mode, s.Running, s.Replicas, s.Image, formatPorts(s.Ports))
	}
	return tw.Flush()
}

// sortTasks orders tasks by service, slot (or node for global services),
// then newest first, so a slot's history reads downwards like docker's.
func sortTasks(tasks []api.Task) {
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

// renderTasks draws `service ps`; older tasks of a slot are shown as
// " \_ web.1" under the newest, as docker does.
func renderTasks(w io.Writer, tasks []api.Task, noTrunc bool, now time.Time) error {
	sorted := append([]api.Task(nil), tasks...)
	sortTasks(sorted)
	tw := newTable(w)
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
			node = shortID(t.NodeID, noTrunc)
		}
		errText := t.Error
		if !noTrunc && len(errText) > 60 {
			errText = errText[:57] + "..."
		}
		current := t.State
		if ts := t.UpdatedAt; !ts.IsZero() {
			current += " " + humanAgo(now.Sub(ts))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", shortID(t.ID, noTrunc), name, t.Image, node, t.DesiredState, current, quoteErr(errText))
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
		return "Up " + humanDuration(now.Sub(c.StartedAt))
	case api.ContainerExited:
		if c.FinishedAt.IsZero() {
			return fmt.Sprintf("Exited (%d)", c.ExitCode)
		}
		return fmt.Sprintf("Exited (%d) %s", c.ExitCode, humanAgo(now.Sub(c.FinishedAt)))
	case api.ContainerCreated:
		return "Created"
	default:
		return c.State
	}
}

// renderContainers draws `ps`.
func renderContainers(w io.Writer, cs []api.Container, noTrunc bool, now time.Time) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "CONTAINER ID\tIMAGE\tCOMMAND\tSTATUS\tHEALTH\tNAMES")
	for _, c := range cs {
		cmd := strings.Join(c.Command, " ")
		if !noTrunc && len(cmd) > 20 {
			cmd = cmd[:17] + "..."
		}
		fmt.Fprintf(tw, "%s\t%s\t%q\t%s\t%s\t%s\n", shortID(c.ID, noTrunc), c.Image, cmd, containerStatus(c, now), c.Health, c.Name)
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

// renderImages draws `image ls`, one row per tag.
func renderImages(w io.Writer, images []api.Image, noTrunc bool) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "REPOSITORY\tTAG\tIMAGE ID\tSIZE")
	for _, im := range images {
		tags := im.Tags
		if len(tags) == 0 {
			tags = []string{"<none>:<none>"}
		}
		for _, t := range tags {
			repo, tag := splitRef(t)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", repo, tag, shortID(im.ID, noTrunc), humanSize(im.Size))
		}
	}
	return tw.Flush()
}

// humanSize formats bytes with decimal units and 4 significant digits, as
// docker's image list does (e.g. 1.24MB).
func humanSize(n int64) string {
	units := []string{"B", "kB", "MB", "GB", "TB", "PB"}
	f := float64(n)
	i := 0
	for f >= 1000 && i < len(units)-1 {
		f /= 1000
		i++
	}
	return fmt.Sprintf("%.4g%s", f, units[i])
}

// humanDuration renders a duration like docker's "Up 5 minutes".
func humanDuration(d time.Duration) string {
	switch s := d.Seconds(); {
	case s < 1:
		return "Less than a second"
	case s == 1:
		return "1 second"
	case s < 60:
		return fmt.Sprintf("%d seconds", int(s))
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

// humanAgo is humanDuration with " ago".
func humanAgo(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	return humanDuration(d) + " ago"
}
