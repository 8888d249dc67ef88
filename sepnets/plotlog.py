"""plot_log.py: Caffe training logs as a figure, as parse_log.py's CSV tables, and as a
short summary (final and best value of every test output)."""
import re
import sys
from pathlib import Path

import numpy as np

from sepnets import caffelog
from sepnets.caffeio import atomic_write
from sepnets.errors import ArgumentParser, UserError

FORMATS = ("png", "pdf", "svg", "jpg", "jpeg", "tif", "tiff", "webp", "eps", "ps")
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
                   help=f"figure to write (format by extension: {', '.join(FORMATS)})")
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
        if fmt not in FORMATS:
            raise UserError(f"{args.output}: unknown figure format '.{fmt}'; use one of "
                            + ", ".join("." + f for f in FORMATS))
    for out in filter(None, (args.output, args.csv)):       # before anything is written
        if not Path(out).parent.is_dir():
            raise UserError(f"{out}: output directory {Path(out).parent} does not exist")

    def warn(message):
        print(f"plot_log.py: warning: {message}", file=sys.stderr)

    series = [s for log in args.logs for s in caffelog.read_log(log, warn)]
    metrics = _check_metrics(series, args.metric)
    written = []
    if args.csv:
        written += write_csv(series, args.csv, inputs=args.logs)
    if args.output:
        from sepnets import logplot      # matplotlib only when a figure is asked for
        if metrics is None and len(logplot.output_names(series)) > MOST_PANELS:
            names = logplot.output_names(series)
            warn(f"{len(names)} outputs: the figure shows the first {MOST_PANELS}; choose "
                 "others with --metric")
            metrics = names[:MOST_PANELS]
        atomic_write(args.output, logplot.render(series, fmt, metrics, args.x), inputs=args.logs)
        written.append(args.output)
    for s in series:
        print(summary(s))
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


def csv_paths(series, prefix):
    """{(series index, table kind): path} of the tables that have rows."""
    prefix = prefix[:-4] if prefix.endswith(".csv") else prefix
    paths = {}
    for i, s in enumerate(series):
        middle = "" if len(series) == 1 else "." + re.sub(r"[^A-Za-z0-9._-]+", "_", s.label).strip("_")
        for table in [s.train] + s.tests:
            if len(table.iters):
                paths[i, table.kind] = Path(f"{prefix}{middle}.{table.kind}.csv")
    if len(set(paths.values())) < len(paths):
        raise UserError(f"--csv {prefix}: two logs have the same name; give them distinct names")
    return paths


def write_csv(series, prefix, inputs=()):
    paths = csv_paths(series, prefix)
    for (i, kind), path in paths.items():
        s = series[i]
        table = s.train if kind == "train" else next(t for t in s.tests if t.kind == kind)
        atomic_write(path, table.csv_text().encode(), inputs=inputs)
    return [str(p) for p in paths.values()]


def summary(s):
    """A few lines on one training: its span, learning rate steps, and per test output the
    final value and the best one (lowest for losses, highest otherwise) with iterations."""
    last = max((int(c.iters[-1]) for c in [s.loss, s.lr, *s.tests] if len(c.iters)), default=0)
    facts = [f"iterations up to {last}", f"{len(s.loss.iters)} displays",
             f"{sum(len(t.iters) for t in s.tests)} tests"]
    ends = [float(c.seconds[-1]) for c in [s.loss, s.lr, *s.tests] if len(c.seconds)]
    if ends:
        facts.append(_duration(max(ends)))
    facts += [f"resumed at {r}" for r in s.resumed_at]
    facts.append("finished" if s.done else "not finished (running, or stopped)")
    lines = [f"{s.label}: " + ", ".join(facts)]
    if len(s.lr.iters):
        lines.append("  lr: " + _lr_steps(s.lr))
    if len(s.loss.iters):
        lines.append(f"  train loss (displayed): final {s.loss.texts[-1]} at {s.loss.iters[-1]}")
    for t, table in enumerate(s.tests):
        net = "test" if len(s.tests) == 1 else f"test #{t}"
        for j, name in enumerate(table.columns):
            lines.append(f"  {net} {name}: " + _final_and_best(table, j, name))
    return "\n".join(lines)


def _final_and_best(table, j, name):
    values = table.values(name)
    present = np.flatnonzero(~np.isnan(values))
    if not len(present):
        return "no value"
    final = present[-1]
    lowest = table.is_loss(name)
    best = present[np.argmin(values[present]) if lowest else np.argmax(values[present])]
    return (f"final {table.cells[final, j]} at {table.iters[final]}, "
            f"best {table.cells[best, j]} at {table.iters[best]}"
            + (" (lowest)" if lowest else " (highest)"))


def _lr_steps(lr):
    change = np.flatnonzero(np.concatenate(([True], lr.values[1:] != lr.values[:-1])))
    if len(change) <= 6:
        return " -> ".join(f"{lr.texts[k]} from {lr.iters[k]}" for k in change)
    return (f"{lr.texts[0]} at {lr.iters[0]} ... {lr.texts[-1]} at {lr.iters[-1]} "
            f"({len(change) - 1} changes)")


def _duration(seconds):
    hours, rest = divmod(int(round(seconds)), 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d} wall clock"
