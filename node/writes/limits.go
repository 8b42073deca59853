package writes

// What bounds a node's writes about itself. A node's certificate lets it
// report its own tasks, images and record (node/authz), and each report the
// leader accepts is a log entry that every node replicates and keeps on
// disk until Raft compacts it, and whose text lands in the task records of
// every replica and snapshot. So the leader bounds how big a report's free
// text may be (capStatusText, below) before it proposes the report. It
// trims rather than refuses, as the other trims of a node's report do
// (taskaddrs.go): a refused batch would stop the node's other reports,
// which it retries as they are. The FSM is not the place: it must stay a
// pure function of the log that every version applies alike.

import (
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/shoal-org/shoal/consensus/fsm"
)

// MaxStatusText bounds, in bytes, the Message and the Error of each task
// status a node reports. What the agent says there is a line or two (a
// state change, a runtime's error); a container's own output goes to its
// log files, never to the state.
const MaxStatusText = 4 << 10

// truncatedMark ends a text CapText cut.
const truncatedMark = " …[truncated]"

// CapText returns s cut to at most max bytes of valid UTF-8, ending in a
// mark when it was cut; s as it is when it fits and is valid. Bytes that
// are not UTF-8 become U+FFFD (as they would in the JSON of the log).
func CapText(s string, max int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if len(s) <= max {
		return s
	}
	if max < len(truncatedMark) {
		return ""
	}
	cut := max - len(truncatedMark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + truncatedMark
}

// capStatusText returns cmd with the Message and Error of every task
// status in it (batches too) cut to MaxStatusText.
func capStatusText(cmd fsm.Command) fsm.Command {
	return eachOf(cmd, func(c fsm.TaskStatus) fsm.TaskStatus {
		statuses := c.Statuses
		cloned := false
		for i, st := range c.Statuses {
			msg, errText := CapText(st.Message, MaxStatusText), CapText(st.Error, MaxStatusText)
			if msg == st.Message && errText == st.Error {
				continue
			}
			if !cloned {
				statuses, cloned = slices.Clone(c.Statuses), true // never write to the caller's slice
			}
			statuses[i].Message, statuses[i].Error = msg, errText
		}
		c.Statuses = statuses
		return c
	})
}
