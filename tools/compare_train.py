#!/usr/bin/env python3
"""Training throughput of dasecv against PyTorch, in one invocation:

    tools/compare_train.py --data cifar10:DIR [--batch-sizes 50,256]
                           [--threads 1,2] [--rounds 3] [--train-size 5120]

Each round runs, for every (batch size, threads) pair, one epoch of
`dasecv train` with the course's settings (ThreeLayerConvNet, hidden 500,
reg 1e-3, adam, lr 1e-3; its --json images_per_s counts the training steps
only) and then the same network and update rule in PyTorch (its own process
under --torch-python, torch.set_num_threads(N), random data of the same
shape, images/s over --train-size images after a few untimed batches; for
dasecv, a short run first writes the execution plan, auto's timed
decisions, that its timed runs replay), and
the fast backend's sgemm on 2048x2048 matrices (dasecv-bench
sgemm/2048/fast) at each thread count. The pairs are interleaved within a
round and the rounds follow each other, so a slow stretch of a shared
machine falls on both sides; the table shows medians over rounds.

Columns: images/s of each side, dasecv / PyTorch (above 1: dasecv is
faster), dasecv's GFLOP/s (the forward and backward FLOPs per image that
`dasecv describe --json` counts for the model, times images/s) and that as
a fraction of the sgemm rate at the same thread count. A second table gives
thread scaling (images/s at the largest thread count over the smallest) for
both. The load average before and after goes with the table. Only the
standard library is needed here.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HIDDEN = 500
SETTINGS = ["--hidden-dim", str(HIDDEN), "--reg", "1e-3", "--update-rule", "adam",
            "--learning-rate", "1e-3"]
GEMM_N = 2048

# The PyTorch side: ThreeLayerConvNet (conv 32x7x7 pad 3 - relu - 2x2 max pool
# - affine - relu - affine - softmax) with Adam and the L2 term of the course's
# loss, as the course's cnn.py computes it. Runs in a child process so that
# set_num_threads holds for it alone.
TORCH_WORKER = r"""
import sys, time, torch, torch.nn.functional as F
threads, hidden, B, n, warm = (int(v) for v in sys.argv[1:6])
torch.set_num_threads(threads); torch.manual_seed(0)
X = torch.randn(n, 3, 32, 32); y = torch.randint(0, 10, (n,))
ps = [torch.randn(32, 3, 7, 7) * 1e-3, torch.zeros(32), torch.randn(8192, hidden) * 1e-3,
      torch.zeros(hidden), torch.randn(hidden, 10) * 1e-3, torch.zeros(10)]
for p in ps:
    p.requires_grad_(True)
opt = torch.optim.Adam(ps, lr=1e-3)
def step(i):
    xb, yb = X[i:i + B], y[i:i + B]
    h = F.max_pool2d(F.relu(F.conv2d(xb, ps[0], ps[1], padding=3)), 2, 2)
    h = F.relu(torch.addmm(ps[3], h.reshape(B, -1), ps[2]))
    loss = F.cross_entropy(torch.addmm(ps[5], h, ps[4]), yb) + 0.5e-3 * (
        ps[0].square().sum() + ps[2].square().sum() + ps[4].square().sum())
    opt.zero_grad(); loss.backward(); opt.step()
for k in range(warm):
    step(k * B % (n - B + 1))
t = time.perf_counter()
done = 0
for i in range(0, n - B + 1, B):
    step(i); done += B
print(done / (time.perf_counter() - t))
"""


def model_file(tmp):
    """The built-in threelayer model with the course's hidden width."""
    with open(os.path.join(ROOT, "models", "threelayer.cfg")) as f:
        text = f.read()
    text = text.replace("outputs=100", f"outputs={HIDDEN}")
    path = os.path.join(tmp, "threelayer-h500.cfg")
    with open(path, "w") as f:
        f.write(text)
    return path


def flops_per_image(a, cfg, batch):
    out = subprocess.run([a.dasecv, "describe", cfg, "--batch-size", str(batch), "--json",
                          "--input", "3,32,32", "--classes", "10"],
                         check=True, capture_output=True, text=True).stdout
    tot = json.loads(out)["total"]
    return (tot["fwd_flops"] + tot["bwd_flops"]) / batch


def run_dasecv(a, batch, threads, plan, size=None, save=False):
    """images/s of one epoch; with save, a short run that writes the plan
    (auto's timed decisions) that the timed runs then replay, so that they
    neither pay for the timing nor depend on it (the PyTorch side gets its
    untimed warm-up batches)."""
    cmd = [a.dasecv, "train", "--data", a.data, "--train-size", str(size or a.train_size),
           "--batch-size", str(batch), "--num-epochs", "1", "--threads", str(threads),
           "--quiet", "--json", "--save-plan" if save else "--plan", plan] + SETTINGS
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"compare_train: {' '.join(cmd)} failed ({r.returncode}):\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])["images_per_s"]


def run_torch(a, batch, threads):
    cmd = [a.torch_python, "-c", TORCH_WORKER, str(threads), str(HIDDEN), str(batch),
           str(a.train_size), str(a.torch_warmup)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"compare_train: the PyTorch loop failed ({r.returncode}):\n{r.stderr}")
    return float(r.stdout.strip().splitlines()[-1])


