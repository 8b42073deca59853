#!/usr/bin/env bash
# Brings up a real 3-node Shoal cluster on this machine, one network
# namespace per node, for `make run` (which builds bin/shoal first; this
# script builds nothing).
#
#   bridge shoalrun0 10.213.250.1/24 in the root namespace
#   shoal-h1..3   10.213.250.11-13, veth shoalrun0-vN to the bridge
#   agents        data .run/hN/data, log .run/hN/agent.log,
#                 socket /run/shoal/hN.sock, detached (setsid nohup)
#
# h1 runs `init`, h2 and h3 `join` with its token; the script returns once
# `node ls` shows 3 ready nodes. If .run already holds a cluster (after
# `make stop`), the agents resume it instead. `make stop` tears it down.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
# The SHOAL_RUN_* variables place a second such cluster beside this one
# (test/e2e_makerun_test.go runs the script so); unset, they are make run's.
# Names must be short: BRIDGE-vN and NSN are interface and namespace names.
BIN="${SHOAL_RUN_BIN:-$ROOT/bin/shoal}"
RUN="${SHOAL_RUN_DIR:-$ROOT/.run}"
SOCKDIR="${SHOAL_RUN_SOCKDIR:-/run/shoal}"
BRIDGE="${SHOAL_RUN_BRIDGE:-shoalrun0}"
NET="${SHOAL_RUN_NET:-10.213.250}"
NS="${SHOAL_RUN_NS:-shoal-h}"
N=3

die() {
	echo "run-cluster: $*" >&2
	exit 1
}

[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, runc)"
[ -x "$BIN" ] || die "$BIN is missing: run 'make build' (or 'make run')"
for tool in ip nsenter unshare setsid jq runc; do
	command -v "$tool" >/dev/null || die "$tool is missing: run 'make deps'"
done

sock() { echo "$SOCKDIR/h$1.sock"; }
shoal() {
	local i=$1
	shift
	"$BIN" --host "unix://$(sock "$i")" "$@"
}

for i in $(seq 1 $N); do
	pidfile="$RUN/h$i/agent.pid"
	if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
		die "an agent is already running (h$i, pid $(cat "$pidfile")): 'make stop' first"
	fi
done

# Network: a bridge in the root namespace, one namespace per node.
if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
	ip link add "$BRIDGE" type bridge
	ip addr add "$NET.1/24" dev "$BRIDGE"
fi
ip link set "$BRIDGE" up
for i in $(seq 1 $N); do
	ns="$NS$i"
	if ! ip netns list | grep -qw "$ns"; then
		ip netns add "$ns"
		ip link add "$BRIDGE-v$i" type veth peer name eth0 netns "$ns"
		ip link set "$BRIDGE-v$i" master "$BRIDGE"
		ip -n "$ns" link set lo up
		ip -n "$ns" addr add "$NET.$((10 + i))/24" dev eth0
		ip -n "$ns" link set eth0 up
		ip -n "$ns" route add default via "$NET.1"
	fi
	ip link set "$BRIDGE-v$i" up
done

# Agents: detached so `make run` returns; each in its own UTS namespace (so
# nodes have distinct hostnames) and network namespace, in the root mount
# namespace (so restarts see the container mounts).
mkdir -p "$SOCKDIR"
for i in $(seq 1 $N); do
	dir="$RUN/h$i"
	mkdir -p "$dir/data"
	rm -f "$(sock "$i")"
	echo "=== run-cluster: start at $(date -Is)" >>"$dir/agent.log"
	setsid nohup unshare --uts -- nsenter --net="/run/netns/$NS$i" -- \
		/bin/sh -c 'hostname "$0" && exec "$@"' "$NS$i" \
		"$BIN" agent --data-dir "$dir/data" --advertise-addr "$NET.$((10 + i))" --socket "$(sock "$i")" \
		>>"$dir/agent.log" 2>&1 </dev/null &
	echo $! >"$dir/agent.pid"
