"""The figure of plot_log.py: training loss, learning rate and one panel per net output, for
one or more Caffe logs overlaid (matplotlib, no pyplot state)."""
import io
import math

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

NET_STYLES = ("-", "--", "-.", ":")          # test net #0, #1, ...
TRAIN_STYLE = dict(linestyle=":", linewidth=0.8, alpha=0.6)


def output_names(series):
    """Every output name, test nets' first (in output order), then the train net's."""
    names = {}
    for s in series:
        for table in s.tests + [s.train]:
            names.update(dict.fromkeys(table.columns))
    return list(names)


def render(series, fmt, metrics=None, x="iters"):
    """The figure as bytes in matplotlib format `fmt` (png, pdf, svg, ...)."""
    names = metrics or output_names(series)
    panels = 2 + len(names)
    ncols = 2 if panels <= 4 else 3
    nrows = math.ceil(panels / ncols)
    width, height = 5.2 * ncols, 3.4 * nrows + 0.8
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    # fixed margins in inches (matplotlib's constrained layout takes seconds for many panels)
    fig.subplots_adjust(left=0.75 / width, right=1 - 0.25 / width, bottom=0.55 / height,
                        top=1 - 1.0 / height, wspace=0.25, hspace=0.5)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[panels:]:
        ax.set_visible(False)
    scale, xlabel = _x_scale(series, x)
    colors = [f"C{i % 10}" for i in range(len(series))]

    def xs(curve):
        return curve.iters if x == "iters" else np.asarray(curve.seconds) / scale

    loss_ax, lr_ax = axes[0], axes[1]
    for s, color in zip(series, colors):
        smoothed = s.average_loss > 1
        loss_ax.plot(xs(s.loss), s.loss.values, color=color, linewidth=1,
                     label=f"{s.label}: as displayed"
                           + (f" (mean of {s.average_loss} iterations)" if smoothed else ""))
        raw = s.raw_loss
        if len(raw.iters) and _differs(s.loss, raw):
            loss_ax.plot(xs(raw), raw.values, color=color, linewidth=0.6, alpha=0.35,
                         label=f"{s.label}: the display iteration's own")
        lr_ax.plot(xs(s.lr), s.lr.values, color=color, drawstyle="steps-post", linewidth=1.2,
                   label=s.label)
        for at in s.resumed_at:
            for ax in axes[:panels]:
                ax.axvline(_resume_x(s, at, x, scale), color=color, linewidth=0.6,
                           linestyle=(0, (2, 3)), alpha=0.5)
    loss_ax.set_title("training loss")
    loss_ax.legend(fontsize="x-small")
    lr_ax.set_title("learning rate")
    if all((s.lr.values > 0).all() for s in series if len(s.lr.iters)) \
            and any(len(s.lr.iters) for s in series):
        lr_ax.set_yscale("log")

    for ax, name in zip(axes[2:], names):
        for s, color in zip(series, colors):
            for t, table in enumerate(s.tests):
                if name in table.columns:
                    ax.plot(xs(table), table.values(name), color=color,
                            linestyle=NET_STYLES[t % len(NET_STYLES)], marker="o", markersize=2.5,
                            linewidth=1.1)
            if name in s.train.columns:
                ax.plot(xs(s.train), s.train.values(name), color=color, **TRAIN_STYLE)
        ax.set_title(name)
    for ax in axes[:panels]:
        ax.set_xlabel(xlabel)
        ax.grid(True, alpha=0.3)

    handles = [Line2D([], [], color=c, linewidth=2, label=s.label) for s, c in zip(series, colors)]
    nets = max((len(s.tests) for s in series), default=0)
    handles += [Line2D([], [], color="gray", linestyle=NET_STYLES[t % len(NET_STYLES)],
                       marker="o", markersize=2.5, label=f"test net #{t}") for t in range(nets)]
    handles.append(Line2D([], [], color="gray", label="train (at displays)", **TRAIN_STYLE))
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 1 - 0.08 / height),
               ncols=min(len(handles), 5), fontsize="small", frameon=False)
    out = io.BytesIO()
    fig.savefig(out, format=fmt)
    return out.getvalue()


def _differs(shown, raw):
    """Whether the displayed loss is not simply the display iteration's own loss
    (average_loss or iter_size > 1), beyond Caffe's 6 printed digits."""
    common, a, b = np.intersect1d(shown.iters, raw.iters, return_indices=True)
    if not len(common):
        return True
    x, y = shown.values[a], raw.values[b]
    return bool((np.abs(x - y) > 1e-4 * np.maximum(np.abs(x), np.abs(y)) + 1e-12).any())


def _x_scale(series, x):
    if x == "iters":
        return 1, "iteration"
    longest = max((float(np.max(s.loss.seconds, initial=0)) for s in series), default=0)
    if longest > 3 * 3600:
        return 3600, "hours since the start"
    if longest > 3 * 60:
        return 60, "minutes since the start"
    return 1, "seconds since the start"


def _resume_x(series, iteration, x, scale):
    if x == "iters":
        return iteration
    at = np.searchsorted(series.loss.iters, iteration)
    seconds = series.loss.seconds[min(at, len(series.loss.seconds) - 1)]
    return seconds / scale
