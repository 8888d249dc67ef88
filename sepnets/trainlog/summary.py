"""What plot_log.py writes and prints besides the figure: the logs' tables as parse_log.py's
CSV files, and a short summary per training (span, learning-rate steps, final and best value
of every test output)."""

import numpy as np

from sepnets import names
from sepnets.caffe.files import atomic_write_all
from sepnets.errors import UserError


def csv_paths(series, prefix):
    """{(series index, table kind): path} of the tables that have rows (sepnets.names.log_table)."""
    paths = {}
    for i, s in enumerate(series):
        label = None if len(series) == 1 else s.label
        for table in [s.train] + s.tests:
            if len(table.iters):
                paths[i, table.kind] = names.log_table(prefix, table.kind, label)
    if len(set(paths.values())) < len(paths):
        raise UserError(f"--csv {prefix}: two logs have the same name; give them distinct names")
    return paths


def csv_tables(series, prefix):
    """{path: CSV bytes} of every table (csv_paths)."""
    tables = {}
    for (i, kind), path in csv_paths(series, prefix).items():
        s = series[i]
        table = s.train if kind == "train" else next(t for t in s.tests if t.kind == kind)
        tables[path] = table.csv_text().encode()
    return tables


def write_csv(series, prefix, inputs=()):
    """Writes the tables, all of them or none (files.atomic_write_all)."""
    return [str(p) for p in atomic_write_all(csv_tables(series, prefix), inputs=inputs)]


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
