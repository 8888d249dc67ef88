"""quant_pattern.py: pattern binarization of a .caffemodel (the paper's step 2).

    python quant_pattern.py --offset 0.06 --filter 3x3 5x5 --model x.caffemodel

reads the model, binarizes the weights of the selected convolutions (sepnets.selection) to
+a/-a (sepnets.pattern), writes <stem>_quant_<filters>_<offset>.caffemodel beside the input
(stem: the model's file name without .caffemodel), and prints the per-layer errors and
pattern counts. --sweep evaluates a range of offsets with `caffe test` and keeps the best;
--pack writes the compact B/BQ file (sepnets.pack); --stats draws the patterns.
"""
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

from sepnets import caffeio, caffetest, netinfo, pack, pattern, selection, shapes
from sepnets.errors import ArgumentParser, CaffeFileError, UserError

DEFAULT_ITERATIONS = 50  # caffe test's own default
MB = netinfo.MB


# ---------------------------------------------------------------- offsets and names

def offset_text(offset):
    """An offset as it appears in file names and tables: 0.06, 0.1, or 'mean'."""
    return pattern.MEAN if offset is None else f"{round(offset, 10):g}"


def check_offset(value, flag="--offset"):
    if not math.isfinite(value) or value <= 0:
        raise UserError(f"{flag} {value:g}: the offset must be a positive number (the authors "
                        "used 0.02 to 0.09)")
    return value


def parse_sweep(text):
    """'START:STOP:STEP' (STOP included) or 'A,B,C' -> list of offsets."""
    try:
        if ":" in text:
            start, stop, step = (float(v) for v in text.split(":"))
            if step <= 0 or stop < start:
                raise UserError(f"--sweep {text}: need START <= STOP and STEP > 0")
            count = int(math.floor((stop - start) / step + 1e-9)) + 1
            values = [round(start + i * step, 10) for i in range(count)]
        else:
            values = [float(v) for v in text.split(",")]
    except ValueError:
        raise UserError(f"--sweep {text!r}: expected START:STOP:STEP such as 0.02:0.09:0.01, "
                        "or a list such as 0.04,0.06") from None
    return [check_offset(v, "--sweep value") for v in values]


def default_output(model_path, tag, offset):
    """<stem>_quant_<filters>_<offset>.caffemodel in the model's directory."""
    path = Path(model_path)
    stem = path.name[:-len(".caffemodel")] if path.name.endswith(".caffemodel") else path.stem
    return path.with_name(f"{stem}_quant_{tag}_{offset_text(offset)}.caffemodel")


def check_output_dir(path, flag):
    parent = Path(path).parent
    if not parent.is_dir():
        raise UserError(f"{flag} {path}: directory {parent} does not exist")


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
    out = caffeio.Model(model.net, dict(model.blobs), set(model.legacy))
    reports = []
    for layer in layers:
        blobs = list(model.blobs[layer.name])
        group = layer.convolution_param.group
        blobs[0], report = pattern.quantize_layer(layer.name, blobs[0], offset, group)
        if model.blobs[layer.name][0].dtype == np.float64:
            blobs[0] = blobs[0].astype(np.float64)
        out.blobs[layer.name] = blobs
        reports.append(report)
    return out, reports


def check_against_net(model, model_path, net_path):
    """UserError unless the model's blobs fit the net's TEST phase as Caffe would load them."""
    info = netinfo.analyze(net_path, "TEST")
    problems, _ = netinfo.check_weights(info, model)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UserError(f"{model_path} does not match {net_path}: {problems[0]}{more}")


def predicted_sizes(model, pattern_layers):
    """netinfo's R/B/BQ bytes for the model's blobs with `pattern_layers` as pattern layers."""
    layers = [shapes.LayerShapes(l.name, selection.layer_type(l), list(l.bottom), list(l.top), [],
                                 [b.shape for b in model.blobs[l.name]])
              for l in model.layers() if model.blobs.get(l.name)]
    return netinfo.storage_bytes(layers, lambda l: l.name in pattern_layers)


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
            caffeio.write_model(path, quantized)
            results.append((offset, caffetest.run(net, path, iterations, engine, gpu)))
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
    rows = [[offset_text(o)] + [f"{s.value(l).value:.6g}" for l in labels] +
            ["<- best" if o == best else ""] for o, s in results]
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)).rstrip() for r in [head] + rows]
    return "\n".join(lines + [f"best offset by {label}: {offset_text(best)}"])


def sweep_csv(results, best):
    """The sweep as CSV: offset, every test output, and 1 in the `best` column for the kept one."""
    labels = results[0][1].labels()
    rows = [",".join(["offset"] + labels + ["best"])]
    rows += [",".join([offset_text(o)] + [f"{s.value(l).value:.6g}" for l in labels] +
                      ["1" if o == best else "0"]) for o, s in results]
    return "\n".join(rows) + "\n"


# ---------------------------------------------------------------- the command

