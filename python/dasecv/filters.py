"""python3 -m dasecv.filters CHECKPOINT -o filters.png

The first convolution's filters of a checkpoint's model as an image grid
(the course's visualize_grid: each filter scaled to 0..255 on its own), as
the course's notebook shows the first layer of its ThreeLayerConvNet. The
first convolution is the first parameter of shape (F, C, K, K); C must be 1
(grey) or 3 (RGB). Needs matplotlib (Debian's python3-matplotlib), Agg.
"""
import argparse
import sys

import numpy as np

from .course.vis_utils import visualize_grid
from .model import Model, is_checkpoint


def first_conv_filters(model):
    """(name, filters (F, K, K, C)) of the first 4-dimensional parameter."""
    for name, p in model.params.items():
        if p.ndim == 4:
            if p.shape[1] not in (1, 3):
                raise ValueError('%s has %d input channels; only 1 or 3 can be drawn'
                                 % (name, p.shape[1]))
            return name, p.transpose(0, 2, 3, 1)
    raise ValueError('the model has no convolution')


def draw_filters(path, out, scale=8):
    """Draws the checkpoint's first convolution's filters into out (PNG)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    if not is_checkpoint(path):
        raise ValueError('%s is not a dasecv checkpoint' % path)
    name, w = first_conv_filters(Model(path))
    grid = visualize_grid(w).astype(np.uint8)
    h, wd = grid.shape[:2]
    fig = plt.figure(figsize=(wd * scale / 100, h * scale / 100), dpi=100)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.imshow(grid[:, :, 0] if grid.shape[2] == 1 else grid,
              cmap='gray' if grid.shape[2] == 1 else None, interpolation='nearest')
    ax.axis('off')
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return name


def main(argv=None):
    ap = argparse.ArgumentParser(prog='python3 -m dasecv.filters',
                                 description="A checkpoint's first-layer filters as a grid.")
    ap.add_argument('checkpoint')
    ap.add_argument('-o', '--output', default='filters.png', help='image file (PNG)')
    ap.add_argument('--scale', type=int, default=8, help='screen pixels per filter pixel')
    a = ap.parse_args(argv)
    if a.scale < 1:
        ap.error('--scale must be >= 1')
    try:
        draw_filters(a.checkpoint, a.output, a.scale)
    except (OSError, ValueError, RuntimeError) as e:
        print('dasecv.filters: %s' % e, file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
