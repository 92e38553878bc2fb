#!/usr/bin/env bash
# Data-parallel throughput on this machine, for a model at batch B (50):
#   1 process x 1 thread and x 2 threads;
#   2 ranks x 1 thread at global batch B (the same training: strong scaling),
#     with 1 MiB buckets and with one bucket (no overlap);
#   1 process x 1 thread at batch B/2 (what each of those ranks computes);
#   2 ranks x 1 thread at global batch 2B (B per rank: weak scaling);
#   2 independent processes x 1 thread at batch B, at the same time, no MPI
#     (their images/s added): what this machine gives two processes at
#     once, an upper bound for the 2-rank runs (shared caches, memory and
#     the host's scheduling, with nothing exchanged).
# The configurations run in interleaved rounds (REPS, default 5), so that a
# slow stretch of a shared machine hits all of them alike; each cell is the
# median over the rounds, with the gradient wait per step after backward.
#   tools/bench_dist.sh DATA [MODEL] [TRAIN_SIZE] [extra dasecv train options]
# e.g. tools/bench_dist.sh cifar10:DIR threelayer 4000
# Uses build/cli/dasecv (DASECV=...); as root mpirun needs --allow-run-as-root.
set -uo pipefail
data=$1 model=${2:-threelayer} n=${3:-4000}
shift $(($# < 3 ? $# : 3))
exe=${DASECV:-build/cli/dasecv}
B=${BATCH:-50}
reps=${REPS:-5}
mpirun=(mpirun --allow-run-as-root --oversubscribe)
common=(train --data "$data" --model "$model" --num-epochs 1
        --num-train-samples 100 --num-val-samples 100 --json --threads 1 "$@")

labels=("1 process x 1 thread, batch $B"
        "1 process x 2 threads, batch $B"
        "2 ranks x 1 thread, batch $B, 1 MiB buckets"
        "2 ranks x 1 thread, batch $B, one bucket"
        "1 process x 1 thread, batch $((B / 2))"
        "2 ranks x 1 thread, batch $((2 * B)) ($B per rank)"
        "2 processes x 1 thread at once, batch $B each, no MPI")
# auto's timed decisions are made once per configuration, by a short
# warm-up run that writes them as a plan; the timed runs replay it, so they
# neither pay for the timing nor depend on it
plans=$(mktemp -d)
trap 'rm -rf "$plans"' EXIT
run_config() { # index [warm-up] -> "images/s wait_ms"
    local out err plan=(--plan "$plans/$1") c=("${common[@]}" --train-size "$n")
    if [ -n "${2:-}" ]; then
        plan=(--save-plan "$plans/$1")
        c=("${common[@]}" --train-size $((4 * B)))
    fi
    err=$(mktemp)
    # a failed run shows its errors and counts as 0 images/s
    trap 'echo "bench_dist: configuration $1 failed:" >&2; grep -i dasecv "$err" | head -n 5 >&2' ERR
    case $1 in
    0) out=$("$exe" "${c[@]}" "${plan[@]}" --batch-size "$B" 2>"$err") ;;
    1) out=$("$exe" "${c[@]}" "${plan[@]}" --batch-size "$B" --threads 2 2>"$err") ;;
    2) out=$("${mpirun[@]}" -np 2 "$exe" "${c[@]}" "${plan[@]}" --batch-size "$B" --bucket-mb 1 2>"$err") ;;
    3) out=$("${mpirun[@]}" -np 2 "$exe" "${c[@]}" "${plan[@]}" --batch-size "$B" --bucket-mb 4096 2>"$err") ;;
    4) out=$("$exe" "${c[@]}" "${plan[@]}" --batch-size $((B / 2)) 2>"$err") ;;
    5) out=$("${mpirun[@]}" -np 2 "$exe" "${c[@]}" "${plan[@]}" --batch-size $((2 * B)) 2>"$err") ;;
    6) # the warm-up (which writes the plan) runs one process; otherwise the
        # second process's output goes to a file and both end before the sum
        if [ -n "${2:-}" ]; then
            out=$("$exe" "${c[@]}" "${plan[@]}" --batch-size "$B" 2>"$err")
        else
            local second
            second=$(mktemp)
            "$exe" "${c[@]}" "${plan[@]}" --batch-size "$B" >"$second" 2>>"$err" &
            out=$("$exe" "${c[@]}" "${plan[@]}" --batch-size "$B" 2>>"$err")
            wait $! || false
            out+=$'\n'$(cat "$second")
            rm -f "$second"
        fi ;;
    esac
    local ips wait
    ips=$(sed -n 's/.*"images_per_s": \([0-9.]*\).*/\1/p' <<<"$out" | awk '{ s += $1 } END { if (NR) print s }')
    wait=$(sed -n 's/.*waited \([0-9.]*\) ms per step.*/\1/p' "$err")
    rm -f "$err"
    echo "${ips:-0} ${wait:--}"
}
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

declare -A ips waits
for i in "${!labels[@]}"; do
    run_config "$i" warm-up >/dev/null
done
for ((r = 0; r < reps; r++)); do
    for i in "${!labels[@]}"; do
        read -r a w < <(run_config "$i")
        ips[$i]+="$a "
        waits[$i]+="$w "
    done
done
echo "$model, $reps interleaved rounds, medians; $(nproc) cores, load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '| %s | %s | %s |\n|---|---:|---:|\n' configuration images/s "wait ms/step"
declare -A med
for i in "${!labels[@]}"; do
    med[$i]=$(tr ' ' '\n' <<<"${ips[$i]}" | grep . | median)
    wm=-
    if tr ' ' '\n' <<<"${waits[$i]}" | grep -q '^[0-9]'; then
        wm=$(tr ' ' '\n' <<<"${waits[$i]}" | grep '^[0-9]' | median)
    fi
    printf '| %s | %s | %s |\n' "${labels[$i]}" "${med[$i]}" "$wm"
done
awk -v one="${med[0]}" -v two="${med[1]}" -v s1="${med[2]}" -v s2="${med[3]}" -v h="${med[4]}" \
    -v w="${med[5]}" -v pair="${med[6]}" 'BEGIN {
    printf "threads: 2 threads / 1 thread = %.2f\n", two / one
    printf "strong scaling (same batch), 2 ranks / (2 x 1 rank): %.0f%% (1 MiB buckets), %.0f%% (one bucket)\n", 100 * s1 / (2 * one), 100 * s2 / (2 * one)
    printf "  against 2 x the rate at the per-rank batch (B/2): %.0f%%, %.0f%%\n", 100 * s1 / (2 * h), 100 * s2 / (2 * h)
    printf "weak scaling (same batch per rank), 2 ranks / (2 x 1 rank): %.0f%%\n", 100 * w / (2 * one)
    printf "2 independent processes / (2 x 1 process): %.0f%%; 2 ranks at B per rank / 2 processes: %.0f%%\n", 100 * pair / (2 * one), 100 * w / pair
}'
