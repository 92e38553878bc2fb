#!/bin/bash
# tools/cmp_trajectory.sh OLD NEW: trains the course's networks with two
# dasecv binaries (say, a release before a checkpoint format change and this
# build), same seed and flags, and compares the checkpoints from the parameter
# count on (parameters, buffers, optimizer, solver, counters, histories; the
# model section before it and the checksum after it may differ). Prints one
# line per run; "identical" means the training trajectories are the same bit
# for bit. DATA (default fashion-mnist) names the dataset.
OLD=${1:?usage: tools/cmp_trajectory.sh OLD_DASECV NEW_DASECV}
NEW=${2:?usage: tools/cmp_trajectory.sh OLD_DASECV NEW_DASECV}
DATA=${DATA:-fashion-mnist}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
common="--data $DATA --train-size 600 --num-epochs 2 --batch-size 50 --seed 3 --threads 2 --schedule layer --num-train-samples 200 --quiet"
run() { # name args...
  local n=$1; shift
  $OLD train "$@" $common --checkpoint old-$n.ckpt >/dev/null 2>old-$n.err || { echo "$n: old failed"; cat old-$n.err; }
  $NEW train "$@" $common --checkpoint new-$n.ckpt >/dev/null 2>new-$n.err || { echo "$n: new failed"; cat new-$n.err; }
  /usr/bin/python3 - old-$n.ckpt new-$n.ckpt $n <<'PY'
import sys
o=open(sys.argv[1],'rb').read(); n=open(sys.argv[2],'rb').read()
# the parameter and buffer counts open the compared part; version 1 files
# have them at 172; the same offset is tried first, as the counts' bytes may
# also occur earlier in a file of the same version
key=o[172:188]; pos=172 if n[172:188] == key else n.find(key)
same = pos > 0 and o[172:-4] == n[pos:-4]
print(f"{sys.argv[3]:28s} old {len(o)} B, new {len(n)} B, tail from {pos}: {'identical' if same else 'DIFFERENT'} ({len(o)-176} bytes compared)")
PY
}
for dt in float32 float64; do
  run threelayer-$dt --model threelayer --hidden-dim 30 --update-rule adam --reg 1e-3 --dtype $dt
  run fc-bn-dropout-$dt --model fc --hidden-dims 50,40 --normalization batchnorm --dropout 0.8 --update-rule sgd_momentum --dtype $dt
  run resnet-$dt --model resnet --update-rule rmsprop --learning-rate 1e-3 --dtype $dt
done
run threelayer-naive --model threelayer --hidden-dim 30 --backend naive --update-rule adam
run fc-ln --model fc --normalization layernorm --update-rule adam
