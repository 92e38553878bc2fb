#!/usr/bin/python3
"""Writes the naive backend's reference fixtures, computed with PyTorch.

Run with /usr/bin/python3 (the interpreter that has torch and numpy):
    /usr/bin/python3 tools/make_fixtures.py [outdir]
It writes tests/fixtures/naive/cases.txt and one .npy per tensor,
<case>.<tensor>.npy, all float64 (labels int64). Seeds are fixed, so a rerun
gives the same files.

cases.txt has one line per case:
    name op stride pad pool_height pool_width groups eps momentum train
The tensors a case may have: inputs x, x2, w, b, y, running_mean,
running_var, dout; expected out, loss, dx, dx2, dw, db, running_mean_out,
running_var_out. Gradients come from torch autograd (losses: dx is dscores).

Semantics follow the course's layers.py, which differ from torch's modules in
places: batchnorm's running variance uses the biased batch variance, and the
svm loss is the plain multiclass hinge (torch's multi_margin_loss divides by
C), so those are written out by hand here.
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "naive")
LINES = []


def randn(g, *shape, scale=1.0, shift=0.0):
    return torch.randn(*shape, generator=g) * scale + shift


def save(case, name, t):
    a = t.detach().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
    if a.dtype.kind == "f":
        a = a.astype(np.float64)
    np.save(os.path.join(OUT, f"{case}.{name}.npy"), np.ascontiguousarray(a))


def case(name, op, tensors, stride=1, pad=0, ph=2, pw=2, groups=1, eps=1e-5,
         momentum=0.9, train=1):
    for k, v in tensors.items():
        save(name, k, v)
    LINES.append(f"{name} {op} {stride} {pad} {ph} {pw} {groups} {eps!r} "
                 f"{momentum!r} {train}")


def grads(out, inputs, g):
    """dout and the gradients of sum(out * dout) with respect to inputs."""
    dout = randn(g, *out.shape)
    gs = torch.autograd.grad(out, list(inputs.values()), dout)
    return dout, dict(zip(inputs.keys(), gs))


def affine(g):
    x = randn(g, 3, 2, 3, 2).requires_grad_()
    w = randn(g, 12, 5).requires_grad_()
    b = randn(g, 5).requires_grad_()
    out = x.reshape(3, -1) @ w + b
    dout, d = grads(out, {"dx": x, "dw": w, "db": b}, g)
    case("affine", "affine", dict(x=x, w=w, b=b, out=out, dout=dout, **d))


def relu(g):
    x = randn(g, 4, 6)
    x = (x + 0.1 * torch.sign(x)).requires_grad_()  # away from the kink
    out = torch.relu(x)
    dout, d = grads(out, {"dx": x}, g)
    case("relu", "relu", dict(x=x, out=out, dout=dout, **d))


def add(g):
    x = randn(g, 2, 3, 4).requires_grad_()
    x2 = randn(g, 2, 3, 4).requires_grad_()
    out = x + x2
    dout, d = grads(out, {"dx": x, "dx2": x2}, g)
    case("add", "add", dict(x=x, x2=x2, out=out, dout=dout, **d))


def conv(g, name, xs, ws, stride, pad):
    x = randn(g, *xs).requires_grad_()
    w = randn(g, *ws, scale=0.5).requires_grad_()
    b = randn(g, ws[0]).requires_grad_()
    out = F.conv2d(x, w, b, stride=stride, padding=pad)
    dout, d = grads(out, {"dx": x, "dw": w, "db": b}, g)
    case(name, "conv", dict(x=x, w=w, b=b, out=out, dout=dout, **d),
         stride=stride, pad=pad)


def pool(g, name, xs, ph, pw, stride):
    # a permutation: distinct values, so the argmax is unique
    n = int(np.prod(xs))
    x = (torch.randperm(n, generator=g).double() / n).reshape(xs).requires_grad_()
    out = F.max_pool2d(x, (ph, pw), stride=stride)
    dout, d = grads(out, {"dx": x}, g)
    case(name, "max_pool", dict(x=x, out=out, dout=dout, **d), stride=stride,
         ph=ph, pw=pw)


def avg_pool(g, name, xs, ph, pw, stride):
    x = randn(g, *xs).requires_grad_()
    out = F.avg_pool2d(x, (ph, pw), stride=stride)
    dout, d = grads(out, {"dx": x}, g)
    case(name, "avg_pool", dict(x=x, out=out, dout=dout, **d), stride=stride,
         ph=ph, pw=pw)


def batchnorm(g, name, op, xs, train, eps=1e-5, momentum=0.9):
    C = xs[1]
    axes = [0] if len(xs) == 2 else [0, 2, 3]
    bshape = [1, C] + [1] * (len(xs) - 2)
    x = randn(g, *xs, scale=2.0, shift=3.0).requires_grad_()
    gamma = randn(g, C, scale=0.5, shift=1.0).requires_grad_()
    beta = randn(g, C).requires_grad_()
    rm = randn(g, C)
    rv = torch.rand(C, generator=g) + 0.5
    if train:
        mean = x.mean(dim=axes)
        var = ((x - mean.reshape(bshape)) ** 2).mean(dim=axes)
    else:
        mean, var = rm, rv
    xhat = (x - mean.reshape(bshape)) / torch.sqrt(var.reshape(bshape) + eps)
    out = gamma.reshape(bshape) * xhat + beta.reshape(bshape)
    dout, d = grads(out, {"dx": x, "dw": gamma, "db": beta}, g)
    t = dict(x=x, w=gamma, b=beta, running_mean=rm, running_var=rv, out=out,
             dout=dout, **d)
    if train:
        t["running_mean_out"] = momentum * rm + (1 - momentum) * mean
        t["running_var_out"] = momentum * rv + (1 - momentum) * var
    case(name, op, t, eps=eps, momentum=momentum, train=int(train))


def layernorm(g, name, xs, eps):
    x = randn(g, *xs, scale=1.5, shift=-1.0).requires_grad_()
    gamma = randn(g, xs[1], scale=0.5, shift=1.0).requires_grad_()
    beta = randn(g, xs[1]).requires_grad_()
    out = F.layer_norm(x, (xs[1],), gamma, beta, eps)
    dout, d = grads(out, {"dx": x, "dw": gamma, "db": beta}, g)
    case(name, "layernorm", dict(x=x, w=gamma, b=beta, out=out, dout=dout, **d),
         eps=eps)


def groupnorm(g, name, xs, G, eps, course_shape):
    C = xs[1]
    x = randn(g, *xs, scale=2.0, shift=1.0).requires_grad_()
    gamma = randn(g, C, scale=0.5, shift=1.0).requires_grad_()
    beta = randn(g, C).requires_grad_()
    out = F.group_norm(x, G, gamma, beta, eps)
    dout, d = grads(out, {"dx": x, "dw": gamma, "db": beta}, g)
    shape = (1, C, 1, 1) if course_shape else (C,)
    t = dict(x=x, w=gamma.reshape(shape), b=beta.reshape(shape), out=out,
             dout=dout, dx=d["dx"], dw=d["dw"].reshape(shape),
             db=d["db"].reshape(shape))
    case(name, "spatial_groupnorm", t, groups=G, eps=eps)


def softmax(g, name, N, C, scale):
    x = randn(g, N, C, scale=scale).requires_grad_()
    y = torch.randint(0, C, (N,), generator=g)
    loss = F.cross_entropy(x, y)
    (dx,) = torch.autograd.grad(loss, [x])
    case(name, "softmax_loss", dict(x=x, y=y, loss=loss.reshape(1), dx=dx))


def svm(g, name, N, C):
    x = randn(g, N, C, scale=2.0).requires_grad_()
    y = torch.randint(0, C, (N,), generator=g)
    margins = torch.clamp(x - x.gather(1, y[:, None]) + 1.0, min=0)
    margins = margins * (1 - F.one_hot(y, C))
    loss = margins.sum() / N
    (dx,) = torch.autograd.grad(loss, [x])
    case(name, "svm_loss", dict(x=x, y=y, loss=loss.reshape(1), dx=dx))


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if f.endswith(".npy") or f == "cases.txt":
            os.remove(os.path.join(OUT, f))
    g = torch.Generator().manual_seed(231)
    affine(g)
    relu(g)
    add(g)
    conv(g, "conv_3x3_s1_p0", (2, 3, 5, 5), (4, 3, 3, 3), 1, 0)
    conv(g, "conv_3x3_s2_p1", (2, 3, 7, 7), (3, 3, 3, 3), 2, 1)
    conv(g, "conv_3x2_s1_p2", (1, 2, 6, 5), (3, 2, 3, 2), 1, 2)
    conv(g, "conv_4x4_s3_p1", (2, 2, 8, 8), (2, 2, 4, 4), 3, 1)
    conv(g, "conv_1x1_s1_p0", (2, 4, 4, 4), (3, 4, 1, 1), 1, 0)
    conv(g, "conv_5x3_s2_p1", (1, 3, 9, 7), (2, 3, 5, 3), 2, 1)
    pool(g, "pool_2x2_s2", (2, 3, 4, 4), 2, 2, 2)
    pool(g, "pool_3x3_s1", (2, 2, 5, 5), 3, 3, 1)
    pool(g, "pool_3x2_s2", (1, 2, 7, 6), 3, 2, 2)
    pool(g, "pool_1x3_s1", (1, 2, 3, 5), 1, 3, 1)
    # a generator of its own, so the cases above and below keep their values
    ga = torch.Generator().manual_seed(232)
    avg_pool(ga, "avg_2x2_s2", (2, 3, 4, 4), 2, 2, 2)
    avg_pool(ga, "avg_3x3_s1", (2, 2, 5, 5), 3, 3, 1)
    avg_pool(ga, "avg_3x2_s2", (1, 2, 7, 6), 3, 2, 2)
    avg_pool(ga, "avg_global", (2, 3, 4, 5), 4, 5, 1)
    batchnorm(g, "bn_train", "batchnorm", (6, 5), True)
    batchnorm(g, "bn_train_eps", "batchnorm", (4, 3), True, eps=1e-3, momentum=0.5)
    batchnorm(g, "bn_test", "batchnorm", (6, 5), False)
    batchnorm(g, "sbn_train", "spatial_batchnorm", (3, 4, 3, 2), True)
    batchnorm(g, "sbn_test", "spatial_batchnorm", (3, 4, 3, 2), False)
    layernorm(g, "ln", (4, 6), 1e-5)
    layernorm(g, "ln_eps", (3, 5), 1e-2)
    groupnorm(g, "gn_g3", (2, 6, 3, 3), 3, 1e-5, True)
    groupnorm(g, "gn_g2", (2, 4, 2, 3), 2, 1e-5, False)
    groupnorm(g, "gn_g1", (3, 2, 2, 2), 1, 1e-3, True)
    softmax(g, "softmax", 5, 7, 1.0)
    softmax(g, "softmax_large", 4, 6, 1000.0)
    svm(g, "svm", 6, 5)
    with open(os.path.join(OUT, "cases.txt"), "w") as f:
        f.write("\n".join(LINES) + "\n")


if __name__ == "__main__":
    main()
