package raftnode

// LogWriteFailing returns the error of the last failed write of raft's log
// when the last write failed (logstore.LogStore.WriteFailing: a full disk),
// nil otherwise and for an in-memory log. hashicorp/raft only logs such a
// failure and refuses the leader's append, so a follower that cannot
// persist looked healthy to everyone; node/diskhealth reads this to report
// it.
func (r *Raft) LogWriteFailing() error {
	if w, ok := r.logs.(interface{ WriteFailing() error }); ok {
		return w.WriteFailing()
	}
	return nil
}
