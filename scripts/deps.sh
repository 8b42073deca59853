#!/usr/bin/env bash
# Installs the Debian packages Shoal's `make run`, tests and benchmarks need,
# only when one is missing (then with `apt-get update` first). Idempotent.
# gcc (with the kernel headers of linux-libc-dev, which it pulls in) builds
# shoal-init, every container's PID 1 (runtime/init); tini provides
# tini-static, the fallback init when shoal-init is not found;
# chromium runs headless for the dashboard's browser test (test/e2e_ui_test.go);
# tcpdump and iperf3 check and measure encrypted networks (test/e2e_wg_test.go).
set -euo pipefail

packages=(runc gcc linux-libc-dev tini busybox-static iproute2 nftables iputils-ping curl jq conntrack psmisc procps stress-ng chromium tcpdump iperf3)

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing packages: ${missing[*]}; run as root (or: sudo apt-get install ${missing[*]})" >&2
	exit 1
fi

echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
