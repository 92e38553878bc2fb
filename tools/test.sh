#!/usr/bin/env bash
# Builds dasecv and runs its test suite.
#   tools/test.sh           release build in build/, then `meson test`
#   tools/test.sh --asan    the same suite under AddressSanitizer + UBSan in build-asan/
#   tools/test.sh --minimal the suite of a build without the optional parts (oneDNN,
#                           MPI, Google Benchmark, the Python binding) in build-minimal/
#   tools/test.sh --fuzz    libFuzzer targets (clang) in build-fuzz/: replays the seed
#                           corpora, then fuzzes each target for FUZZ_SECONDS (30) s;
#                           fails on any crash, leak, timeout or out-of-memory
set -euo pipefail
cd "$(dirname "$0")/.."

fuzz() {
  local dir=build-fuzz secs=${FUZZ_SECONDS:-30}
  if [ ! -f "$dir/build.ninja" ]; then
    CC=clang meson setup "$dir" -Dfuzz=enabled -Donednn=disabled -Dbenchmarks=disabled \
      -Dbuildtype=debugoptimized
  fi
  local targets=(npy npz checkpoint cifar idx image cmdline netfile)
  ninja -C "$dir" -j "$(nproc)" "${targets[@]/#/tests/fuzz/fuzz_}"
  meson test -C "$dir" --no-rebuild --print-errorlogs --suite fuzz --num-processes "$(nproc)"
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  local t work log
  for t in "${targets[@]}"; do
    # New inputs go to a scratch corpus; crashers to $dir/fuzz-artifacts/.
    work=$dir/fuzz-work/$t
    log=$dir/fuzz-logs/$t.log
    mkdir -p "$work" "$dir/fuzz-artifacts" "$dir/fuzz-logs"
    echo "fuzz $t: ${secs} s"
    # The command-line target's errors go to stderr by design: keep them quiet.
    if ! "$dir/tests/fuzz/fuzz_$t" "$work" "tests/fuzz/corpus/$t" \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$dir/fuzz-artifacts/$t-" \
        $([ "$t" = cmdline ] && echo -close_fd_mask=2) >"$log" 2>&1; then
      tail -n 60 "$log"
      echo "fuzz $t: FAILED (log: $log; the input is in $dir/fuzz-artifacts/)" >&2
      return 1
    fi
    grep -E '^#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units' "$log" | sed "s/^/  $t: /"
  done
}

dir=build
opts=()
case "${1:-}" in
--fuzz)
  fuzz
  exit 0
  ;;
--minimal)
  dir=build-minimal
  opts=(-Donednn=disabled -Dmpi=disabled -Dbenchmarks=disabled -Dpython=disabled)
  ;;
--asan)
  dir=build-asan
  opts=(-Db_sanitize=address,undefined -Dbuildtype=debugoptimized -Db_lundef=false)
  # libgomp keeps its thread pool alive until exit; that is not our leak.
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  ;;
esac
if [ ! -f "$dir/build.ninja" ]; then
  meson setup "$dir" "${opts[@]}"
fi
ninja -C "$dir" -j "$(nproc)"
meson test -C "$dir" --print-errorlogs --num-processes "$(nproc)"
