package scheduler

// RebalanceBackoff lets the behaviour tests (package scheduler_test) wait
// out a failed move's backoff without restating it.
const RebalanceBackoff = rebalanceBackoff
