"""tools/export_onnx.py: a TEST-phase Caffe net and its caffemodel -> ONNX (sepnets.deploy).

    python tools/export_onnx.py --net deploy.prototxt --weights x.caffemodel -o x.onnx [--bq]
    python tools/export_onnx.py --workspace lenet --filter 5x5     # what `make export` runs
"""
from pathlib import Path

from sepnets import deploy, names
from sepnets.cli import flags
from sepnets.errors import ArgumentParser, UserError
from sepnets.patterns.selection import Selector, parse_filters
from sepnets.procedure.workspace import quantized_model, refined_model, rel, trained_model, workspace


def build_parser():
    parser = ArgumentParser(prog="export_onnx.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--net", help="the deploy prototxt (its TEST phase is exported)")
    parser.add_argument("--weights", help="the .caffemodel")
    parser.add_argument("-o", "--output", help="the .onnx file to write (default: beside the "
                                                "weights, <stem>.onnx or <stem>_bq.onnx)")
    parser.add_argument("--bq", action="store_true",
                        help="store the weights that are not patterns 8-bit per output channel "
                             "(SEP-Net-BQ); default float32")
    parser.add_argument("--workspace", metavar="NET",
                        help="a network of prototxt/: its deploy.prototxt and the newest model of "
                             "the procedure in models/NET/ (refined, else patterned, else trained, "
                             "for the --filter selection; default kxk)")
    flags.add_selection(parser, required=False)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.workspace:
        if args.net or args.weights:
            raise UserError("--workspace picks the net and the weights; leave out --net/--weights")
        ws = workspace(args.workspace)
        selector = flags.selector(args) if args.filter else Selector(parse_filters(["kxk"]))
        for newest in (refined_model, quantized_model):  # the README's `make export` rule
            try:
                weights = newest(ws, selector)
                break
            except UserError:
                continue
        else:
            weights = trained_model(ws)
        net = ws.deploy
        print(f"{args.workspace}: exporting {rel(weights)}")
    elif args.net and args.weights:
        net, weights = Path(args.net), Path(args.weights)
    else:
        raise UserError("give --net and --weights (or --workspace NET)")
    output = Path(args.output) if args.output else names.onnx_model(weights, args.bq)
    report = deploy.export(net, weights, output, bq=args.bq)
    print("\n".join(report.lines()))
    return 0
