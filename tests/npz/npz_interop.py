#!/usr/bin/python3
"""numpy's side of the .npz interoperability test (test_npz.c runs it).

  npz_interop.py check PATH   numpy.load(PATH) must hold exactly expected()
  npz_interop.py make DIR     writes DIR/savez.npz and DIR/savez_compressed.npz
                              holding expected() plus int64 labels

Exit status 0 on success, 1 with a message on stderr otherwise.
"""
import sys

import numpy as np


def expected():
    """The arrays test_npz.c writes and expects, by the same formulas."""
    return {
        "conv1.w": (np.arange(2 * 3 * 2 * 2, dtype=np.float32) * 0.25 - 3).reshape(2, 3, 2, 2),
        "conv1.b": np.array([1.5, -2.25], dtype=np.float32),
        "bn1.running_mean": np.arange(5, dtype=np.float64) / 3,
        "labels": (np.arange(6, dtype=np.int32) * 7 - 20).reshape(2, 3),
        "image": (np.arange(2 * 4, dtype=np.uint8) * 31).reshape(1, 2, 4),
        "scalar": np.array(0.125, dtype=np.float64),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }


def check(path):
    want = expected()
    with np.load(path, allow_pickle=False) as z:
        got = {k: z[k] for k in z.files}
    if sorted(got) != sorted(want):
        return f"{path}: members {sorted(got)}, expected {sorted(want)}"
    for k, w in want.items():
        g = got[k]
        if g.dtype != w.dtype or g.shape != w.shape or not np.array_equal(g, w):
            return f"{path}: {k}: got {g.dtype} {g.shape} {g!r}, expected {w.dtype} {w.shape}"
    return None


def make(d):
    arrays = expected()
    arrays["labels64"] = np.arange(4, dtype=np.int64) * 1000 - 1500
    np.savez(f"{d}/savez.npz", **arrays)
    np.savez_compressed(f"{d}/savez_compressed.npz", **arrays)
    return None


def main(argv):
    if len(argv) != 3 or argv[1] not in ("check", "make"):
        print(__doc__, file=sys.stderr)
        return 2
    err = check(argv[2]) if argv[1] == "check" else make(argv[2])
    if err:
        print(err, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
