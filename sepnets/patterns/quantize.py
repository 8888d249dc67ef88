"""Pattern binarization of a caffemodel (the paper's step 2), what quant_pattern.py runs:
the layers a Selector chooses (selection) get their weights binarized to +a/-a (binarize),
in a new Model that shares every other blob with the input; an offset sweep evaluates each
offset's model with `caffe test` on either engine and keeps the best; the sizes netinfo's
R/B/BQ conventions give the result. Output names: sepnets.names.quantized_model.
"""
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

from sepnets import names
from sepnets.caffe import engines, files, shapes
from sepnets.errors import CaffeFileError, UserError
from sepnets.nets import analysis
from sepnets.patterns import binarize, selection

DEFAULT_ITERATIONS = 50  # caffe test's own default
MB = analysis.MB


# ---------------------------------------------------------------- offsets

SMALLEST = float(np.finfo(np.float32).tiny)   # the smallest normal float32
LARGEST = float(np.finfo(np.float32).max)
MAX_SWEEP = 1000      # offsets in one sweep: each is a full `caffe test`


def check_offset(value, flag="--offset"):
    """The offset, if it is usable: finite, > 0, and a normal float32 (the blobs' type: a
    smaller one is stored as a subnormal or as 0, a larger one as inf)."""
    single = np.float32(value) if math.isfinite(value) and abs(value) <= LARGEST else np.float32(np.inf)
    if not (value > 0 and np.isfinite(single) and single >= SMALLEST):
        raise UserError(f"{flag} {value:g}: the offset must be a positive number that float32 holds "
                        f"as a normal number ({SMALLEST:.6g} to {LARGEST:.6g}; the authors used "
                        "0.02 to 0.09)")
    return value


def parse_offset(text, flag="--offset"):
    """An offset given as text -> float, checked (check_offset)."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise UserError(f"{flag} {text!r}: not a number (e.g. 0.06)") from None
    return check_offset(value, flag)


def parse_sweep(text):
    """'START:STOP:STEP' (STOP included) or 'A,B,C' -> list of offsets. Refused before any
    work: more than MAX_SWEEP offsets, an offset check_offset refuses, and two offsets that
    are one float32 (they would make the same model under one name)."""
    usage = (f"--sweep {text!r}: expected START:STOP:STEP such as 0.02:0.09:0.01, or a list "
             "such as 0.04,0.06")
    try:
        if ":" in text:
            start, stop, step = (float(v) for v in text.split(":"))
            if not all(math.isfinite(v) for v in (start, stop, step)):
                raise UserError(f"--sweep {text}: START, STOP and STEP must be finite numbers")
            if step <= 0 or stop < start:
                raise UserError(f"--sweep {text}: need START <= STOP and STEP > 0")
            span = (stop - start) / step
            if not math.isfinite(span) or span + 1 > MAX_SWEEP:
                raise UserError(f"--sweep {text}: more than {MAX_SWEEP} offsets; use a larger "
                                "STEP (each offset is a full test run)")
            count = int(math.floor(span + 1e-9)) + 1
            # 15 significant digits: the float noise of start + i * step goes, the offsets stay
            values = [float(f"{start + i * step:.15g}") for i in range(count)]
        else:
            parts = text.split(",")
            if len(parts) > MAX_SWEEP:
                raise UserError(f"--sweep: {len(parts)} offsets, more than {MAX_SWEEP}")
            values = [float(v) for v in parts]
    except ValueError:
        raise UserError(usage) from None
    offsets = [check_offset(v, "--sweep value") for v in values]
    seen = {}
    for v in offsets:
        name = names.offset_text(v)
        if name in seen:
            raise UserError(f"--sweep {text}: offsets {seen[name]!r} and {v!r} are the same float32 "
                            f"({name}): they would make one model under one name")
        seen[name] = v
    return offsets


def nonfinite(model, layers):
    """[(layer, NaN count, inf count)] of the selected layers' weights that are not finite."""
    found = []
    for layer in layers:
        weights = model.blobs[layer.name][0]
        nan, inf = int(np.isnan(weights).sum()), int(np.isinf(weights).sum())
        if nan or inf:
            found.append((layer.name, nan, inf))
    return found


def describe_nonfinite(found):
    return ", ".join(f"'{name}' {nan} NaN and {inf} inf" for name, nan, inf in found)


# ---------------------------------------------------------------- the model

def blob_kernels(model):
    """{layer: kernel} from the weight blobs of the model's convolutions."""
    return {name: tuple(blobs[0].shape[2:]) for name, blobs in model.blobs.items()
            if blobs and blobs[0].ndim >= 3}


