#!/usr/bin/env bash
# One command from a fresh Debian 12 machine (as root) to a trained model:
# installs the Debian packages dasecv needs (Fashion-MNIST included), builds,
# trains the course's ThreeLayerConvNet for one epoch on Fashion-MNIST and
# evaluates the checkpoint on the test split. Extra arguments go to
# `dasecv train` (for example --data cifar10:DIR or --num-epochs 5).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends \
    build-essential meson ninja-build pkg-config cmake \
    libdnnl-dev ocl-icd-opencl-dev opencl-c-headers \
    libbenchmark-dev libcmocka-dev zlib1g-dev libzip-dev libpng-dev libjpeg-dev libstb-dev libinih-dev dataset-fashion-mnist \
    python3-dev python3-numpy python3-pytest python3-matplotlib libopenmpi-dev openmpi-bin
else
  echo "quickstart: not root, skipping apt-get (see README.md for the packages)" >&2
fi

[ -f build/build.ninja ] || meson setup build
ninja -C build

mkdir -p runs
build/cli/dasecv train --model threelayer --hidden-dim 500 --weight-scale 1e-3 \
  --reg 1e-3 --update-rule adam --learning-rate 1e-3 --batch-size 50 \
  --num-epochs 1 --checkpoint runs/threelayer.ckpt --log runs/threelayer.csv "$@"
# eval needs the training dataset (its mean image); take --data from the arguments
data=fashion-mnist
prev=
for a in "$@"; do
  case "$a" in --data=*) data=${a#--data=} ;; esac
  if [ "$prev" = "--data" ]; then data=$a; fi
  prev=$a
done
build/cli/dasecv eval --checkpoint runs/threelayer.ckpt --data "$data" --split test
