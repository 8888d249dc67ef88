"""PNG figures of the binary patterns a layer's kernels take (quant_pattern.py --stats)."""
import io

from sepnets import names
from sepnets.caffe import files
from sepnets.patterns import binarize

TOP_BARS = 20   # patterns in the frequency histogram
TOP_GRID = 9    # patterns drawn as images (a 3 x 3 grid of kernels)


def layer_figure(name, weights):
    """PNG bytes: the most frequent patterns' share of the kernels, and the top ones drawn."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    kernel = tuple(weights.shape[2:])
    total = weights.size // max(1, weights.shape[2] * weights.shape[3])
    top = binarize.top_patterns(weights, TOP_BARS)
    fig = plt.figure(figsize=(11, 4.2))
    grid = fig.add_gridspec(3, 6, width_ratios=[6, 0.2, 1, 1, 1, 0.1], wspace=0.25, hspace=0.5)
    bars = fig.add_subplot(grid[:, 0])
    shares = [100 * count / total for _, count in top]
    bars.bar(range(len(top)), shares, color="#4c72b0")
    bars.set_xticks(range(len(top)))
    bars.set_xticklabels([f"#{i + 1}" for i in range(len(top))], fontsize=7)
    bars.set_ylabel("% of kernels")
    bars.set_xlabel("pattern rank (right: the top ones, white = +a, black = -a)")
    distinct = binarize.distinct_patterns(weights)
    bars.set_title(f"{name}: {total:,} {'x'.join(map(str, kernel))} kernels, "
                   f"{distinct:,} distinct patterns", fontsize=10)
    for i, (code, count) in enumerate(top[:TOP_GRID]):
        ax = fig.add_subplot(grid[i // 3, 2 + i % 3])
        ax.imshow(binarize.pattern_grid(code, kernel), cmap="gray", vmin=-1, vmax=1)
        ax.set_title(f"#{i + 1} {100 * count / total:.1f}%\ncode {code}", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def write_stats(directory, layers):
    """One PNG per (name, weights) of 2-D kernels in `directory`, each layer its own file
    (names.pattern_figures), all written together or none; returns the paths written."""
    drawn = [(name, weights) for name, weights in layers
             if weights.ndim == 4 and 0 < weights.shape[2] * weights.shape[3] <= 62]
    figure_names = names.pattern_figures([name for name, _ in drawn])
    figures = {directory / figure_names[name]: layer_figure(name, weights) for name, weights in drawn}
    files.make_dirs(directory)
    return files.atomic_write_all(figures)
