"""netinfo.py: shapes, parameters by kind, MACs and R/B/BQ model sizes of a Caffe net
(sepnets.nets.analysis); with --weights, whether a caffemodel fits it."""
import json

from sepnets.caffe import files
from sepnets.cli import flags
from sepnets.errors import ArgumentParser, UserError
from sepnets.nets import analysis


def parse_shape_args(values):
    out = {}
    for item in values or ():
        name, sep, dims = item.partition("=")
        try:
            out[name] = tuple(int(d) for d in dims.split(","))
        except ValueError:
            sep = ""
        if not sep or not name:
            raise UserError(f"--data-shape {item!r}: expected NAME=N,C,H,W")
    return out


def main(argv=None):
    parser = ArgumentParser(
        prog="netinfo.py",
        description="Shapes, parameters by kind, MACs and R/B/BQ sizes of a Caffe net.")
    parser.add_argument("net", help="net prototxt")
    parser.add_argument("--weights", help="caffemodel to check against the net's blob shapes")
    parser.add_argument("--phase", default="TEST", choices=["TRAIN", "TEST", "train", "test"])
    parser.add_argument("--stage", action="append", default=[], help="NetState stage (repeatable)")
    parser.add_argument("--level", type=int, default=0, help="NetState level")
    parser.add_argument("--data-shape", action="append", metavar="NAME=N,C,H,W",
                        help="shape for a Data layer (by layer or top name) instead of reading its database")
    parser.add_argument("--output", help="blob whose ancestors form the main path (default: the "
                                         "last layer's)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    flags.add_selection(parser, required=False)
    args = parser.parse_args(argv)
    info = analysis.analyze(args.net, args.phase, args.level, args.stage,
                   parse_shape_args(args.data_shape), args.output)
    is_pattern, note = analysis.is_kxk_conv, ""
    if args.filter:  # B/BQ for the layers quant_pattern.py would binarize with these flags
        selector = flags.selector(args)
        chosen = {layer.name for layer in selector.select(list(files.read_net(args.net).layer))}
        is_pattern = lambda layer: layer.name in chosen  # noqa: E731
        note = f" (B/BQ: {len(chosen)} pattern layers, {selector.describe()})"
    errors, notes = [], []
    if args.weights:
        errors, notes = analysis.check_weights(info, files.read_model(args.weights))
    if args.json:
        doc = info.to_json(is_pattern)
        if args.weights:
            doc["weights"] = {"path": args.weights, "errors": errors, "notes": notes}
        print(json.dumps(doc, indent=1))
    else:
        print(analysis.format_report(info, is_pattern, note))
        if args.weights:
            print(f"\nweights {args.weights}: " + ("match the net" if not errors else
                                                   f"{len(errors)} mismatch(es)"))
            for line in errors:
                print(f"  error: {line}")
            for line in notes:
                print(f"  note: {line}")
    return 1 if errors else 0
