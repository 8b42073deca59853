package imagedist

// The logs of several containers of one node over one connection. `shoal
// service logs -f` follows every task of a service; asked one connection
// per task (MethodLogs), a node running more tasks of it than the cluster
// port lets one peer open (clusterport.Limits.MaxPerPeer, 256) could not
// be followed, and a few followers together took every connection the
// asking node may open to it. MethodLogsMulti carries up to
// wire.MaxLogsContainers containers per connection, each line tagged with
// its container's index; an older agent that lacks it is asked per
// container, as before.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/clusterport"
	"github.com/shoal-org/shoal/node/wire"
	"github.com/shoal-org/shoal/runtime"
)

// ServeLogsMulti answers wire.MethodLogsMulti: an empty answer, then the
// lines of every container that could be opened, merged, until they all
// end, ctx ends or the peer hangs up.
func ServeLogsMulti(ctx context.Context, logs Logs, call *clusterport.Call) {
	var req wire.LogsMultiRequest
	if err := json.Unmarshal(call.Req.Body, &req); err != nil {
		_ = call.Reply(nil, fmt.Errorf("malformed logs request: %w", err))
		return
	}
	if n := len(req.ContainerIDs); n == 0 || n > wire.MaxLogsContainers {
		_ = call.Reply(nil, fmt.Errorf("malformed logs request: %d containers, want 1 to %d", n, wire.MaxLogsContainers))
		return
	}
	opts, err := logOptions(req.Follow, req.Tail, req.Since)
	if err != nil {
		_ = call.Reply(nil, err)
		return
	}
	lctx, cancel := untilHangup(ctx, call)
	defer cancel()
	merged := make(chan wire.LogsMultiLine, 64)
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel (deferred later, runs first)
	defer cancel()
	for i, id := range req.ContainerIDs {
		ch, err := logs(lctx, id, opts)
		if err != nil {
			continue // gone since it was asked for: no lines, as MethodLogs ends
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for l := range ch {
				select {
				case merged <- wire.LogsMultiLine{C: i, LogLine: l}:
				case <-lctx.Done():
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); close(merged) }()
	streamLines(call, merged)
}

// RemoteLogsMulti streams the logs of containerIDs, all on the node at
// addr, into send with the index of each line's container, until they
// end, ctx ends or send returns false: one connection per
// wire.MaxLogsContainers containers. A node that does not know
// MethodLogsMulti is asked one connection per container (RemoteLogs).
// send may be called from several goroutines at once.
func RemoteLogsMulti(ctx context.Context, call Caller, addr string, containerIDs []string, opts runtime.LogOptions, send func(int, api.LogLine) bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var stopped atomic.Bool
	stop := func(i int, l api.LogLine) bool {
		if !send(i, l) {
			stopped.Store(true)
			cancel() // every stream of this call ends
			return false
		}
		return true
	}
	var wg sync.WaitGroup
	errs := make([]error, (len(containerIDs)+wire.MaxLogsContainers-1)/wire.MaxLogsContainers)
	for c := range errs {
		lo := c * wire.MaxLogsContainers
		hi := min(lo+wire.MaxLogsContainers, len(containerIDs))
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[c] = remoteLogsChunk(ctx, call, addr, containerIDs[lo:hi], opts, func(i int, l api.LogLine) bool {
				return stop(lo+i, l)
			})
		}()
	}
	wg.Wait()
	if stopped.Load() {
		return nil // the other streams ended by cancel, not by a fault
	}
	return errors.Join(errs...)
}

// remoteLogsChunk is one MethodLogsMulti call, or the per-container
// fallback for an older node.
func remoteLogsChunk(ctx context.Context, call Caller, addr string, ids []string, opts runtime.LogOptions, send func(int, api.LogLine) bool) error {
	req := wire.LogsMultiRequest{ContainerIDs: ids, Follow: opts.Follow, Tail: opts.Tail, Since: sinceText(opts)}
	err := call(ctx, addr, wire.MethodLogsMulti, req, nil, func(r io.Reader) error {
		return readLogLines(r, addr, func(l wire.LogsMultiLine) (bool, error) {
			if l.C < 0 || l.C >= len(ids) {
				return false, fmt.Errorf("logs from %s: line of container %d, asked for %d", addr, l.C, len(ids))
			}
			return send(l.C, l.LogLine), nil
		})
	})
	if err == nil || !unknownMethod(err, wire.MethodLogsMulti) {
		return err
	}
	// An older agent: one connection per container, as it always was.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var stopped atomic.Bool
	var wg sync.WaitGroup
	errs := make([]error, len(ids))
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = RemoteLogs(ctx, call, addr, id, opts, func(l api.LogLine) bool {
				if !send(i, l) {
					stopped.Store(true)
					cancel()
					return false
				}
				return true
			})
		}()
	}
	wg.Wait()
	if stopped.Load() {
		return nil
	}
	return errors.Join(errs...)
}

// unknownMethod reports whether err is a peer's answer that it does not
// know method (clusterport.Serve's "unknown rpc method").
func unknownMethod(err error, method string) bool {
	var we *wire.Error
	return errors.As(err, &we) && strings.Contains(we.Msg, fmt.Sprintf("unknown rpc method %q", method))
}
