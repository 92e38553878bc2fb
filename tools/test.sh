#!/usr/bin/env bash
# Builds dasecv and runs its test suite.
#   tools/test.sh           release build in build/, then `meson test`
#   tools/test.sh --asan    the same suite under AddressSanitizer + UBSan in build-asan/
set -euo pipefail
cd "$(dirname "$0")/.."

dir=build
opts=()
if [ "${1:-}" = "--asan" ]; then
  dir=build-asan
  opts=(-Db_sanitize=address,undefined -Dbuildtype=debugoptimized -Db_lundef=false)
  # libgomp keeps its thread pool alive until exit; that is not our leak.
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
fi
if [ ! -f "$dir/build.ninja" ]; then
  meson setup "$dir" "${opts[@]}"
fi
ninja -C "$dir" -j "$(nproc)"
meson test -C "$dir" --print-errorlogs --num-processes "$(nproc)"
