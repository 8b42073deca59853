#!/usr/bin/env bash
# Tears down what scripts/run-cluster.sh made: the agents, their runc
# containers, mounts under .run, the namespaces shoal-h1..3 and the bridge
# shoalrun0. The data dirs under .run/hN are kept, so `make run` resumes the same
# cluster (`make clean` deletes them). Idempotent: safe to run at any time.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
# The same SHOAL_RUN_* variables as scripts/run-cluster.sh.
RUN="${SHOAL_RUN_DIR:-$ROOT/.run}"
SOCKDIR="${SHOAL_RUN_SOCKDIR:-/run/shoal}"
BRIDGE="${SHOAL_RUN_BRIDGE:-shoalrun0}"
NS="${SHOAL_RUN_NS:-shoal-h}"
N=3

if [ "$(id -u)" -ne 0 ]; then
	echo "stop-cluster: needs root" >&2
	exit 1
fi

# 1. Agents: SIGTERM, then SIGKILL after 15 s.
pids=()
for i in $(seq 1 $N); do
	pidfile="$RUN/h$i/agent.pid"
	[ -f "$pidfile" ] || continue
	pid=$(cat "$pidfile")
	# Only a process that is still our agent (a reused PID is left alone).
	if [ -n "$pid" ] && grep -qa -- "$RUN/h$i" "/proc/$pid/cmdline" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		pids+=("$pid")
	fi
	rm -f "$pidfile"
done
for pid in "${pids[@]}"; do
	for _ in $(seq 1 150); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
done

# The agents' run roots beside the sockets (runtime.Config.RunRoot,
# containers-<node>): their containers' bundles, rootfs and netns mounts;
# and files-<node> (node/taskfiles): the tasks' secret and config tmpfs.
RUNROOTS=()
for i in $(seq 1 $N); do
	id=$(sed -n 's/.*"node_id": *"\([^"]*\)".*/\1/p' "$RUN/h$i/data/node.json" 2>/dev/null | head -n 1)
	[ -n "$id" ] && RUNROOTS+=("$SOCKDIR/containers-${id:0:12}" "$SOCKDIR/files-${id:0:12}")
done

# 2. Containers: those whose runc state points into .run (bundles and rootfs
#    in the agents' data dirs, as before run dirs) or into one of their run
#    roots, under the roots beside the sockets.
if command -v runc >/dev/null; then
	for root in "$SOCKDIR"/runc-* "$RUN"/h*/data/runc*; do
		[ -d "$root" ] || continue
		for state in "$root"/*/state.json; do
			[ -f "$state" ] || continue
			ours=0
			for d in "$RUN" "${RUNROOTS[@]}"; do
				grep -q -- "$d/" "$state" && ours=1 && break
			done
			[ "$ours" = 1 ] || continue
			id=$(basename "$(dirname "$state")")
			runc --root "$root" delete --force "$id" >/dev/null 2>&1 || true
		done
		rmdir "$root" 2>/dev/null || true
	done
fi

# 3. Anything still running in the namespaces.
for i in $(seq 1 $N); do
	ns="$NS$i"
	if ip netns list 2>/dev/null | grep -qw "$ns"; then
		for pid in $(ip netns pids "$ns" 2>/dev/null); do
			kill -KILL "$pid" 2>/dev/null || true
		done
	fi
done

# 4. Mounts under .run and the run roots, deepest first; then the run roots
#    (a new run makes them again; the records in .run say what was there).
for dir in "$RUN" "${RUNROOTS[@]}"; do
	[ -d "$dir" ] || continue
	awk -v run="$dir" '$5 == run || index($5, run "/") == 1 { print $5 }' /proc/self/mountinfo |
		sort -r | while read -r mp; do
		umount -l "$(printf '%b' "$mp")" 2>/dev/null || true
	done
done
for dir in "${RUNROOTS[@]}"; do
	rm -rf --one-file-system -- "$dir"
done

# 5. Network: namespaces (their veth ends go with them), veths, bridge.
for i in $(seq 1 $N); do
	ip netns del "$NS$i" 2>/dev/null || true
	ip link del "$BRIDGE-v$i" 2>/dev/null || true
	rm -f "$SOCKDIR/h$i.sock"
done
ip link del "$BRIDGE" 2>/dev/null || true

echo "shoal cluster stopped (data kept in .run/; 'make clean' removes it)"
