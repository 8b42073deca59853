#!/bin/sh
# Builds shoal-init, the container init (shoal-init.c explains it), as a
# static binary without libc:  runtime/init/build.sh OUT
# The Makefile (`make build` → bin/shoal-init) and the runtime's tests use it,
# so the flags live here only. CC defaults to cc; it needs the kernel's
# userspace headers (Debian's linux-libc-dev, which gcc pulls in).
#
# -nostdlib -static: no libc, no loader; -ffreestanding and no stack
# protector, unwind tables or PIE: nothing needs a runtime; -z norelro,
# no build id and -n (no page alignment of sections) keep code and
# read-only data in one page and leave no writable segment at all.
set -eu
if [ $# -ne 1 ]; then
	echo "usage: $0 OUT" >&2
	exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
out=$1
tmp=$out.tmp.$$
${CC:-cc} -Os -static -nostdlib -ffreestanding -fno-builtin -fno-stack-protector \
	-fno-asynchronous-unwind-tables -fno-unwind-tables -fno-tree-loop-distribute-patterns -fno-pie -no-pie \
	-Wall -Wextra -Werror \
	-Wl,-n -Wl,-z,norelro -Wl,--build-id=none -Wl,-z,noexecstack -s \
	-o "$tmp" "$here/shoal-init.c"
mv -f "$tmp" "$out"