def select_layers(model, model_path, selector):
    """The model's layers the selector binarizes; UserError when there are none."""
    layers = model.layers()
    kernels = blob_kernels(model)
    chosen = selector.select(layers, kernels)
    if not chosen:
        raise UserError(f"{model_path}: no layer selected by {selector.describe()} "
                        f"({selector.explain_empty(layers, kernels)})")
    for layer in chosen:
        blobs = model.blobs.get(layer.name)
        if not blobs:
            raise CaffeFileError(model_path, f"layer '{layer.name}' has no weights stored")
        if blobs[0].ndim < 3 or blobs[0].shape[0] != layer.convolution_param.num_output:
            raise CaffeFileError(model_path, f"layer '{layer.name}': weight blob shape "
                                             f"{blobs[0].shape} is not a convolution's "
                                             f"(num_output {layer.convolution_param.num_output})")
    return chosen


def quantize_model(model, layers, offset):
    """(new Model with the layers' weights binarized, [LayerReport]); the input is untouched.

    offset None: per-filter scales mean |W_f|. Blobs that are not binarized are shared with
    the input model (never modified).
    """
    out = files.Model(model.net, dict(model.blobs), set(model.legacy))
    reports = []
    for layer in layers:
        blobs = list(model.blobs[layer.name])
        group = layer.convolution_param.group
        blobs[0], report = binarize.quantize_layer(layer.name, blobs[0], offset, group)
        if model.blobs[layer.name][0].dtype == np.float64:
            blobs[0] = blobs[0].astype(np.float64)
        out.blobs[layer.name] = blobs
        reports.append(report)
    return out, reports


def check_against_net(model, model_path, net_path):
    """UserError unless the model's blobs fit the net's TEST phase as Caffe would load them."""
    info = analysis.analyze(net_path, "TEST")
    problems, _ = analysis.check_weights(info, model)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UserError(f"{model_path} does not match {net_path}: {problems[0]}{more}")


def predicted_sizes(model, pattern_layers):
    """netinfo's R/B/BQ bytes for the model's blobs with `pattern_layers` as pattern layers."""
    layers = [shapes.LayerShapes(layer.name, selection.layer_type(layer), list(layer.bottom),
                                 list(layer.top), [], [b.shape for b in model.blobs[layer.name]])
              for layer in model.layers() if model.blobs.get(layer.name)]
    return analysis.storage_bytes(layers, lambda layer: layer.name in pattern_layers)


# ---------------------------------------------------------------- the offset sweep

def choose_metric(scores, metric):
    """(label, maximize) of the output that decides the best offset."""
    labels = scores.labels()
    if metric:
        if metric not in labels:
            raise UserError(f"--metric {metric}: the net's test outputs are {', '.join(labels)}")
        return metric, not scores.value(metric).loss_weight
    for label, out in zip(labels, scores.outputs):
        if not out.loss_weight:
            return label, True
    return labels[0], False  # only losses: the smallest wins


def sweep(model, layers, offsets, net, iterations, engine, gpu, metric):
    """Evaluates each offset's model with `test`; returns ([(offset, TestScores)], label, maximize)."""
    from tqdm import tqdm
    results = []
    with tempfile.TemporaryDirectory(prefix="quant_sweep_") as tmp:
        path = Path(tmp) / "quantized.caffemodel"
        for offset in tqdm(offsets, desc="offset sweep", unit="offset", file=sys.stderr,
                           disable=None):
            quantized, _ = quantize_model(model, layers, offset)
            files.write_model(path, quantized)
            results.append((offset, engines.run(net, path, iterations, engine, gpu)))
    label, maximize = choose_metric(results[0][1], metric)
    return results, label, maximize


def best_offset(results, label, maximize):
    """The offset with the best `label` value; ties go to the lower first loss, then the
    smaller offset."""
    def key(item):
        scores = item[1]
        value = scores.value(label).value
        value = -math.inf if math.isnan(value) else value if maximize else -value
        losses = [o.value for o in scores.outputs if o.loss_weight]
        loss = losses[0] if losses and not math.isnan(losses[0]) else math.inf
        return value, -loss
    return max(results, key=key)[0]


def format_sweep(results, label, best):
    labels = results[0][1].labels()
    head = ["offset"] + labels + [""]
    rows = [[names.offset_text(o)] + [f"{s.value(column).value:.6g}" for column in labels] +
            ["<- best" if o == best else ""] for o, s in results]
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)).rstrip() for r in [head] + rows]
    return "\n".join(lines + [f"best offset by {label}: {names.offset_text(best)}"])


def sweep_csv(results, best):
    """The sweep as CSV: offset, every test output, and 1 in the `best` column for the kept one."""
    labels = results[0][1].labels()
    rows = [",".join(["offset"] + labels + ["best"])]
    rows += [",".join([names.offset_text(o)] + [f"{s.value(column).value:.6g}" for column in labels] +
                      ["1" if o == best else "0"]) for o, s in results]
    return "\n".join(rows) + "\n"
