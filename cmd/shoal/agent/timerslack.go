package agent

import "github.com/shoal-org/shoal/api/timerslack"

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
//
// 4 ms against 1 ms (FootprintIdle3, fast, 60 s, two alternating pairs,
// 2026-12): median agent 26 -> 22-23 wake-ups a second, leader 55-57 ->
// 45-46, median agent 0.324 / 0.294 -> 0.268 / 0.304 % of a core (the
// machine was busy with a CI run; the wake-ups are the steadier figure).
// Sysmon's first poll after a burst now outlasts nearly every burst (an
// idle agent's bursts are a heartbeat or a probe, well under 4 ms), so it
// wakes once per burst instead of once per millisecond of it. What it
// costs: a timer fires up to 4 ms late, and with one P a goroutine waits
// up to a few sysmon polls (now ~4 ms each) for the P of a blocking system
// call (an fsync) to be handed over. Neither shows in what a user waits:
// create 10 -> running and update all 10 at once, two alternating pairs
// each, stayed within their run-to-run spread (vs raw runc 2.02 / 1.70
// against 2.12 / 1.67, and 2.33 / 2.15 against 2.78 / 2.03).
const agentSlack = timerslack.Agent
