#!/bin/bash
# Bad-input sweep of the dasecv command line: runs well over a hundred bad
# inputs and faults across train, eval, predict, op, check, describe and
# export, and classifies each run:
#   clean     non-zero exit (not a signal) with a one-line message on stderr
#   messy     non-zero exit, but stderr is empty or more than one line
#   silent    exit 0 where the input should have been refused
#   crash     killed by a signal, or a sanitizer report on stderr
#   data loss a file that existed before the run changed, vanished or
#             changed type (the guarded files below)
# Prints one line per case that is not clean, then a table of counts.
# Usage: tools/badinput.sh [-v]   (uses $DASECV, else build/cli/dasecv)
# For people to run; not part of the test suite.
set -u
DASECV=${DASECV:-$(dirname "$0")/../build/cli/dasecv}
DASECV=$(realpath "$DASECV")
VERBOSE=${1:-}
W=$(mktemp -d /tmp/dasecv-badinput.XXXXXX)
trap 'rm -rf "$W"' EXIT
cd "$W" || exit 1
export DASECV_NUM_THREADS=${DASECV_NUM_THREADS:-2}

be32() { printf "\\x$(printf %02x $(($1 >> 24 & 255)))\\x$(printf %02x $(($1 >> 16 & 255)))\\x$(printf %02x $(($1 >> 8 & 255)))\\x$(printf %02x $(($1 & 255)))"; }
# IDX pair DIR/PREFIX-{images-idx3,labels-idx1}-ubyte of N images of 8x8
idx() {
    { printf '\x00\x00\x08\x03'; be32 "$3"; be32 8; be32 8; head -c $(($3 * 64)) /dev/urandom; } > "$1/$2-images-idx3-ubyte"
    { printf '\x00\x00\x08\x01'; be32 "$3"; for ((i = 0; i < $3; i++)); do printf "\\x0$((i % 10))"; done; } > "$1/$2-labels-idx1-ubyte"
}
mkdir -p mini cifar small empty
idx mini train 200; idx mini t10k 20
for f in data_batch_1 data_batch_2 data_batch_3 data_batch_4 data_batch_5 test_batch; do
    head -c $((3073 * 20)) /dev/zero > cifar/$f.bin
done
D=mnist:$W/mini
SMALL=(--model threelayer --num-filters 2 --filter-size 3 --hidden-dim 8 --batch-size 20 --num-train-samples 50 --quiet)
"$DASECV" train --data "$D" "${SMALL[@]}" --num-epochs 1 --checkpoint good.ckpt >/dev/null 2>&1 || { echo "cannot make a checkpoint"; exit 1; }
/usr/bin/python3 - <<'PY' 2>/dev/null || printf '\x93NUMPY\x01\x00\x76\x00{"descr": "<f4"}' > x.npy
import numpy as np
np.save("x.npy", np.ones((2, 3, 4, 4), np.float32)); np.save("w.npy", np.ones((2, 3, 3, 3), np.float32))
np.save("b.npy", np.zeros(2, np.float32)); np.save("y.npy", np.zeros(2, np.int64)); np.save("u8.npy", np.zeros((2, 3), np.uint8))
np.save("x64.npy", np.ones((2, 3, 4, 4), np.float64)); np.save("nan.npy", np.full((2, 3), np.nan, np.float32))
PY
"$DASECV" export good.ckpt -o good.npz >/dev/null 2>&1
head -c 100 good.ckpt > trunc.ckpt
cp good.ckpt flip.ckpt; printf '\xff' | dd of=flip.ckpt bs=1 seek=200 conv=notrunc 2>/dev/null
printf 'not a checkpoint' > text.ckpt
: > zero.ckpt
printf '\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR' > cut.png
printf 'BM\x36\x00' > tiny.bmp
printf '\xff\xd8\xff\xe0' > cut.jpg
printf 'GIF89a' > pic.gif
head -c 5000 /dev/urandom > noise.png
printf '[net]\ninput = 1,8,8\nclasses = 10\n[conv]\nfilters = -3\n' > bad.cfg
printf '[net]\n[[[\n' > garbage.cfg
printf 'iteration\n' > precious.csv
cp good.ckpt precious.ckpt
printf 'keep' > precious.npy
mkfifo fifo; mkdir adir; ln -s precious.ckpt link.ckpt; ln -s fifo link-fifo
python3 -c 'import socket; s=socket.socket(socket.AF_UNIX); s.bind("sock")' 2>/dev/null ||
    /usr/bin/python3 -c 'import socket; s=socket.socket(socket.AF_UNIX); s.bind("sock")'

