"""python3 -m dasecv.plot RUN.csv -o curves.png

Training curves from the CSV log of `dasecv train --log` (columns iteration,
epoch, loss, lr, train_acc, val_acc, images_per_s; the accuracies only at
epoch ends), drawn as the course's notebooks draw a Solver's histories: the
loss per iteration above, train and validation accuracy per epoch below.
Several logs may be given; each gets its own label. Needs matplotlib
(Debian's python3-matplotlib); draws with the Agg backend, no display.
"""
import argparse
import csv
import math
import sys


def read_log(path):
    """(iterations, losses, epochs, train_accs, val_accs) of one log."""
    it, loss, ep, tr, va = [], [], [], [], []
    with open(path, newline='') as f:
        rows = csv.DictReader(f)
        need = {'iteration', 'epoch', 'loss', 'train_acc', 'val_acc'}
        if rows.fieldnames is None or not need <= set(rows.fieldnames):
            raise ValueError('%s: not a dasecv train log (needs the columns %s)'
                             % (path, ', '.join(sorted(need))))
        for n, row in enumerate(rows, start=2):
            try:
                it.append(int(row['iteration']))
                loss.append(float(row['loss']))
                if row['train_acc'] not in ('', None):
                    ep.append(int(row['epoch']))
                    tr.append(float(row['train_acc']))
                    va.append(float(row['val_acc']) if row['val_acc'] else math.nan)
            except (TypeError, ValueError):
                raise ValueError('%s:%d: a value does not parse' % (path, n)) from None
    if not it:
        raise ValueError('%s: the log has no iterations' % path)
    return it, loss, ep, tr, va


def plot_logs(paths, out, title=None):
    """Draws the logs into the image file out (PNG, by its extension)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    logs = [(p, read_log(p)) for p in paths]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 8))
    for p, (it, loss, ep, tr, va) in logs:
        tag = '' if len(logs) == 1 else ' (%s)' % p
        ax1.plot(it, loss, 'o', markersize=2, label='loss' + tag)
        ax2.plot(ep, tr, '-o', label='train' + tag)
        ax2.plot(ep, va, '-o', label='val' + tag)
    ax1.set_title(title or 'Training loss')
    ax1.set_xlabel('Iteration')
    ax1.set_ylabel('Loss')
    ax2.set_title('Accuracy')
    ax2.set_xlabel('Epoch')
    ax2.set_ylabel('Accuracy')
    ax2.legend(loc='lower right')
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(prog='python3 -m dasecv.plot',
                                 description='Training curves of dasecv train --log files.')
    ap.add_argument('logs', nargs='+', help='CSV logs of dasecv train --log')
    ap.add_argument('-o', '--output', default='curves.png', help='image file (PNG)')
    ap.add_argument('--title', help='title of the loss plot')
    a = ap.parse_args(argv)
    try:
        plot_logs(a.logs, a.output, a.title)
    except (OSError, ValueError) as e:
        print('dasecv.plot: %s' % e, file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