done

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
	local secs=$1 what=$2
	shift 2
	local end=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		if [ $SECONDS -ge $end ]; then
			echo "run-cluster: timed out waiting for $what; last log lines:" >&2
			for i in $(seq 1 $N); do
				echo "--- $RUN/h$i/agent.log" >&2
				tail -n 15 "$RUN/h$i/agent.log" >&2 || true
			done
			exit 1
		fi
		sleep 0.2
	done
}
for i in $(seq 1 $N); do
	wait_for 30 "the h$i agent's socket" shoal "$i" status
done

joined() { [ "$(shoal "$1" status --format json | jq -r '.joined')" = true ]; }

if joined 1; then
	echo "run-cluster: resuming the cluster kept in .run/"
else
	shoal 1 init >/dev/null
fi
token=""
for i in $(seq 2 $N); do
	joined "$i" && continue
	if [ -z "$token" ]; then
		wait_for 30 "the join token" shoal 1 token
		token=$(shoal 1 token)
	fi
	shoal "$i" join --token "$token" "$NET.11:2377"
done

ready() {
	local n
	n=$(shoal 1 node ls --format json | jq '[.[] | select(.status == "ready")] | length')
	[ "$n" -eq "$N" ]
}
wait_for 90 "$N ready nodes" ready

shoal 1 node ls
cat <<MSG

Shoal is running: $N nodes in network namespaces ${NS}1..$N ($NET.11-$((10 + N))).
Talk to any node through its socket, e.g.:

  bin/shoal --host unix://$SOCKDIR/h1.sock node ls
  bin/shoal --host unix://$SOCKDIR/h2.sock status
  export SHOAL_HOST=unix://$SOCKDIR/h3.sock; bin/shoal service ls

Logs: .run/hN/agent.log. Stop everything with: make stop
MSG

# Demo service: a busybox image built from Debian's busybox-static, imported
# on h1 only (the other nodes fetch its layer from h1 when they need it),
# and a web service of 3 replicas published on port 8080 of every node.
if ! shoal 1 service inspect web >/dev/null 2>&1; then
	img="$RUN/demo-rootfs.tar"
	if [ ! -f "$img" ]; then
		tmp=$(mktemp -d)
		mkdir -p "$tmp"/{bin,etc,tmp,www,proc,sys,dev,root}
		cp "$(command -v busybox)" "$tmp/bin/busybox"
		for a in $("$tmp/bin/busybox" --list); do
			[ "$a" = busybox ] || ln -sf busybox "$tmp/bin/$a"
		done
		echo 'root:x:0:0:root:/root:/bin/sh' >"$tmp/etc/passwd"
		echo 'root:x:0:' >"$tmp/etc/group"
		tar -C "$tmp" -cf "$img" .
		rm -rf "$tmp"
	fi
	shoal 1 image import "$img" demo:1 >/dev/null
	shoal 1 service create --name web --replicas 3 --publish 8080:80 demo:1 \
		sh -c 'echo "hello from $(hostname)" >/www/index.html; exec httpd -f -p 80 -h /www' >/dev/null
fi
# A resumed cluster's replicas were stopped with it ('make stop'): they
# restart after their restart delay. Show the service once all of its
# replicas run, however many the user scaled it to (a check for exactly 3
# timed out on every resume after `service scale web=6`, which this script
# suggests).
running() {
	shoal 1 service ls --format json |
		jq -e '.[] | select(.name == "web" and .running > 0 and .running == .replicas)' >/dev/null
}
wait_for 90 "every replica of web running" running
shoal 1 service ls
echo
shoal 1 service ps web

cat <<MSG

A demo service runs: 'web', published on port 8080 of every node.
Try:

  curl http://$NET.11:8080/            # any node answers (routing mesh); run it a few times
  bin/shoal --host unix://$SOCKDIR/h2.sock service scale web=6
  bin/shoal --host unix://$SOCKDIR/h3.sock service logs web
  bin/shoal --host unix://$SOCKDIR/h1.sock node update --availability drain ${NS}2
  ip link set $BRIDGE-v3 down           # pull the plug on h3: its replicas move within seconds
MSG