GUARDED=(good.ckpt precious.ckpt precious.csv precious.npy fifo adir link.ckpt link-fifo sock good.npz)
snapshot() {
    for f in "${GUARDED[@]}"; do
        printf '%s %s ' "$f" "$(stat -c %F "$f" 2>/dev/null || echo missing)"
        [ -f "$f" ] && [ ! -L "$f" ] && md5sum < "$f" | cut -c1-32
        [ -L "$f" ] && readlink "$f"
        echo
    done
}

declare -A COUNT=([clean]=0 [messy]=0 [silent]=0 [crash]=0 ["data loss"]=0)
N=0
# case NAME ARGS...: a bad input that must be refused
case_() {
    local name=$1; shift
    local before after rc cls
    before=$(snapshot)
    timeout 120 "$DASECV" "$@" > out.txt 2> err.txt < /dev/null
    rc=$?
    after=$(snapshot)
    local lines
    lines=$(wc -l < err.txt)
    if [ "$before" != "$after" ]; then
        cls="data loss"
    elif [ $rc -ge 124 ] || grep -q -E 'Sanitizer|runtime error:|Segmentation|Aborted|core dumped' err.txt; then
        cls=crash
    elif [ $rc -eq 0 ]; then
        cls=silent
    elif [ "$lines" -eq 1 ]; then
        cls=clean
    else
        cls=messy
    fi
    N=$((N + 1))
    COUNT[$cls]=$((COUNT[$cls] + 1))
    if [ "$cls" != clean ] || [ -n "$VERBOSE" ]; then
        printf '%-9s rc=%-3s %s: dasecv %s\n' "$cls" "$rc" "$name" "$*"
        [ "$cls" != clean ] && head -c 300 err.txt | sed 's/^/          | /'
    fi
    if [ "$cls" = "data loss" ]; then # restore for the next cases
        diff <(echo "$before") <(echo "$after") | sed 's/^/          | /'
        rm -rf fifo adir link.ckpt link-fifo; cp good.ckpt precious.ckpt
        printf 'iteration\n' > precious.csv; printf 'keep' > precious.npy
        mkfifo fifo; mkdir adir; ln -s precious.ckpt link.ckpt; ln -s fifo link-fifo
    fi
}
B=(--data "$D" "${SMALL[@]}" --num-epochs 1)

