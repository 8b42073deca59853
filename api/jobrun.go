package api

// JobFailed reports whether t is a job task that ended in failure: failed,
// rejected, or complete with a non-zero exit code. The planner stores such
// a task desired shutdown once it is replaced or will not be retried
// (node/scheduler/jobs), as swarmkit's restart supervisor does.
func JobFailed(t *Task) bool {
	switch t.State {
	case TaskFailed, TaskRejected:
		return true
	case TaskComplete:
		return t.ExitCode != 0
	}
	return false
}

// JobRunNodes counts the nodes of a global job's run (its tasks of one
// version), the job's total: a node counts if one of its tasks of the run
// is meant to run or done (desired running or complete), or if its newest
// task of the run failed for good (JobFailed and desired shutdown: not
// retried). A node whose task was stopped for the node's sake (drained,
// constraints, lost) is out. Feed it with Add.
type JobRunNodes struct {
	version uint64
	nodes   map[string]bool
	newest  map[string]*Task
}

// NewJobRunNodes counts the run of version.
func NewJobRunNodes(version uint64) *JobRunNodes {
	return &JobRunNodes{version: version, nodes: map[string]bool{}, newest: map[string]*Task{}}
}

// Add counts t (a task of another run is ignored). t must not change
// until Count.
func (j *JobRunNodes) Add(t *Task) {
	if t.SpecVersion != j.version {
		return
	}
	if t.DesiredState == TaskRunning || t.DesiredState == TaskComplete {
		j.nodes[t.NodeID] = true
	}
	if n := j.newest[t.NodeID]; n == nil || n.CreatedAt.Before(t.CreatedAt) ||
		(n.CreatedAt.Equal(t.CreatedAt) && n.ID < t.ID) {
		j.newest[t.NodeID] = t
	}
}

// Count is the number of nodes of the run.
func (j *JobRunNodes) Count() int {
	n := len(j.nodes)
	for id, t := range j.newest {
		if !j.nodes[id] && t.DesiredState == TaskShutdown && JobFailed(t) {
			n++
		}
	}
	return n
}
