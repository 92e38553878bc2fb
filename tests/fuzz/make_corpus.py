#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets into tests/fuzz/corpus/<target>/.

    tests/fuzz/make_corpus.py [--dasecv build/cli/dasecv]

Small valid files of every kind each reader takes, plus a few edge cases. The
layouts of the multi-file targets (option bytes, length-prefixed parts) are
described at the top of fuzz_cifar.c, fuzz_idx.c, fuzz_image.c and
fuzz_checkpoint.c. Checkpoints come from `dasecv train` on a tiny generated
dataset, so they need the dasecv binary; without --dasecv they are skipped.
Files named crash-* (regression inputs for fixed crashes) are left alone.
"""
import argparse
import gzip
import io
import os
import struct
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))


def put(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def part(b):
    return struct.pack("<I", len(b)) + b


def npy_bytes(a, version=None):
    f = io.BytesIO()
    if version:
        np.lib.format.write_array(f, a, version=version)
    else:
        np.save(f, a)
    return f.getvalue()


def npy():
    put("npy", "f32_2x3.npy", npy_bytes(np.arange(6, dtype=np.float32).reshape(2, 3)))
    put("npy", "f64_4d.npy", npy_bytes(np.linspace(-1, 1, 24).reshape(1, 2, 3, 4)))
    put("npy", "i64_labels.npy", npy_bytes(np.arange(5, dtype=np.int64)))
    put("npy", "u8.npy", npy_bytes(np.arange(7, dtype=np.uint8)))
    put("npy", "i16_v2.npy", npy_bytes(np.arange(4, dtype=np.int16), version=(2, 0)))
    put("npy", "f32_v3.npy", npy_bytes(np.ones(3, dtype=np.float32), version=(3, 0)))
    # edge cases, each refused
    put("npy", "scalar.npy", npy_bytes(np.array(1.5)))
    put("npy", "empty.npy", npy_bytes(np.zeros((0, 3), dtype=np.float32)))
    put("npy", "fortran.npy", npy_bytes(np.asfortranarray(np.ones((2, 3)))))
    put("npy", "big_endian.npy", npy_bytes(np.ones(3, dtype=">f4")))
    put("npy", "truncated.npy", npy_bytes(np.ones(10, dtype=np.float32))[:-5])


def npz_bytes(compressed, **arrays):
    f = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(f, **arrays)
    return f.getvalue()


def npz_parts(mode, arrays):
    b = bytes([mode])
    for k, a in arrays.items():
        b += part((k + ".npy").encode()) + part(npy_bytes(a))
    return b


def npz():
    # fuzz_npz.c: mode byte 1 = the archive itself; 0/2 = (name, .npy) pairs
    # that the target zips (stored/deflated)
    arrays = {
        "conv1.w": np.arange(12, dtype=np.float32).reshape(1, 3, 2, 2),
        "conv1.b": np.zeros(1, dtype=np.float32),
        "bn1.running_mean": np.ones(3),
        "labels": np.arange(4, dtype=np.int32),
        "image": np.arange(6, dtype=np.uint8).reshape(1, 2, 3),
        "scalar": np.array(2.0),
        "empty": np.zeros((0,), dtype=np.float32),
    }
    put("npz", "savez.npz", b"\1" + npz_bytes(False, **arrays))
    put("npz", "savez_compressed.npz", b"\1" + npz_bytes(True, **arrays))
    put("npz", "one.npz", b"\1" + npz_bytes(False, x=np.ones(2, dtype=np.float32)))
    put("npz", "empty_archive.npz", b"\1" + npz_bytes(False))
    f = io.BytesIO()
    with zipfile.ZipFile(f, "w") as z:
        z.writestr("readme.txt", "not an array")
    put("npz", "not_npy_member.npz", b"\1" + f.getvalue())
    put("npz", "truncated.npz", b"\1" + npz_bytes(False, **arrays)[:300])
    put("npz", "parts_stored", npz_parts(0, arrays))
    put("npz", "parts_deflated", npz_parts(2, arrays))
    put("npz", "parts_i64_u16", npz_parts(0, {"a": np.arange(3, dtype=np.int64),
                                             "b": np.arange(3, dtype=np.uint16)}))


def cifar_record(label, k):
    return bytes([label]) + bytes((k * 7 + i) & 0xFF for i in range(3072))


def cifar_input(counts, opts=b"\0\0\0\1", meta=None, label_of=lambda f, i: (f + i) % 10):
    b = opts
    for f, n in enumerate(counts):
        b += part(b"".join(cifar_record(label_of(f, i), f * 10 + i) for i in range(n)))
    b += part(meta if meta is not None else b"")
    return b


def cifar():
    meta = "\n".join(["plane", "car", "bird", "cat", "deer", "dog", "frog", "horse",
                      "ship", "truck"]).encode() + b"\n"
    put("cifar", "one_each", cifar_input([1] * 6))
    put("cifar", "splits", cifar_input([2, 1, 1, 1, 1, 2], opts=b"\4\1\2\1", meta=meta))
    put("cifar", "bad_label", cifar_input([1] * 6, label_of=lambda f, i: 10))
    bad = cifar_input([1] * 6)
    put("cifar", "short_record", bad[:4 + 4 + 3000])


def idx_file(dims, data):
    return struct.pack(">BBBB", 0, 0, 8, len(dims)) + b"".join(
        struct.pack(">I", d) for d in dims) + bytes(data)


def idx_input(n_train, n_test, h=4, w=4, gz=0, opts=b"\0\0\0\1"):
    files = [
        idx_file([n_train, h, w], [(i * 13) & 0xFF for i in range(n_train * h * w)]),
        idx_file([n_train], [i % 10 for i in range(n_train)]),
        idx_file([n_test, h, w], [(i * 5) & 0xFF for i in range(n_test * h * w)]),
        idx_file([n_test], [i % 10 for i in range(n_test)]),
    ]
    b = opts + bytes([gz])
    for i, f in enumerate(files):
        b += part(gzip.compress(f, mtime=0) if gz >> i & 1 else f)
    return b


def idx():
    put("idx", "plain", idx_input(6, 3))
    put("idx", "gzip", idx_input(6, 3, gz=15))
    put("idx", "splits", idx_input(8, 4, h=3, w=5, opts=b"\5\2\3\0"))
    b = bytearray(idx_input(6, 3))
    b[5 + 4 + 2] = 9  # bad magic in the first file
    put("idx", "bad_magic", bytes(b))


def image():
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8), "RGB")
    gray = rgb.convert("L")
    pre = b"\1\x1f\x1f"  # RGB output, 32x32
    for name, im, fmt, kw in [
        ("rgb.png", rgb, "PNG", {}),
        ("gray.png", gray, "PNG", {}),
        ("rgba.png", rgb.convert("RGBA"), "PNG", {}),
        ("palette.png", rgb.convert("P"), "PNG", {}),
        ("gray_alpha.png", rgb.convert("LA"), "PNG", {}),
        ("rgb.jpg", rgb, "JPEG", {"quality": 90}),
        ("progressive.jpg", rgb, "JPEG", {"progressive": True}),
        ("gray.jpg", gray, "JPEG", {}),
        ("rgb.bmp", rgb, "BMP", {}),
        ("palette.bmp", rgb.convert("P"), "BMP", {}),
    ]:
        f = io.BytesIO()
        im.save(f, fmt, **kw)
        put("image", name, pre + f.getvalue())
    f = io.BytesIO()
    gray.save(f, "PNG")
    put("image", "gray_to_1ch_3x9.png", b"\0\2\x08" + f.getvalue())
    put("image", "truncated.png", pre + f.getvalue()[:40])
    put("image", "not_an_image", pre + b"hello")


def cmdline():
    def args(*a):
        return b"\0".join(x.encode() for x in a)
    put("cmdline", "train", args("--data", "cifar10:/d", "--batch-size", "50", "--reg=1e-3",
                                 "--learning-rate", "1e-3", "--seed", "0x2a", "--json"))
    put("cmdline", "positional", args("a.png", "b.jpg", "--checkpoint", "r.ckpt", "-h"))
    put("cmdline", "bad_values", args("--num-epochs", "1e3", "--reg", "nan", "--json=1"))
    put("cmdline", "missing_value", args("--quiet", "--data"))
    put("cmdline", "edge", args("--", "-", "--train-size=-1", "--seed", "-5",
                                "--learning-rate", "0", "--" + "x" * 80))


def checkpoint(dasecv):
    with tempfile.TemporaryDirectory() as d:
        data = os.path.join(d, "data")
        os.makedirs(data)
        b = idx_input(20, 5, h=6, w=6)
        at = 5
        names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
        for name in names:
            n = struct.unpack("<I", b[at:at + 4])[0]
            with open(os.path.join(data, name), "wb") as f:
                f.write(b[at + 4:at + 4 + n])
            at += 4 + n
        runs = {
            "fc": ["--model", "fc", "--hidden-dims", "4", "--normalization", "batchnorm"],
            "fc_f64_adam": ["--model", "fc", "--hidden-dims", "3,2", "--dtype", "float64",
                            "--update-rule", "adam"],
            "threelayer": ["--num-filters", "2", "--filter-size", "3", "--hidden-dim", "4",
                           "--update-rule", "sgd_momentum"],
        }
        for name, extra in runs.items():
            ck = os.path.join(d, name + ".ckpt")
            subprocess.run([dasecv, "train", "--data", "mnist:" + data, "--num-epochs", "1",
                            "--batch-size", "5", "--quiet", "--threads", "1",
                            "--checkpoint", ck] + extra, check=True, stdout=subprocess.DEVNULL)
            with open(ck, "rb") as f:
                c = f.read()
            put("checkpoint", name, b"\0" + c)
            # with mode bit 0 the target fixes the length and CRC itself
            put("checkpoint", name + "_fixup", b"\1" + c[:-1] + bytes([c[-1] ^ 1]))
        put("checkpoint", "truncated", b"\0" + c[:100])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dasecv", help="the dasecv binary, for checkpoint seeds")
    a = ap.parse_args()
    npy()
    npz()
    cifar()
    idx()
    image()
    cmdline()
    if a.dasecv:
        checkpoint(a.dasecv)
    else:
        print("no --dasecv: checkpoint seeds not written", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
