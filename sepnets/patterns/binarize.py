"""Pattern binarization of convolution weights, its error, and pattern statistics.

A weight blob of a Convolution has shape (filters, channels / group, kh, kw). Each weight
becomes +a if w > 0 else -a (zero goes negative, as the authors' script did). The scale a is
either a constant offset for the whole layer, or per output filter f the mean |W_f|, which
minimizes ||W_f - a * sign(W_f)||^2 for the fixed signs.

Error measures (per layer): the mean squared error per weight, mean((w - q)^2), and the
relative error ||W - Q||^2 / ||W||^2. The summary "averaged quantization error by filter size"
averages the per-layer mean squared errors over the layers of that kernel size; the poster's
example 3x3 filter gives 0.00094 at a = 0.06 this way, the same order as its 3x3 average 0.0029
(its mean absolute error, 0.027, is an order of magnitude above that).

A pattern is the sign map of one kh x kw kernel slice (one filter, one input channel). It is
coded as an integer whose bit i is tap i in row-major order (bit set: positive weight).
"""
import math
from dataclasses import dataclass

import numpy as np


def filter_scales(weights, offset=None):
    """float32 scale per output filter: the constant offset, or mean |W_f| when offset is None."""
    n = weights.shape[0]
    if offset is not None:
        return np.full(n, offset, np.float32)
    flat = np.abs(weights.reshape(n, -1), dtype=np.float64)
    return flat.mean(axis=1).astype(np.float32) if flat.shape[1] else np.zeros(n, np.float32)


def binarize(weights, scales):
    """+scale_f where w > 0, -scale_f elsewhere, as float32 in the weights' shape."""
    scales = np.asarray(scales, np.float32)
    if scales.size and (scales == scales[0]).all():  # one offset: scalars are faster
        a = scales[0]
    else:
        a = scales.reshape((-1,) + (1,) * (weights.ndim - 1))
    return np.where(weights > 0, a, -a).astype(np.float32, copy=False)


def errors(weights, quantized):
    """(mean squared error per weight, relative squared error ||W-Q||^2 / ||W||^2)."""
    diff = np.subtract(weights, quantized, dtype=np.float32).ravel()
    flat = np.asarray(weights, np.float32).ravel()
    # float32 dot products (BLAS): the report shows four significant digits
    sq, norm = float(np.dot(diff, diff)), float(np.dot(flat, flat))
    return sq / max(weights.size, 1), (sq / norm if norm else math.inf if sq else 0.0)


def pattern_rows(weights):
    """Sign bits of every kernel slice: bool array (slices, taps)."""
    taps = math.prod(weights.shape[2:]) if weights.ndim > 2 else 1
    return (weights > 0).reshape(-1, taps)


def pattern_codes(weights):
    """Integer code of every kernel slice's pattern (bit i = tap i, row-major); taps <= 62."""
    rows = pattern_rows(weights)
    if rows.shape[1] > 62:
        raise ValueError(f"{rows.shape[1]} taps do not fit an integer code")
    packed = np.packbits(rows, axis=1, bitorder="little")  # tap i -> bit i % 8 of byte i // 8
    wide = np.zeros((rows.shape[0], 8), np.uint8)
    wide[:, :packed.shape[1]] = packed
    return wide.view("<u8").ravel().astype(np.int64)


def distinct_patterns(weights):
    """How many different sign patterns the kernel slices take."""
    rows = pattern_rows(weights)
    if rows.shape[1] <= 62:
        return int(np.unique(pattern_codes(weights)).size)
    return int(np.unique(np.packbits(rows, axis=1), axis=0).shape[0])


def top_patterns(weights, n):
    """The n most frequent patterns: [(code, count)], most frequent first (ties by code)."""
    codes, counts = np.unique(pattern_codes(weights), return_counts=True)
    order = np.lexsort((codes, -counts))[:n]
    return [(int(codes[i]), int(counts[i])) for i in order]


def pattern_grid(code, kernel):
    """A code as a kh x kw array of +1/-1."""
    taps = math.prod(kernel)
    bits = (np.int64(code) >> np.arange(taps, dtype=np.int64)) & 1
    return np.where(bits.reshape(kernel) > 0, 1, -1)


@dataclass
class LayerReport:
    name: str
    kernel: tuple
    group: int
    filters: int
    weights: int
    mean_abs: float
    scale: float          # the offset, or the mean of the per-filter scales
    mse: float
    relative: float
    distinct: int
    slices: int

    @property
    def kernel_text(self):
        return "x".join(map(str, self.kernel))

    @property
    def possible(self):
        """Patterns a slice could take: 2^taps, at most the number of slices."""
        taps = math.prod(self.kernel)
        return min(2 ** taps, self.slices) if taps < 64 else self.slices


def quantize_layer(name, weights, offset, group=1):
    """(binarized float32 weights, LayerReport). offset None: per-filter mean |W_f| scales."""
    scales = filter_scales(weights, offset)
    quantized = binarize(weights, scales)
    mse, rel = errors(weights, quantized)
    report = LayerReport(name, tuple(weights.shape[2:]), group, weights.shape[0], weights.size,
                         float(np.abs(weights).mean(dtype=np.float64)) if weights.size else 0.0,
                         float(scales.astype(np.float64).mean()) if scales.size else 0.0,
                         mse, rel, distinct_patterns(weights),
                         weights.size // max(math.prod(weights.shape[2:]), 1))
    return quantized, report


def summary_by_kernel(reports):
    """{kernel text: (mean of the layers' MSE, number of layers)}, in first-seen order."""
    groups = {}
    for r in reports:
        groups.setdefault(r.kernel_text, []).append(r.mse)
    return {k: (sum(v) / len(v), len(v)) for k, v in groups.items()}


def format_reports(reports):
    head = ("layer", "kernel", "group", "filters", "weights", "mean|W|", "scale", "MSE",
            "rel.err", "patterns")
    rows = [(r.name, r.kernel_text, str(r.group), f"{r.filters:,}", f"{r.weights:,}",
             f"{r.mean_abs:.5f}", f"{r.scale:.5f}", f"{r.mse:.6f}", f"{r.relative:.4f}",
             f"{r.distinct:,}/{r.possible:,}") for r in reports]
    widths = [max(len(row[i]) for row in rows + [head]) for i in range(len(head))]

    def fmt(row):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths))).rstrip()
    lines = [fmt(head)] + [fmt(r) for r in rows]
    lines.append("")
    lines.append("averaged quantization error by filter size (mean squared error per weight, "
                 "averaged over the layers of that size):")
    for kernel, (mse, n) in summary_by_kernel(reports).items():
        lines.append(f"  {kernel:<6} {mse:.4f}  ({n} layer{'s' if n != 1 else ''})")
    return "\n".join(lines)
