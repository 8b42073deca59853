package agent

import "time"

// agentSlack is the timer slack every thread of the agent runs with
// (api/timerslack, which says why; what the agent forks keeps the
// default).
//
// Measured on an idle 3-node fast cluster, the same agents alternating
// 15 s windows: 1 ms on sysmon alone (the thread whose 20 µs polls were
// most wake-ups) against the default took the leader from 0.81 to 0.62 %
// of a core and the followers from 0.44 to 0.36 % and 0.46 to 0.41 %
// (medians of 4 pairs), wake-ups 163 -> 72/s and 77 -> 40/s. 1 ms on
// every thread against sysmon alone, 4 more pairs: wake-ups 66-69 ->
// 55-57/s on the leader and 34-39 -> 29-34/s on the followers, every pair;
// the timers' early empty wake-ups are what went.
const agentSlack = time.Millisecond
