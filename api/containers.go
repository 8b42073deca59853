package api

import "strings"

// TaskContainer finds the container of this node's list that a task name
// stands for: the short task name (web.1, shop_web.1, web.NODEID) or the
// full one, the task name and the task's whole ID (web.1.TASKID). Task
// containers are named TASKNAME.SHORT-TASKID, so the full name differs
// from the container's name unless the ID is short. Of several containers
// of one task name (a slot restarted), it takes the running one, else the
// newest. ok is false when no task container matches; a container that is
// not a task's (no TaskID) never stands for a task, whatever its name.
//
// The agent resolves every container route's reference with it (after
// the container IDs and names), so `shoal exec web.1`, `logs`, `stop`,
// `rm` and `inspect` take the same names; the CLI uses it only with an
// older agent that did not.
func TaskContainer(list []Container, ref string) (c Container, ok bool) {
	for _, x := range list {
		if x.TaskID == "" {
			continue
		}
		task, isTask := strings.CutSuffix(x.Name, "."+ShortID(x.TaskID))
		if !isTask || task == "" || (ref != task && ref != task+"."+x.TaskID) {
			continue
		}
		if !ok || betterTaskContainer(x, c) {
			c, ok = x, true
		}
	}
	return c, ok
}

// betterTaskContainer prefers a running container, then the newest.
func betterTaskContainer(x, than Container) bool {
	xr, tr := x.State == ContainerRunning, than.State == ContainerRunning
	if xr != tr {
		return xr
	}
	return x.CreatedAt.After(than.CreatedAt)
}
