package handlers

// GET /v1/services/{id}/logs: the logs of every task of a service, from
// every node that ran one, merged into one NDJSON stream (node/localapi's
// writer). Each line names its task (NAME.SLOT.ID-PREFIX) and node. With
// follow, the tasks that get a container later join the stream.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/httpapi"
	"github.com/shoal-org/shoal/node/localapi"
	"github.com/shoal-org/shoal/runtime"
)

// LogSource is what the service logs route needs of the agent.
type LogSource interface {
	Agent
	// NodeLogs copies the log lines of containers, all on node n, into
	// send with the index of each line's container (locally, or from n
	// over the cluster port on one connection per wire.MaxLogsContainers
	// containers) until they end, send returns false or ctx ends. send
	// may be called from several goroutines at once. Failures end the
	// lines of the containers concerned.
	NodeLogs(ctx context.Context, n *api.Node, containerIDs []string, opts runtime.LogOptions, send func(int, api.LogLine) bool)
}

// ServiceLogs is the service logs route over src. The tasks are asked
// for node by node, not task by task: a node runs any number of a
// service's tasks, but a peer may open only so many connections to it
// (clusterport.Limits.MaxPerPeer).
func ServiceLogs(src LogSource) httpapi.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) (any, error) {
		store, err := src.Store()
		if err != nil {
			return nil, err
		}
		ref := r.PathValue("id")
		// docker's `service logs SERVICE|TASK`: a reference that names no
		// service may name one task (ID, ID prefix or NAME.SLOT); only its
		// lines are streamed. Before, "no such service".
		var only string
		if _, err := store.ResolveService(ref); errors.Is(err, consensus.ErrNotFound) {
			if t := resolveLogTask(store, ref); t != nil {
				only, ref = t.ID, t.ServiceID
			}
		}
		s, err := ResolveService(store, ref)
		if err != nil {
			if only != "" {
				return nil, httpapi.NotFound("no such service or task: %s", r.PathValue("id"))
			}
			return nil, err
		}
		if s.Spec.LogDriver == api.LogDriverNone {
			// Its tasks keep no log (runtime.ErrLogsDisabled): say so,
			// as docker does, rather than stream nothing.
			return nil, &httpapi.Error{Status: http.StatusConflict,
				Msg: fmt.Sprintf("service %s: %v", s.Spec.Name, runtime.ErrLogsDisabled)}
		}
		opts, err := localapi.LogOptions(r)
		if err != nil {
			return nil, err
		}
		ctx := r.Context()
		out := make(chan api.LogLine, 256)
		var wg sync.WaitGroup
		streamed := map[string]bool{} // task ID + container ID
		// startNew streams the tasks of the service that have a container
		// and are not streamed yet, one call per node.
		startNew := func() {
			nodes := map[string]*api.Node{}
			for _, n := range store.Nodes() {
				nodes[n.ID] = n
			}
			byNode := map[string][]api.Task{}
			for _, t := range store.TasksByService(s.ID) {
				key := t.ID + "/" + t.ContainerID
				if nodes[t.NodeID] == nil || t.ContainerID == "" || streamed[key] || (only != "" && t.ID != only) {
					continue
				}
				streamed[key] = true
				byNode[t.NodeID] = append(byNode[t.NodeID], *t)
			}
			for id, tasks := range byNode {
				wg.Add(1)
				go func() {
					defer wg.Done()
					nodeLogs(ctx, src, nodes[id], tasks, opts, out)
				}()
			}
		}
		startNew()
		if !opts.Follow {
			go func() { wg.Wait(); close(out) }()
		} else {
			// As docker's: follow the service, not the tasks it had when
			// asked, so the tasks a scale, an update or a replacement
			// starts later show up too; the stream ends with the service
			// (or when the client goes).
			changes, cancel := store.Subscribe()
			go func() {
				defer func() { cancel(); wg.Wait(); close(out) }()
				for {
					select {
					case <-ctx.Done():
						return
					case <-changes:
					}
					if _, err := store.Service(s.ID); err != nil {
						return
					}
					startNew()
				}
			}()
		}
		localapi.StreamLogs(w, out, "", "")
		return httpapi.Streamed, nil
	}
}

// resolveLogTask finds the one task ref names for `service logs TASK`: its
// ID, a unique ID prefix, or NAME.SLOT (the slot's task meant to run, else
// its newest). nil when none or several match.
func resolveLogTask(store *consensus.Store, ref string) *api.Task {
	if t, err := store.Task(ref); err == nil {
		return t
	}
	var byID, byName *api.Task
	ids, names := 0, 0
	for _, t := range store.Tasks() {
		if strings.HasPrefix(t.ID, ref) {
			byID, ids = t, ids+1
		}
		if t.Name == ref {
			names++
			if byName == nil || taskRanks(t, byName) {
				byName = t
			}
		}
	}
	switch {
	case ids == 1:
		return byID
	case ids == 0 && names > 0:
		return byName
	}
	return nil
}

// taskRanks reports whether a speaks for its slot before b: one meant to
// run first, then the newest.
func taskRanks(a, b *api.Task) bool {
	ar, br := a.DesiredState == api.TaskRunning, b.DesiredState == api.TaskRunning
	if ar != br {
		return ar
	}
	return a.CreatedAt.After(b.CreatedAt)
}

// nodeLogs copies the log lines of tasks, all on node n, into out, each
// named for its task and node.
func nodeLogs(ctx context.Context, src LogSource, n *api.Node, tasks []api.Task, opts runtime.LogOptions, out chan<- api.LogLine) {
	names := make([]string, len(tasks))
	ids := make([]string, len(tasks))
	for i, t := range tasks {
		names[i] = fmt.Sprintf("%s.%s", t.Name, api.ShortID(t.ID))
		ids[i] = t.ContainerID
	}
	send := func(i int, l api.LogLine) bool {
		if i < 0 || i >= len(names) {
			return false
		}
		l.Task = names[i]
		l.Node = n.Hostname
		select {
		case out <- l:
			return true
		case <-ctx.Done():
			return false
		}
	}
	src.NodeLogs(ctx, n, ids, opts, send)
}
