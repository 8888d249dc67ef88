"""quant_pattern.py: pattern binarization of a .caffemodel (the paper's step 2).

    python quant_pattern.py --offset 0.06 --filter 3x3 5x5 --model x.caffemodel

reads the model, binarizes the weights of the selected convolutions to +a/-a
(sepnets.patterns.quantize), writes <stem>_quant_<filters>_<offset>.caffemodel beside the input
(sepnets.names.quantized_model) or --output, and prints the per-layer errors and pattern counts.
--sweep evaluates a range of offsets with `caffe test` and keeps the best (its table, with the
kept offset marked, goes to --sweep-csv); --pack writes the compact B/BQ file; --stats draws the
patterns.
"""
import sys
from pathlib import Path

from sepnets import names
from sepnets.caffe import engines, files
from sepnets.cli import flags
from sepnets.errors import ArgumentParser, UserError
from sepnets.nets import analysis
from sepnets.patterns import binarize, pack, quantize


def _check_output_dir(path, flag):
    parent = Path(path).parent
    if not parent.is_dir():
        raise UserError(f"{flag} {path}: directory {parent} does not exist")


def build_parser():
    parser = ArgumentParser(
        prog="quant_pattern.py",
        description="Pattern binarization of a caffemodel: every selected k x k convolution "
                    "weight becomes +a if w > 0 else -a.")
    parser.add_argument("--model", required=True, help="the trained .caffemodel (never modified)")
    flags.add_selection(parser)
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
    parser.add_argument("--iterations", type=int, default=quantize.DEFAULT_ITERATIONS,
                        help=f"test batches per offset in the sweep (default {quantize.DEFAULT_ITERATIONS})")
    flags.add_engine(parser, "runs the sweep's `test`")
    parser.add_argument("--metric", help="test output that picks the best offset (default: the "
                                         "first output that is not a loss)")
    parser.add_argument("--pack", metavar="FILE", help="also write the packed model (1 bit per "
                                                       "pattern weight + a scale per filter)")
    parser.add_argument("--pack-bits", type=int, choices=[32, 8], default=32,
                        help="other blobs in the packed file: 32 = float32 (SEP-Net-B), "
                             "8 = 8-bit linear (SEP-Net-BQ)")
    parser.add_argument("--stats", metavar="DIR", help="write PNG pattern histograms per layer")
    parser.add_argument("--allow-nonfinite", action="store_true",
                        help="binarize weights that hold NaN or inf (they become -a) instead of "
                             "refusing the model")
    return parser


def check_args(args):
    mean = args.scale == "mean"
    if mean and (args.offset is not None or args.sweep):
        raise UserError("--scale mean computes a scale per filter; leave out --offset/--sweep")
    if not mean and args.offset is None and not args.sweep:
        raise UserError("give --offset A (e.g. 0.06), --sweep START:STOP:STEP, or --scale mean")
    if args.offset is not None:
        quantize.check_offset(args.offset)
    offsets = quantize.parse_sweep(args.sweep) if args.sweep else None
    if args.sweep and not args.net:
        raise UserError("--sweep needs --net (the prototxt whose TEST phase evaluates each offset)")
    if args.sweep:
        engines.check_engine(args.engine)
    if args.sweep_csv and not args.sweep:
        raise UserError("--sweep-csv needs --sweep")
    if args.iterations <= 0:
        raise UserError(f"--iterations {args.iterations}: must be positive")
    for flag in ("output", "pack", "sweep_csv"):
        if getattr(args, flag):
            _check_output_dir(getattr(args, flag), "--" + flag.replace("_", "-"))
    if args.stats and Path(args.stats).exists() and not Path(args.stats).is_dir():
        raise UserError(f"--stats {args.stats}: exists and is not a directory")
    return offsets


def main(argv=None):
    args = build_parser().parse_args(argv)
    selector = flags.selector(args)
    offsets = check_args(args)
    model = files.read_model(args.model)
    if args.net:
        quantize.check_against_net(model, args.model, args.net)
    layers = quantize.select_layers(model, args.model, selector)
    pattern_layers = {layer.name for layer in layers}
    bad = quantize.nonfinite(model, layers)
    if bad:
        problem = (f"{args.model}: weights that are not finite ({quantize.describe_nonfinite(bad)}); "
                   "binarization turns them into -a")
        if not args.allow_nonfinite:
            raise UserError(f"{problem}; pass --allow-nonfinite to binarize them anyway")
        print(f"quant_pattern.py: warning: {problem}", file=sys.stderr)

    offset = None if args.scale == "mean" else args.offset
    if offsets:
        results, label, maximize = quantize.sweep(model, layers, offsets, args.net, args.iterations,
                                         args.engine, args.gpu, args.metric)
        offset = quantize.best_offset(results, label, maximize)
        print(quantize.format_sweep(results, label, offset))
        print()
        if args.sweep_csv:
            files.atomic_write(args.sweep_csv, quantize.sweep_csv(results, offset).encode(),
                               inputs=[args.model])

    output = Path(args.output) if args.output else names.quantized_model(args.model, selector.tag,
                                                                          offset)
    quantized, reports = quantize.quantize_model(model, layers, offset)
    files.write_model(output, quantized, inputs=[args.model])

    held = selector.held_first(model.layers(), quantize.blob_kernels(model))
    print(f"{args.model}: {len(layers)} layer(s) binarized ({selector.describe()}; "
          f"a = {names.offset_text(offset) if offset is not None else 'mean |W_f| per filter'})"
          + (f"; left real-valued as the first convolution on the input: {', '.join(held)}"
             if held else ""))
    print(binarize.format_reports(reports))
    sizes = quantize.predicted_sizes(model, pattern_layers)
    print("\nmodel size, netinfo's conventions with these layers as patterns: " +
          ", ".join(f"{k} {sizes[k]:,} bytes ({sizes[k] / analysis.MB:.2f} MB)" for k in ("R", "B", "BQ")))
    print(f"wrote {output}")
    if args.pack:
        stats = pack.write(args.pack, quantized, pattern_layers, args.pack_bits, inputs=[args.model, output])
        kind = "B" if args.pack_bits == 32 else "BQ"
        print(f"wrote {args.pack}: {stats.file_bytes:,} bytes ({kind}); blob data "
              f"{stats.data_bytes:,} bytes (netinfo predicts {sizes[kind]:,}), header and blob "
              f"kinds {stats.file_bytes - stats.data_bytes:,} bytes")
    if args.stats:
        from sepnets.patterns import figures  # matplotlib only when asked for
        paths = figures.write_stats(Path(args.stats),
                                        [(layer.name, model.blobs[layer.name][0]) for layer in layers])
        print(f"wrote {len(paths)} pattern figure(s) to {args.stats}")
    return 0
