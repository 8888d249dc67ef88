"""plot_log.py: Caffe training logs as a figure (sepnets.trainlog.figure), as parse_log.py's
CSV tables, and as a short summary (sepnets.trainlog.summary).

    python tools/plot_log.py LOG [LOG ...] [-o out.png] [--csv out.csv] [--metric NAME ...]
"""
import sys
from pathlib import Path

from sepnets.caffe import files
from sepnets.errors import ArgumentParser, UserError
from sepnets.trainlog import parse, summary

# what matplotlib's Agg canvas writes, by file extension
FIGURE_FORMATS = ("png", "pdf", "svg", "jpg", "jpeg", "tif", "tiff", "webp", "eps", "ps")
MOST_PANELS = 30          # output panels drawn without --metric (a figure stays readable)


def parse_args(argv):
    p = ArgumentParser(
        prog="plot_log.py",
        description="Plots Caffe training logs (stock Caffe's or the torch engine's glog "
                    "output): training loss, learning rate and every train/test net output, "
                    "several logs overlaid; writes parse_log.py's CSV tables; prints the "
                    "final and best value of every test output.")
    p.add_argument("logs", nargs="+", metavar="LOG", help="Caffe training log(s)")
    p.add_argument("-o", "--output", metavar="OUT.png",
                   help=f"figure to write (format by extension: {', '.join(FIGURE_FORMATS)})")
    p.add_argument("--csv", metavar="PREFIX",
                   help="write PREFIX.train.csv and PREFIX.test.csv (PREFIX.test1.csv for test "
                        "net #1, ...) with parse_log.py's columns; a trailing .csv is dropped; "
                        "with several trainings, PREFIX.<log name>.train.csv ...")
    p.add_argument("--metric", action="append", metavar="NAME",
                   help="plot only this output (repeatable; default: every output)")
    p.add_argument("--x", choices=("iters", "seconds"), default="iters",
                   help="x axis: iterations (default) or wall-clock time since the start")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    fmt = None
    if args.output:
        fmt = Path(args.output).suffix.lstrip(".").lower()
        if fmt not in FIGURE_FORMATS:
            raise UserError(f"{args.output}: unknown figure format '.{fmt}'; use one of "
                            + ", ".join("." + f for f in FIGURE_FORMATS))
    for out in filter(None, (args.output, args.csv)):       # before anything is written
        if not Path(out).parent.is_dir():
            raise UserError(f"{out}: output directory {Path(out).parent} does not exist")

    def warn(message):
        print(f"plot_log.py: warning: {message}", file=sys.stderr)

    series = [s for log in args.logs for s in parse.read_log(log, warn)]
    metrics = _check_metrics(series, args.metric)
    outputs = summary.csv_tables(series, args.csv) if args.csv else {}
    if args.output:
        from sepnets.trainlog import figure  # matplotlib only when a figure is asked for
        panels = figure.output_names(series)
        if metrics is None and len(panels) > MOST_PANELS:
            warn(f"{len(panels)} outputs: the figure shows the first {MOST_PANELS}; choose "
                 "others with --metric")
            metrics = panels[:MOST_PANELS]
        outputs[Path(args.output)] = figure.render(series, fmt, metrics, args.x)
    # the tables and the figure together, or none of them (a full disk, a read-only folder)
    written = files.atomic_write_all(outputs, inputs=args.logs)
    for s in series:
        print(summary.summary(s))
    for path in written:
        print(f"wrote {path}")
    return 0


def _check_metrics(series, metrics):
    if not metrics:
        return None
    known = {c for s in series for t in s.tests + [s.train] for c in t.columns}
    for name in metrics:
        if name not in known:
            raise UserError(f"--metric {name}: no such output in "
                            + ", ".join(sorted({str(s.path) for s in series}))
                            + f" (outputs: {', '.join(sorted(known)) or 'none'})")
    return list(dict.fromkeys(metrics))
