#!/usr/bin/python3
"""Step time of data-parallel training against the number of nodes: the model
of docs/scaling.md, from the measured figures given below (edit them for
another machine). Prints the tables of docs/scaling.md.

    /usr/bin/python3 tools/scaling_model.py
"""
import math

# Measured on the development VM (2 cores, nothing else running), 1 thread
# per process, batch 50 (tools/bench_dist.sh, docs/scaling.md's quiet table;
# dasecv describe for bytes and FLOPs).
MODELS = {
    # name: seconds of compute per image (fwd + bwd + update), gradient bytes,
    # share of the step that runs after most gradient bytes are final (the
    # backward still to come, over forward + backward, from the per-node
    # MFLOP of `dasecv describe MODEL --batch-size 1 --input 3,32,32`),
    # blocking batch-norm allreduces per step (synchronized statistics:
    # 2 forward + 3 backward)
    "threelayer": dict(t_img=1 / 2098, grad_bytes=825046 * 4,
                       window=9.733 / (11.373 + 13.013), bn_calls=0),
    "vgg": dict(t_img=1 / 1040, grad_bytes=37338 * 4,
                window=15.63 / (13.238 + 25.272), bn_calls=4 * 5),
}
LINKS_GBPS = [10, 25, 100]
ALPHA = 20e-6  # seconds per message on a TCP link (latency), an assumption
# A node computes SPEEDUP times faster than one thread (its cores); the
# measured figure is 1 thread, 16 stands for a 16-core node at ideal scaling.
SPEEDUPS = [1, 16]


def allreduce_s(k, nbytes, gbps):
    """Ring allreduce: 2(K-1)/K of the bytes over the link, 2(K-1) latencies."""
    if k == 1:
        return 0.0
    return 2 * (k - 1) / k * nbytes / (gbps * 1e9 / 8) + 2 * (k - 1) * ALPHA


def step_s(m, k, per_rank_batch, gbps, speedup):
    compute = per_rank_batch * m["t_img"] / speedup
    comm = allreduce_s(k, m["grad_bytes"], gbps)
    exposed = max(0.0, comm - m["window"] * compute)
    bn = m["bn_calls"] * math.ceil(math.log2(k)) * ALPHA if k > 1 else 0.0
    return compute + exposed + bn, compute, comm


def main():
    for (name, m), sp in ((nm, s) for nm in MODELS.items() for s in SPEEDUPS):
        print(f"\n{name}: {m['grad_bytes'] / 1e6:.2f} MB of gradients, "
              f"{1e3 * m['t_img']:.2f} ms per image and thread; node speed {sp}x")
        print("\nper-rank batch 50 (global 50 K): step ms (compute share)\n")
        print("| nodes K | " + " | ".join(f"{g} Gb/s" for g in LINKS_GBPS) + " |")
        print("| ---: | " + " | ".join("---:" for _ in LINKS_GBPS) + " |")
        for k in [1, 2, 4, 8, 16, 32, 64]:
            cells = []
            for g in LINKS_GBPS:
                t, c, _ = step_s(m, k, 50, g, sp)
                cells.append(f"{1e3 * t:.1f} ({100 * c / t:.0f}%)")
            print(f"| {k} | " + " | ".join(cells) + " |")
        print("\nsmallest per-rank batch whose backward hides the gradient sum:\n")
        print("| nodes K | " + " | ".join(f"{g} Gb/s" for g in LINKS_GBPS) + " |")
        print("| ---: | " + " | ".join("---:" for _ in LINKS_GBPS) + " |")
        for k in [2, 8, 64]:
            cells = []
            for g in LINKS_GBPS:
                b = allreduce_s(k, m["grad_bytes"], g) / (m["window"] * m["t_img"] / sp)
                cells.append(f"{math.ceil(b)}")
            print(f"| {k} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
