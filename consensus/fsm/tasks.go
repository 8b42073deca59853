package fsm

import (
	"fmt"
	"maps"
	"slices"
	"sort"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

func applyUpsertTasks(w *consensus.WriteTxn, c command.UpsertTasks) (any, error) {
	for i, t := range c.Tasks {
		if t.ID == "" {
			return nil, fmt.Errorf("upsert tasks: task %d has no ID: %w", i, consensus.ErrInvalid)
		}
		if _, ok := api.TaskStateOrder[t.State]; !ok && t.State != "" {
			return nil, fmt.Errorf("upsert task %s: state %q: %w", t.ID, t.State, consensus.ErrInvalid)
		}
		if err := checkTaskRefs(w, &c.Tasks[i]); err != nil {
			return nil, fmt.Errorf("upsert task %s: %w", t.ID, err)
		}
	}
	groups := map[groupKey]struct{}{}
	for i := range c.Tasks {
		nt := consensus.CloneTask(&c.Tasks[i])
		if old := consensus.First[api.Task](w, consensus.TableTasks, consensus.IndexID, nt.ID); old != nil {
			consensus.KeepObserved(old, nt)
			if old.Slot != nt.Slot || old.NodeID != nt.NodeID || old.ServiceID != nt.ServiceID {
				groups[taskGroup(old)] = struct{}{}
			}
		}
		if err := w.Insert(consensus.TableTasks, nt); err != nil {
			return nil, err
		}
		groups[taskGroup(nt)] = struct{}{}
	}
	if err := assignTaskShares(w, c.Tasks); err != nil {
		return nil, fmt.Errorf("upsert tasks: %w", err)
	}
	return nil, trimGroups(w, groups)
}

// checkTaskRefs refuses a task that would run for a service or on a node
// that does not exist: a new task, a task moved to another service or node,
// and any task whose desired state is running must name an existing service
// and (when assigned) an existing node. The scheduler plans from a replica
// read that a DeleteService or RemoveNode may overtake; without this check
// its stale plan would bring back a task of a deleted service or assign one
// to a removed node. Tasks that only keep their old references (shutdown
// and orphan marking of tasks whose service or node is gone) pass.
func checkTaskRefs(w *consensus.WriteTxn, t *api.Task) error {
	old := consensus.First[api.Task](w, consensus.TableTasks, consensus.IndexID, t.ID)
	run := t.DesiredState == api.TaskRunning
	if old == nil || old.ServiceID != t.ServiceID || run {
		if t.ServiceID == "" {
			return fmt.Errorf("no service ID: %w", consensus.ErrInvalid)
		}
		if consensus.First[api.Service](w, consensus.TableServices, consensus.IndexID, t.ServiceID) == nil {
			return fmt.Errorf("service %s: %w", t.ServiceID, consensus.ErrNotFound)
		}
	}
	if t.NodeID != "" && (old == nil || old.NodeID != t.NodeID || run) {
		if consensus.First[api.Node](w, consensus.TableNodes, consensus.IndexID, t.NodeID) == nil {
			return fmt.Errorf("node %s: %w", t.NodeID, consensus.ErrNotFound)
		}
	}
	return nil
}

func applyTaskStatus(w *consensus.WriteTxn, c command.TaskStatus) (any, error) {
	applied := 0
	groups := map[groupKey]struct{}{}
	for _, st := range c.Statuses {
		old := consensus.First[api.Task](w, consensus.TableTasks, consensus.IndexID, st.TaskID)
		if old == nil || c.NodeID == "" || old.NodeID != c.NodeID {
			continue
		}
		rank, known := api.TaskStateOrder[st.State]
		if !known || api.TaskTerminal(old.State) || rank < api.TaskStateOrder[old.State] {
			continue
		}
		t := consensus.CloneTask(old)
		t.State = st.State
		// A report without a message keeps the reason the task was told
		// to stop (the scheduler's "node drained", "scaled down"…).
		if st.Message != "" || old.DesiredState == api.TaskRunning {
			t.Message = st.Message
		}
		t.Error = st.Error
		t.ExitCode = st.ExitCode
		if st.ContainerID != "" {
			t.ContainerID = st.ContainerID
		}
		if st.IP != "" {
			t.IP = st.IP
		}
		if st.IPs != nil {
			t.IPs = st.IPs
		}
		t.Health = st.Health
		if !st.Timestamp.IsZero() {
			t.UpdatedAt = st.Timestamp
			if st.State == api.TaskRunning && t.StartedAt.IsZero() {
				t.StartedAt = st.Timestamp
			}
		}
		if err := w.Insert(consensus.TableTasks, t); err != nil {
			return nil, err
		}
		applied++
		if api.TaskTerminal(t.State) {
			groups[taskGroup(t)] = struct{}{}
		}
	}
	return applied, trimGroups(w, groups)
}

func applyDeleteTasks(w *consensus.WriteTxn, c command.DeleteTasks) (any, error) {
	for _, id := range c.IDs {
		if t := consensus.First[api.Task](w, consensus.TableTasks, consensus.IndexID, id); t != nil {
			if err := w.Delete(consensus.TableTasks, t); err != nil {
				return nil, err
			}
		}
	}
	return nil, nil
}

func applyTrimTasks(w *consensus.WriteTxn) (any, error) {
	groups := map[groupKey]struct{}{}
	for _, t := range consensus.All[api.Task](w, consensus.TableTasks, consensus.IndexID) {
		groups[taskGroup(t)] = struct{}{}
	}
	return nil, trimGroups(w, groups)
}

// groupKey names the tasks that succeed one another: a replicated slot
// (Slot > 0) or a global service's tasks on one node (Slot 0).
type groupKey struct {
	service string
	slot    int
	node    string
}

func taskGroup(t *api.Task) groupKey {
	if t.Slot > 0 {
		return groupKey{service: t.ServiceID, slot: t.Slot}
	}
	return groupKey{service: t.ServiceID, node: t.NodeID}
}

// trimGroups deletes all but the MaxTerminalTasks newest terminal tasks of
// each group, in a deterministic order.
func trimGroups(w *consensus.WriteTxn, groups map[groupKey]struct{}) error {
	keys := slices.Collect(maps.Keys(groups))
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.service != b.service {
			return a.service < b.service
		}
		if a.slot != b.slot {
			return a.slot < b.slot
		}
		return a.node < b.node
	})
	for _, k := range keys {
		if k.service == "" {
			continue
		}
		var members []*api.Task
		if k.slot > 0 {
			members = consensus.All[api.Task](w, consensus.TableTasks, consensus.IndexServiceSlot, k.service, k.slot)
		} else if k.node != "" {
			members = consensus.All[api.Task](w, consensus.TableTasks, consensus.IndexServiceNode, k.service, k.node)
		} else {
			continue // unassigned global tasks are not trimmed
		}
		var terminal []*api.Task
		for _, t := range members {
			if api.TaskTerminal(t.State) && taskGroup(t) == k {
				terminal = append(terminal, t)
			}
		}
		if len(terminal) <= MaxTerminalTasks {
			continue
		}
		sort.Slice(terminal, func(i, j int) bool {
			a, b := terminal[i], terminal[j]
			if !a.CreatedAt.Equal(b.CreatedAt) {
				return a.CreatedAt.Before(b.CreatedAt)
			}
			return a.ID < b.ID
		})
		for _, t := range terminal[:len(terminal)-MaxTerminalTasks] {
			if err := w.Delete(consensus.TableTasks, t); err != nil {
				return err
			}
		}
	}
	return nil
}