def run_gemm(a, threads):
    cmd = [a.bench, f"--dsv_threads={threads}", f"--benchmark_filter=^sgemm/{GEMM_N}/fast",
           "--benchmark_format=json", "--benchmark_min_time=0.5"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"compare_train: {' '.join(cmd)} failed ({r.returncode}):\n{r.stderr}")
    runs = json.loads(r.stdout)["benchmarks"]
    return statistics.median(b["FLOP/s"] for b in runs)


def measure(a, pairs, plans, threads):
    ds = {pr: [] for pr in pairs}
    th = {pr: [] for pr in pairs}
    gemm = {t: [] for t in threads}
    for r in range(a.rounds):
        for b, t in pairs:
            ds[(b, t)].append(run_dasecv(a, b, t, plans[(b, t)]))
            th[(b, t)].append(run_torch(a, b, t))
            print(f"round {r + 1}: batch {b}, {t} threads: dasecv {ds[(b, t)][-1]:.0f}, "
                  f"PyTorch {th[(b, t)][-1]:.0f} images/s", file=sys.stderr)
        if not a.no_gemm:
            for t in threads:
                gemm[t].append(run_gemm(a, t))
                print(f"round {r + 1}: sgemm {GEMM_N}, {t} threads: "
                      f"{gemm[t][-1] / 1e9:.1f} GFLOP/s", file=sys.stderr)
    return ds, th, gemm


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="dasecv's --data, e.g. cifar10:DIR")
    p.add_argument("--dasecv", default=os.path.join(ROOT, "build", "cli", "dasecv"))
    p.add_argument("--bench", default=os.path.join(ROOT, "build", "bench", "dasecv-bench"))
    p.add_argument("--torch-python", default="/usr/bin/python3")
    p.add_argument("--batch-sizes", default="50,256")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--train-size", type=int, default=5120,
                   help="images per timed epoch, both sides (default 5120)")
    p.add_argument("--torch-warmup", type=int, default=5,
                   help="untimed PyTorch batches before timing (default 5)")
    p.add_argument("--no-gemm", action="store_true", help="skip the sgemm peak")
    a = p.parse_args()
    try:
        batches = [int(v) for v in a.batch_sizes.split(",")]
        threads = [int(v) for v in a.threads.split(",")]
    except ValueError:
        p.error("--batch-sizes and --threads take comma-separated integers")
    if a.rounds < 1 or min(batches) < 1 or min(threads) < 1:
        p.error("--rounds, batch sizes and thread counts must be positive")
    if max(batches) > a.train_size:
        p.error("--train-size must be at least the largest batch size")
    for exe in [a.dasecv] + ([] if a.no_gemm else [a.bench]):
        if not os.access(exe, os.X_OK):
            p.error(f"{exe} is not an executable (build first, or name it)")

    load0 = os.getloadavg()
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = model_file(tmp)
        fpi = {b: flops_per_image(a, cfg, b) for b in batches}
        pairs = [(b, t) for b in batches for t in threads]
        plans = {pr: os.path.join(tmp, "b%d-t%d.plan" % pr) for pr in pairs}
        for b, t in pairs:
            run_dasecv(a, b, t, plans[(b, t)], size=2 * b, save=True)
        ds, th, gemm = measure(a, pairs, plans, threads)
    load1 = os.getloadavg()

    med = statistics.median
    print(f"Training, ThreeLayerConvNet hidden {HIDDEN}, adam, reg 1e-3; {a.data}, "
          f"{a.train_size} images per round; median of {a.rounds} interleaved rounds; "
          f"{time.time() - t0:.0f} s; load average {load0[0]:.2f} before, "
          f"{load1[0]:.2f} after\n")
    print("| batch | threads | dasecv img/s | PyTorch img/s | dasecv / PyTorch "
          "| dasecv GFLOP/s | sgemm GFLOP/s | of sgemm |")
    print("|---|---|---|---|---|---|---|---|")
    for b, t in pairs:
        d, q = med(ds[(b, t)]), med(th[(b, t)])
        gf = d * fpi[b] / 1e9
        peak = med(gemm[t]) / 1e9 if gemm[t] else float("nan")
        print(f"| {b} | {t} | {d:.0f} | {q:.0f} | {d / q:.2f} | {gf:.1f} | "
              f"{peak:.1f} | {gf / peak:.2f} |")
    if len(threads) > 1:
        lo, hi = min(threads), max(threads)
        print(f"\nThread scaling, images/s at {hi} threads over {lo} (median of per-round "
              "ratios)\n")
        print("| batch | dasecv | PyTorch |")
        print("|---|---|---|")
        for b in batches:
            rd = med(x / y for x, y in zip(ds[(b, hi)], ds[(b, lo)]))
            rt = med(x / y for x, y in zip(th[(b, hi)], th[(b, lo)]))
            print(f"| {b} | {rd:.2f} | {rt:.2f} |")
    print(f"\nFLOPs per image (dasecv describe, forward + backward): " +
          ", ".join(f"batch {b}: {fpi[b] / 1e6:.1f} M" for b in batches))
    print("Rounds (images/s, dasecv / PyTorch): " + "; ".join(
        f"b{b} t{t}: " + " ".join(f"{x:.0f}/{y:.0f}" for x, y in zip(ds[(b, t)], th[(b, t)]))
        for b, t in pairs))


if __name__ == "__main__":
    main()
