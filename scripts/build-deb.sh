#!/usr/bin/env bash
# Builds the Debian package of Shoal from a built binary:
#   scripts/build-deb.sh BIN VERSION OUTDIR   →   OUTDIR/shoal_<debversion>_<arch>.deb
# The container init, shoal-init, and the node supervisor's own binary,
# shoal-supervisor, are taken from next to BIN (make build puts them there)
# and installed in /usr/lib/shoal, where the agent looks for them.
# (make deb runs it). Only dpkg-deb is needed: no debhelper, no fakeroot
# (--root-owner-group). The layout, unit and maintainer scripts are in
# scripts/packaging; their reasoning in scripts/packaging/README.md.
set -euo pipefail

if [ $# -ne 3 ]; then
	echo "usage: $0 BIN VERSION OUTDIR" >&2
	exit 2
fi
bin=$1 version=$2 out=$3
helpers=("$(dirname "$bin")/shoal-init" "$(dirname "$bin")/shoal-supervisor")
for h in "${helpers[@]}"; do
	if [ ! -x "$h" ]; then
		echo "$0: $h not found: build it with make build" >&2
		exit 1
	fi
done
here=$(cd "$(dirname "$0")" && pwd)
pkg=$here/packaging
root=$(cd "$here/.." && pwd)

# A Debian version starts with a digit and uses [A-Za-z0-9.+~]: v1.2.3 →
# 1.2.3, v1.2.3-4-gabc → 1.2.3+4.gabc, anything else (a bare commit from
# `git describe --always`, "dev") → 0.0.0~abc123.
clean() { printf '%s' "$1" | tr -c 'A-Za-z0-9.+~' '.'; }
if [[ $version =~ ^v?([0-9]+\.[0-9]+(\.[0-9]+)*)(-.*)?$ ]]; then
	debversion=${BASH_REMATCH[1]}
	rest=${BASH_REMATCH[3]}
	if [ -n "$rest" ]; then
		debversion="$debversion+$(clean "${rest#-}")"
	fi
else
	debversion="0.0.0~$(clean "$version")"
fi
arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
d=$stage/shoal
install -d -m 0755 "$d/DEBIAN" "$d/usr/bin" "$d/usr/lib/shoal" "$d/lib/systemd/system" "$d/etc/shoal" \
	"$d/usr/share/man/man1" "$d/usr/share/bash-completion/completions" \
	"$d/usr/share/zsh/vendor-completions" "$d/usr/share/doc/shoal"
install -m 0755 "$bin" "$d/usr/bin/shoal"
for h in "${helpers[@]}"; do
	install -m 0755 "$h" "$d/usr/lib/shoal/$(basename "$h")"
done
install -m 0644 "$pkg/shoal.service" "$d/lib/systemd/system/shoal.service"
install -m 0644 "$pkg/agent.yaml" "$d/etc/shoal/agent.yaml"
gzip -9n <"$root/docs/shoal.1" >"$d/usr/share/man/man1/shoal.1.gz"
chmod 0644 "$d/usr/share/man/man1/shoal.1.gz"
install -m 0644 "$pkg/completion/shoal.bash" "$d/usr/share/bash-completion/completions/shoal"
install -m 0644 "$pkg/completion/_shoal" "$d/usr/share/zsh/vendor-completions/_shoal"
for f in docs/upgrades.md docs/cli.md; do
	install -m 0644 "$root/$f" "$d/usr/share/doc/shoal/$(basename "$f")"
done
install -m 0644 "$pkg/debian/conffiles" "$d/DEBIAN/conffiles"
for s in postinst prerm postrm; do
	install -m 0755 "$pkg/debian/$s" "$d/DEBIAN/$s"
done
size=$(du -sk --exclude=DEBIAN "$d" | cut -f1)
sed -e "s/@VERSION@/$debversion/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
	"$pkg/debian/control.in" >"$d/DEBIAN/control"

mkdir -p "$out"
deb=$out/shoal_${debversion}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$d" "$deb" >/dev/null
echo "$deb"
