package handlers

// GET /v1/services/{id}/logs: the logs of every task of a service, from
// every node that ran one, merged into one NDJSON stream (node/localapi's
// writer). Each line names its task (NAME.SLOT.ID-PREFIX) and node.

import (
	"context"
	"fmt"
	"net/http"
	"sync"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/httpapi"
	"github.com/shoal-org/shoal/node/localapi"
	"github.com/shoal-org/shoal/runtime"
)

// LogSource is what the service logs route needs of the agent.
type LogSource interface {
	Agent
	// TaskLogs copies the log lines of a task's container on node n into
	// send (locally, or from n over the cluster port) until the log ends,
	// send returns false or ctx ends. Failures end the task's lines.
	TaskLogs(ctx context.Context, n *api.Node, containerID string, opts runtime.LogOptions, send func(api.LogLine) bool)
}

// ServiceLogs is the service logs route over src.
func ServiceLogs(src LogSource) httpapi.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) (any, error) {
		store, err := src.Store()
		if err != nil {
			return nil, err
		}
		s, err := ResolveService(store, r.PathValue("id"))
		if err != nil {
			return nil, err
		}
		opts, err := localapi.LogOptions(r)
		if err != nil {
			return nil, err
		}
		nodes := map[string]*api.Node{}
		for _, n := range store.Nodes() {
			nodes[n.ID] = n
		}
		ctx := r.Context()
		out := make(chan api.LogLine, 256)
		var wg sync.WaitGroup
		for _, t := range store.TasksByService(s.ID) {
			n := nodes[t.NodeID]
			if n == nil || t.ContainerID == "" {
				continue
			}
			t := *t
			wg.Add(1)
			go func() {
				defer wg.Done()
				taskLogs(ctx, src, n, t, opts, out)
			}()
		}
		go func() { wg.Wait(); close(out) }()
		localapi.StreamLogs(w, out, "", "")
		return httpapi.Streamed, nil
	}
}

// taskLogs copies one task's log lines into out, named for the task and
// its node.
func taskLogs(ctx context.Context, src LogSource, n *api.Node, t api.Task, opts runtime.LogOptions, out chan<- api.LogLine) {
	name := fmt.Sprintf("%s.%s", t.Name, api.ShortID(t.ID))
	send := func(l api.LogLine) bool {
		l.Task = name
		l.Node = n.Hostname
		select {
		case out <- l:
			return true
		case <-ctx.Done():
			return false
		}
	}
	src.TaskLogs(ctx, n, t.ContainerID, opts, send)
}
