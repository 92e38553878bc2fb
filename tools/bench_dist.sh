#!/usr/bin/env bash
# Data-parallel throughput on this machine: images/s of 1 process x 1 thread,
# 1 x 2 threads and 2 ranks x 1 thread, the gradient wait per step left after
# backward (default buckets, and one bucket: no overlap), for a model. Each
# configuration runs REPS times (3) and the fastest run is shown, with its
# wait: on a shared machine the other runs measure the neighbours.
#   tools/bench_dist.sh DATA [MODEL] [TRAIN_SIZE] [extra dasecv train options]
# e.g. tools/bench_dist.sh cifar10:DIR threelayer 2000
# Uses build/cli/dasecv; as root mpirun needs --allow-run-as-root.
set -euo pipefail
data=$1 model=${2:-threelayer} n=${3:-2000}
shift $(( $# < 3 ? $# : 3 ))
exe=${DASECV:-build/cli/dasecv}
mpirun=(mpirun --allow-run-as-root --oversubscribe)
common=(train --data "$data" --model "$model" --train-size "$n" --batch-size 50
        --num-epochs 1 --num-train-samples 100 --num-val-samples 100 --json "$@")
ips() { sed -n 's/.*"images_per_s": \([0-9.]*\).*/\1/p'; }
reps=${REPS:-3}
run() { # label, command...
  local label=$1; shift
  local best=0 bwait=- out wait err
  err=$(mktemp)
  for ((i = 0; i < reps; i++)); do
    out=$("$@" 2>"$err" | ips)
    wait=$(sed -n 's/.*waited \([0-9.]*\) ms per step.*/\1/p' "$err")
    if awk "BEGIN { exit !($out > $best) }"; then best=$out bwait=${wait:--}; fi
  done
  printf '%-34s %10s %12s\n' "$label" "$best" "$bwait"
  rm -f "$err"
}
printf '%-34s %10s %12s\n' "$model, batch 50" "images/s" "wait_ms/step"
run "1 process x 1 thread" "$exe" "${common[@]}" --threads 1
run "1 process x 2 threads" "$exe" "${common[@]}" --threads 2
for mb in 0.25 1 4; do
  run "2 ranks x 1 thread, bucket ${mb} MiB" "${mpirun[@]}" -np 2 "$exe" "${common[@]}" --threads 1 --bucket-mb "$mb"
done
run "2 ranks x 1 thread, one bucket" "${mpirun[@]}" -np 2 "$exe" "${common[@]}" --threads 1 --bucket-mb 4096