def build_parser():
    parser = ArgumentParser(
        prog="quant_pattern.py",
        description="Pattern binarization of a caffemodel: every selected k x k convolution "
                    "weight becomes +a if w > 0 else -a.")
    parser.add_argument("--model", required=True, help="the trained .caffemodel (never modified)")
    selection.add_arguments(parser)
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--offset", type=float, help="the constant a (the authors tuned 0.02..0.09)")
    how.add_argument("--sweep", metavar="START:STOP:STEP",
                     help="try offsets START..STOP (STOP included) or a list A,B,C on the TEST "
                          "phase of --net and keep the best")
    parser.add_argument("--scale", choices=["offset", "mean"], default="offset",
                        help="offset: a = --offset; mean: a per output filter = mean |W_f|")
    parser.add_argument("--output", help="output .caffemodel (default: "
                                         "<stem>_quant_<filters>_<offset>.caffemodel beside --model)")
    parser.add_argument("--sweep-csv", metavar="FILE",
                        help="also write the sweep's table (offset, every test output, best) as CSV")
    parser.add_argument("--net", help="net prototxt: the model is checked against it; the sweep "
                                      "evaluates its TEST phase")
    parser.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS,
                        help=f"test batches per offset in the sweep (default {DEFAULT_ITERATIONS})")
    parser.add_argument("--engine", choices=caffetest.ENGINES, default="caffe",
                        help="what runs `test`: stock Caffe (default) or the PyTorch engine")
    parser.add_argument("--gpu", help="passed to `test` as --gpu")
    parser.add_argument("--metric", help="test output that picks the best offset (default: the "
                                         "first output that is not a loss)")
    parser.add_argument("--pack", metavar="FILE", help="also write the packed model (1 bit per "
                                                       "pattern weight + a scale per filter)")
    parser.add_argument("--pack-bits", type=int, choices=[32, 8], default=32,
                        help="other blobs in the packed file: 32 = float32 (SEP-Net-B), "
                             "8 = 8-bit linear (SEP-Net-BQ)")
    parser.add_argument("--stats", metavar="DIR", help="write PNG pattern histograms per layer")
    return parser


def check_args(args):
    mean = args.scale == "mean"
    if mean and (args.offset is not None or args.sweep):
        raise UserError("--scale mean computes a scale per filter; leave out --offset/--sweep")
    if not mean and args.offset is None and not args.sweep:
        raise UserError("give --offset A (e.g. 0.06), --sweep START:STOP:STEP, or --scale mean")
    if args.offset is not None:
        check_offset(args.offset)
    offsets = parse_sweep(args.sweep) if args.sweep else None
    if args.sweep and not args.net:
        raise UserError("--sweep needs --net (the prototxt whose TEST phase evaluates each offset)")
    if args.sweep:
        caffetest.check_engine(args.engine)
    if args.sweep_csv and not args.sweep:
        raise UserError("--sweep-csv needs --sweep")
    if args.iterations <= 0:
        raise UserError(f"--iterations {args.iterations}: must be positive")
    for flag in ("output", "pack", "sweep_csv"):
        if getattr(args, flag):
            check_output_dir(getattr(args, flag), "--" + flag.replace("_", "-"))
    if args.stats and Path(args.stats).exists() and not Path(args.stats).is_dir():
        raise UserError(f"--stats {args.stats}: exists and is not a directory")
    return offsets


def main(argv=None):
    args = build_parser().parse_args(argv)
    selector = selection.from_args(args)
    offsets = check_args(args)
    model = caffeio.read_model(args.model)
    if args.net:
        check_against_net(model, args.model, args.net)
    layers = select_layers(model, args.model, selector)
    names = {l.name for l in layers}

    offset = None if args.scale == "mean" else args.offset
    if offsets:
        results, label, maximize = sweep(model, layers, offsets, args.net, args.iterations,
                                         args.engine, args.gpu, args.metric)
        offset = best_offset(results, label, maximize)
        print(format_sweep(results, label, offset))
        print()
        if args.sweep_csv:
            caffeio.atomic_write(args.sweep_csv, sweep_csv(results, offset).encode(),
                                 inputs=[args.model])

    output = Path(args.output) if args.output else default_output(args.model, selector.tag, offset)
    quantized, reports = quantize_model(model, layers, offset)
    caffeio.write_model(output, quantized, inputs=[args.model])

    held = selector.held_first(model.layers(), blob_kernels(model))
    print(f"{args.model}: {len(layers)} layer(s) binarized ({selector.describe()}; "
          f"a = {offset_text(offset) if offset is not None else 'mean |W_f| per filter'})"
          + (f"; left real-valued as the first convolution on the input: {', '.join(held)}"
             if held else ""))
    print(pattern.format_reports(reports))
    sizes = predicted_sizes(model, names)
    print("\nmodel size, netinfo's conventions with these layers as patterns: " +
          ", ".join(f"{k} {sizes[k]:,} bytes ({sizes[k] / MB:.2f} MB)" for k in ("R", "B", "BQ")))
    print(f"wrote {output}")
    if args.pack:
        stats = pack.write(args.pack, quantized, names, args.pack_bits, inputs=[args.model, output])
        kind = "B" if args.pack_bits == 32 else "BQ"
        print(f"wrote {args.pack}: {stats.file_bytes:,} bytes ({kind}); blob data "
              f"{stats.data_bytes:,} bytes (netinfo predicts {sizes[kind]:,}), header and blob "
              f"kinds {stats.file_bytes - stats.data_bytes:,} bytes")
    if args.stats:
        from sepnets import patternplot  # matplotlib only when asked for
        paths = patternplot.write_stats(Path(args.stats),
                                        [(l.name, model.blobs[l.name][0]) for l in layers])
        print(f"wrote {len(paths)} pattern figure(s) to {args.stats}")
    return 0