# ---- train: options
case_ "no value" train --batch-size
case_ "zero batch" train "${B[@]}" --batch-size 0
case_ "negative batch" train "${B[@]}" --batch-size -5
case_ "text batch" train "${B[@]}" --batch-size ten
case_ "huge batch" train "${B[@]}" --batch-size 99999999999
case_ "zero epochs" train "${B[@]}" --num-epochs 0
case_ "negative lr" train "${B[@]}" --learning-rate -1
case_ "inf lr" train "${B[@]}" --learning-rate inf
case_ "nan lr" train "${B[@]}" --learning-rate nan
case_ "zero lr" train "${B[@]}" --learning-rate 0
case_ "lr decay 0" train "${B[@]}" --lr-decay 0
case_ "lr decay nan" train "${B[@]}" --lr-decay nan
case_ "dropout 0" train "${B[@]}" --dropout 0
case_ "dropout 2" train "${B[@]}" --dropout 2
case_ "reg -1" train "${B[@]}" --reg -1
case_ "weight scale 0" train "${B[@]}" --weight-scale 0
case_ "bad rule" train "${B[@]}" --update-rule sgdd
case_ "bad norm" train "${B[@]}" --normalization group
case_ "bad dtype" train "${B[@]}" --dtype float16
case_ "bad backend" train "${B[@]}" --backend gpu
case_ "bad schedule" train "${B[@]}" --schedule fast
case_ "threads 0" train "${B[@]}" --threads 0
case_ "threads huge" train "${B[@]}" --threads 100000
case_ "hidden dims empty" train "${B[@]}" --model fc --hidden-dims ,
case_ "hidden dims bad" train "${B[@]}" --model fc --hidden-dims 10,x
case_ "filter size 0" train "${B[@]}" --filter-size 0
case_ "unknown option" train "${B[@]}" --bogus
case_ "stray argument" train "${B[@]}" stray
case_ "flag with value" train "${B[@]}" --json=yes
case_ "empty checkpoint path" train "${B[@]}" --checkpoint ""
case_ "seed negative" train "${B[@]}" --seed -1
case_ "print every 0" train "${B[@]}" --print-every 0
case_ "train size 0" train "${B[@]}" --train-size 0
case_ "num-train-samples -1" train "${B[@]}" --num-train-samples -1
case_ "course flag on a model file" train "${B[@]}" --model "$W/bad.cfg" --hidden-dim 3
# ---- train: models and weights
case_ "unknown model" train "${B[@]}" --model nosuch
case_ "model file bad value" train --data "$D" --model "$W/bad.cfg" --num-epochs 1
case_ "model file garbage" train --data "$D" --model "$W/garbage.cfg" --num-epochs 1
case_ "model file missing" train --data "$D" --model "$W/none.cfg" --num-epochs 1
case_ "model file is a dir" train --data "$D" --model "$W/adir/" --num-epochs 1
case_ "init-from missing" train "${B[@]}" --init-from none.npz
case_ "init-from text" train "${B[@]}" --init-from text.ckpt
case_ "init-from other model" train "${B[@]}" --model fc --init-from good.npz
case_ "init-from and resume" train "${B[@]}" --init-from good.npz --resume good.ckpt
# ---- train: data
case_ "unknown spec" train "${B[@]}" --data cifar100:x
case_ "spec no dir" train "${B[@]}" --data mnist
case_ "spec empty dir" train "${B[@]}" --data mnist:
case_ "missing dir" train "${B[@]}" --data mnist:/nonexistent
case_ "empty dir" train "${B[@]}" --data "mnist:$W/empty"
case_ "cifar partial" train "${B[@]}" --data "cifar10:$W/cifar"
case_ "cifar missing" train "${B[@]}" --data "cifar10:$W/empty"
case_ "fashion env empty" env DASECV_FASHION_MNIST_DIR="$W/empty" "$DASECV" train --num-epochs 1
cp -r mini mtrunc; truncate -s 1000 mtrunc/train-images-idx3-ubyte
case_ "idx truncated" train "${B[@]}" --data "mnist:$W/mtrunc"
cp -r mini mlab; printf '\x00\x00\x08\x01\x00\x00\x00\x05' > mlab/train-labels-idx1-ubyte
case_ "idx label count" train "${B[@]}" --data "mnist:$W/mlab"
cp -r mini mmag; printf 'XXXX' | dd of=mmag/train-images-idx3-ubyte conv=notrunc 2>/dev/null
case_ "idx bad magic" train "${B[@]}" --data "mnist:$W/mmag"
cp -r mini mlbl; printf '\x63' | dd of=mlbl/train-labels-idx1-ubyte bs=1 seek=9 conv=notrunc 2>/dev/null
case_ "idx label 99" train "${B[@]}" --data "mnist:$W/mlbl"
case_ "train size too big" train "${B[@]}" --train-size 100000000
# ---- train: output paths
case_ "checkpoint fifo" train "${B[@]}" --checkpoint fifo
case_ "checkpoint dir" train "${B[@]}" --checkpoint adir
case_ "checkpoint socket" train "${B[@]}" --checkpoint sock
case_ "checkpoint dev null" train "${B[@]}" --checkpoint /dev/null
case_ "checkpoint dev full" train "${B[@]}" --checkpoint /dev/full
case_ "checkpoint link to fifo" train "${B[@]}" --checkpoint link-fifo
case_ "checkpoint missing dir" train "${B[@]}" --checkpoint nodir/x.ckpt
case_ "checkpoint under a file" train "${B[@]}" --checkpoint precious.npy/x.ckpt
case_ "log fifo" train "${B[@]}" --log fifo
case_ "log dir" train "${B[@]}" --log adir
case_ "log dev full" train "${B[@]}" --log /dev/full
case_ "log missing dir" train "${B[@]}" --log nodir/log.csv
case_ "stdout full" sh -c "'$DASECV' train ${B[*]} --json > /dev/full"
case_ "stdout closed" sh -c "'$DASECV' train ${B[*]} --json >&-"
# ---- train: resume
case_ "resume missing" train --data "$D" --resume none.ckpt
case_ "resume truncated" train --data "$D" --resume trunc.ckpt --checkpoint x1.ckpt
case_ "resume flipped" train --data "$D" --resume flip.ckpt --checkpoint x2.ckpt
case_ "resume text" train --data "$D" --resume text.ckpt --checkpoint x3.ckpt
case_ "resume empty" train --data "$D" --resume zero.ckpt --checkpoint x4.ckpt
case_ "resume other data" train --data "cifar10-custom:$W/cifar" --resume good.ckpt --checkpoint x5.ckpt
case_ "resume dir" train --data "$D" --resume adir
case_ "resume fifo" train --data "$D" --resume fifo --checkpoint x6.ckpt
# ---- environment
case_ "threads env 0" env DASECV_NUM_THREADS=0 "$DASECV" train "${B[@]}"
case_ "threads env abc" env DASECV_NUM_THREADS=abc "$DASECV" eval --checkpoint good.ckpt --data "$D"
case_ "threads env -3" env DASECV_NUM_THREADS=-3 "$DASECV" predict --checkpoint good.ckpt cut.png
case_ "threads env 99999" env DASECV_NUM_THREADS=99999 "$DASECV" op --list
case_ "threads env empty" env DASECV_NUM_THREADS= "$DASECV" check --op relu
# ---- eval
case_ "eval no checkpoint" eval --data "$D"
case_ "eval missing" eval --checkpoint none.ckpt --data "$D"
case_ "eval truncated" eval --checkpoint trunc.ckpt --data "$D"
case_ "eval flipped" eval --checkpoint flip.ckpt --data "$D"
case_ "eval text" eval --checkpoint text.ckpt --data "$D"
case_ "eval empty" eval --checkpoint zero.ckpt --data "$D"
case_ "eval fifo" eval --checkpoint fifo --data "$D"
case_ "eval dir" eval --checkpoint adir --data "$D"
case_ "eval bad split" eval --checkpoint good.ckpt --data "$D" --split dev
case_ "eval batch 0" eval --checkpoint good.ckpt --data "$D" --batch-size 0
case_ "eval wrong data" eval --checkpoint good.ckpt --data "cifar10-custom:$W/cifar"
case_ "eval bad spec" eval --checkpoint good.ckpt --data nosuch
case_ "eval stdout full" sh -c "'$DASECV' eval --checkpoint good.ckpt --data '$D' --json > /dev/full"
case_ "eval stdout closed" sh -c "'$DASECV' eval --checkpoint good.ckpt --data '$D' >&-"
case_ "eval unknown option" eval --checkpoint good.ckpt --bogus
# ---- predict
case_ "predict no image" predict --checkpoint good.ckpt
case_ "predict missing image" predict --checkpoint good.ckpt none.png
case_ "predict cut png" predict --checkpoint good.ckpt cut.png
case_ "predict cut jpeg" predict --checkpoint good.ckpt cut.jpg
case_ "predict bmp" predict --checkpoint good.ckpt tiny.bmp
case_ "predict gif" predict --checkpoint good.ckpt pic.gif
case_ "predict noise" predict --checkpoint good.ckpt noise.png
case_ "predict text as image" predict --checkpoint good.ckpt bad.cfg
case_ "predict dir as image" predict --checkpoint good.ckpt adir
case_ "predict fifo as image" predict --checkpoint good.ckpt fifo
case_ "predict bad checkpoint" predict --checkpoint flip.ckpt cut.png
case_ "predict top-k 0" predict --checkpoint good.ckpt --top-k 0 cut.png
case_ "predict top-k 11" predict --checkpoint good.ckpt --top-k 11 cut.png
case_ "predict bad spec" predict --checkpoint good.ckpt --data x:y cut.png
case_ "predict stdout full" sh -c "'$DASECV' predict --checkpoint good.ckpt --json cut.png > /dev/full"
# ---- op
case_ "op no name" op
case_ "op unknown" op nosuch
case_ "op missing input" op relu_forward --out o.npy
case_ "op missing file" op relu_forward --x none.npy --out o.npy
case_ "op text input" op relu_forward --x bad.cfg --out o.npy
case_ "op u8 input" op relu_forward --x u8.npy --out o.npy
case_ "op dtype mix" op conv_forward --x x.npy --w x64.npy --b b.npy --out o.npy
case_ "op bad shapes" op conv_forward --x x.npy --w b.npy --b b.npy --out o.npy
case_ "op stride 0" op conv_forward --x x.npy --w w.npy --b b.npy --stride 0 --out o.npy
case_ "op pad -1" op conv_forward --x x.npy --w w.npy --b b.npy --pad -1 --out o.npy
case_ "op out fifo" op relu_forward --x x.npy --out fifo
case_ "op out dir" op relu_forward --x x.npy --out adir
case_ "op out dev null" op relu_forward --x x.npy --out /dev/null
case_ "op out missing dir" op relu_forward --x x.npy --out nodir/o.npy
case_ "op out twice" op relu_forward --x x.npy --out o.npy --out p.npy
case_ "op not its output" op relu_forward --x x.npy --dw o.npy
case_ "op float labels" op softmax_loss --x x.npy --y x.npy
case_ "op bad backend" op relu_forward --x x.npy --out o.npy --backend gpu
case_ "op bad dtype" op relu_forward --x x.npy --out o.npy --dtype int8
case_ "op threads 0" op relu_forward --x x.npy --out o.npy --threads 0
case_ "op stdout full" sh -c "'$DASECV' op --list > /dev/full"
# ---- check
case_ "check unknown op" check --op nosuch
case_ "check unknown option" check --bogus
case_ "check bad backend" check --backend gpu
case_ "check model missing" check --model none.cfg
case_ "check model bad" check --model "$W/bad.cfg"
case_ "check model garbage" check --model "$W/garbage.cfg"
case_ "check stdout full" sh -c "'$DASECV' check --op relu > /dev/full"
# ---- describe
case_ "describe missing" describe none.cfg
case_ "describe bad" describe "$W/bad.cfg"
case_ "describe garbage" describe "$W/garbage.cfg"
case_ "describe checkpoint text" describe text.ckpt
case_ "describe dir" describe adir
case_ "describe fifo" describe fifo
case_ "describe unknown option" describe --bogus
case_ "describe stdout full" sh -c "'$DASECV' describe threelayer > /dev/full"
# ---- export
case_ "export no out" export good.ckpt
case_ "export no checkpoint" export -o x.npz
case_ "export bad checkpoint" export flip.ckpt -o x7.npz
case_ "export out fifo" export good.ckpt -o fifo
case_ "export out dir" export good.ckpt -o adir
case_ "export out socket" export good.ckpt -o sock
case_ "export out dev full" export good.ckpt -o /dev/full
case_ "export out link to fifo" export good.ckpt -o link-fifo
case_ "export out missing dir" export good.ckpt -o nodir/x.npz
# ---- top level
case_ "no command" ""
case_ "unknown command" frobnicate
case_ "help unknown" help frobnicate

echo
echo "$N bad inputs:"
for k in clean messy silent crash "data loss"; do
    printf '  %-10s %4d\n' "$k" "${COUNT[$k]}"
done
