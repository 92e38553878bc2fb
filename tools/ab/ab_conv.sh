#!/usr/bin/env bash
# Times two versions of kernels/fast/conv_direct.c against each other, their
# calls interleaved in one process (see ab_conv.c).
#   tools/ab/ab_conv.sh A B [REPS fwd|bwd THREADS cell|cifar]
# A and B are git revisions (for example HEAD~3) or paths to a
# conv_direct.c; the rest defaults to 2000 bwd 2 cell. Links against the
# release library in build-bench/ (meson setup build-bench && ninja -C
# build-bench), which must exist.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
lib=$root/build-bench
[ -f "$lib/libdasecv.so" ] || { echo "ab_conv.sh: build $lib first" >&2; exit 2; }
[ $# -ge 2 ] || { echo "usage: ab_conv.sh A B [REPS fwd|bwd THREADS cell|cifar]" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for v in A B; do
  src=$1; shift
  if [ -f "$src" ]; then
    cp "$src" "$work/$v.c"
  else
    git -C "$root" show "$src:kernels/fast/conv_direct.c" > "$work/$v.c"
  fi
  # the version's entry points renamed, so both link into one driver
  printf '#define dsv_fast_conv_direct_%s %s_%s\n' \
    forward "$v" fwd backward "$v" bwd ok "$v" ok > "$work/w$v.c"
  printf '#define dsv_fast_conv_set_direct %s_set\n#include "%s"\n' "$v" "$work/$v.c" >> "$work/w$v.c"
  gcc -std=c11 -O3 -fopenmp -fPIC -I"$root/kernels/fast" -I"$root/engine/include" \
    -I"$root/engine" -c "$work/w$v.c" -o "$work/$v.o"
done
gcc -std=c11 -O2 -fopenmp "$root/tools/ab/ab_conv.c" "$work/A.o" "$work/B.o" \
  -I"$root/engine/include" -L"$lib" -ldasecv -Wl,-rpath,"$lib" -o "$work/ab_conv"
"$work/ab_conv" "${1:-2000}" "${2:-bwd}" "${3:-2}" "${4:-cell}"
