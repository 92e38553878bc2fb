"""The course's vis_utils: image grids for filters and data."""
from math import ceil, sqrt

import numpy as np

__all__ = ['visualize_grid', 'vis_grid', 'vis_nn']


def visualize_grid(Xs, ubound=255.0, padding=1):
    """Tiles Xs (N, H, W, C) into a square grid (padding pixels of 0 between
    tiles); each tile is scaled on its own to [0, ubound] (a constant tile
    is 0). Returns float64 (grid_h, grid_w, C)."""
    N, H, W, C = Xs.shape
    side = int(ceil(sqrt(N)))
    grid = np.zeros((H * side + padding * (side - 1), W * side + padding * (side - 1), C))
    for i in range(N):
        r, c = divmod(i, side)
        img = Xs[i].astype(np.float64)
        lo, hi = img.min(), img.max()
        y0, x0 = r * (H + padding), c * (W + padding)
        grid[y0:y0 + H, x0:x0 + W] = ubound * (img - lo) / (hi - lo) if hi > lo else 0
    return grid


def vis_grid(Xs):
    """Xs (N, H, W, C) in a grid with one-pixel borders of the minimum, the
    whole scaled to [0, 1]."""
    N, H, W, C = Xs.shape
    A = int(ceil(sqrt(N)))
    G = np.full((A * H + A, A * W + A, C), np.min(Xs), dtype=Xs.dtype)
    for n in range(N):
        y, x = divmod(n, A)
        G[y * H + y:(y + 1) * H + y, x * W + x:(x + 1) * W + x] = Xs[n]
    lo, hi = G.min(), G.max()
    return (G - lo) / (hi - lo) if hi > lo else np.zeros_like(G)


def vis_nn(rows):
    """rows: a list of lists of (H, W, C) images, one grid row per list,
    scaled to [0, 1]."""
    N, D = len(rows), len(rows[0])
    H, W, C = rows[0][0].shape
    G = np.ones((N * H + N, D * W + D, C), rows[0][0].dtype)
    for y in range(N):
        for x in range(D):
            G[y * H + y:(y + 1) * H + y, x * W + x:(x + 1) * W + x] = rows[y][x]
    lo, hi = G.min(), G.max()
    return (G - lo) / (hi - lo) if hi > lo else np.zeros_like(G)
