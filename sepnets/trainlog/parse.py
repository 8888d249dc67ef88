"""Caffe training logs: what stock Caffe's solver prints through glog (and the torch engine,
which prints the same lines), read into the tables Caffe's tools/extra/parse_log.py makes.

The lines (BVLC src/caffe/solver.cpp, solvers/sgd_solver.cpp, tools/caffe.cpp), each after
glog's prefix `I0418 16:30:46.830205  2203 solver.cpp:219] `:

    Iteration N (x iter/s, ys/D iters), loss = L     a display; L is Caffe's smoothed loss:
                                                      the mean of the last `average_loss`
                                                      iterations' losses
    Iteration N, loss = L                             a display in Caffe before 1.0, and the
                                                      forward-only display after the last update
        Train net output #k: NAME = V (* W = Z loss)  the display's outputs (the last forward
                                                      pass); the suffix only for loss outputs
    Iteration N, lr = R                               the rate of iteration N's update
    Iteration N, Testing net (#t)                     a test of test net t, then
        Test net output #k: NAME = V (* W = Z loss)   its outputs (means over test_iter batches)
    Solving NAME ... Optimization Done.               a run's start and end
    Resuming from S / Restoring previous solver status from S    a resumed run
    Snapshotting solver state to binary proto file S

A run is what one solver thread (glog's thread id) logs from its start to its end, so two
processes writing one file are told apart. A resumed run continues the run that wrote its
snapshot, replacing what that run logged from the snapshot's iteration on.
"""
import csv
import io
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np

from sepnets import names
from sepnets.caffe.files import read_bytes
from sepnets.errors import CaffeFileError
from sepnets.trainlog import scan
from sepnets.trainlog.scan import DISPLAY, EVENT, LR, TEST_OUT, TESTING, TRAIN_OUT

_START_EVENTS = ("Solving", "Resuming from", "Restoring previous solver status from",
                 "Initializing solver from parameters")
_DUMP_FIELD = re.compile(rb"^(average_loss|iter_size): (\d+)\r?$", re.M)
_GLOG_LINE = re.compile(rb"^[IWEF]\d{4}", re.M)
_FATAL = re.compile(rb"^F\d{4} [^\]\n]*\] (.*)$", re.M)


def _distinct(values):
    """The distinct values of an array that changes rarely (thread ids), as a list."""
    changes = np.flatnonzero(np.diff(values)) + 1
    return np.unique(values[np.concatenate(([0], changes))]).tolist() if len(values) else []


def _groups(keys):
    """Distinct keys, the index where each first occurs, and each element's group number;
    fast for keys that never decrease (the owner lines of outputs, in file order)."""
    if len(keys) and (np.diff(keys) < 0).any():
        return np.unique(keys, return_index=True, return_inverse=True)
    new = np.concatenate(([True], keys[1:] != keys[:-1])) if len(keys) else np.zeros(0, bool)
    first = np.flatnonzero(new)
    return keys[first], first, np.cumsum(new) - 1


def _floats(texts):
    """Numbers from texts; NaN for '' (a missing cell) and for text that is not a number."""
    texts = list(texts)
    try:
        return np.array(texts, dtype=np.float64)
    except ValueError:
        return np.array([_float(t) for t in texts], dtype=np.float64)


def _float(text):
    try:
        return float(text)
    except ValueError:
        return np.nan


@dataclass
class Table:
    """One of parse_log.py's tables: per row NumIters, Seconds, LearningRate, then outputs.

    `cells[i, j]` is the text Caffe printed for `columns[j]` in row i ('' where missing).
    """
    kind: str                       # "train"; "test" for test net #0, "test1" for #1, ...
    iters: np.ndarray
    seconds: np.ndarray
    lr: np.ndarray                  # text; '' where the log does not say
    columns: list
    cells: np.ndarray
    loss_columns: set = field(default_factory=set)     # printed with a loss weight
    counts: np.ndarray = None       # how many outputs each row has

    def values(self, column):
        """The column as float64 (NaN where missing)."""
        return _floats(self.cells[:, self.columns.index(column)])

    def lr_values(self):
        return _floats(self.lr)

    def is_loss(self, column):
        """Lower is better: printed with a loss weight, or named like a loss or an error
        (the last part of the name: GoogLeNet's accuracy is "loss1/top-1")."""
        last = column.rsplit("/", 1)[-1].lower()
        return column in self.loss_columns or "loss" in last or "error" in last

    def csv_text(self):
        """The table as parse_log.py writes it: csv.excel (CRLF line ends), header NumIters,
        Seconds, LearningRate, then the outputs."""
        def rows():
            return zip(map(str, self.iters.tolist()), map(repr, self.seconds.tolist()),
                       self.lr, *self.cells.T)

        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["NumIters", "Seconds", "LearningRate"] + self.columns)
        # Caffe's numbers never need quoting, so rows are joined directly (csv.writer takes
        # several times longer); text that would need quoting goes through csv.writer.
        body = "".join(map("{}\r\n".format, map(",".join, rows())))
        n = len(self.iters)
        if body.count(",") == n * (2 + len(self.columns)) and body.count("\n") == n \
                and body.count("\r") == n and '"' not in body:
            out.write(body)
        else:
            writer.writerows(rows())
        return out.getvalue()


@dataclass
class Curve:
    iters: np.ndarray
    seconds: np.ndarray
    texts: np.ndarray

    @cached_property
    def values(self):
        return _floats(self.texts)


@dataclass
class Series:
    """One training as the plot shows it: a run and the runs that resume it."""
    path: Path
    label: str
    train: Table
    tests: list                 # a Table per test net
    loss: Curve                 # the loss Caffe displays (smoothed over average_loss)
    lr: Curve                   # every "Iteration N, lr = R"
    average_loss: int = 1
    iter_size: int = 1
    resumed_at: list = field(default_factory=list)
    done: bool = False
    # the train outputs' "Z loss" terms: (display iterations, seconds, row of each term,
    # a function giving the terms' texts)
    loss_terms: tuple = field(default=None, repr=False)

    @cached_property
    def raw_loss(self):
        """Curve of each display's own loss: the sum of its train outputs' weighted loss
        terms Z (with iter_size > 1: of the last of its forward passes)."""
        iters, seconds, row, terms = self.loss_terms
        values = np.bincount(row, weights=_floats(terms()), minlength=len(iters))
        curve = Curve(iters, seconds, values.astype(str))
        curve.values = values
        return curve


@dataclass
class _Parse:
    """What reading one log builds up, stage by stage (read_log): the scanned solver lines and,
    per line, its run, the display or test line an output belongs to, the lr line of a display,
    and whether a resumed run replaced it."""
    path: Path
    raw: bytes
    lines: scan.SolverLines
    warn: Callable
    runs: list = None               # _Run per run, in the order they start
    run_of: np.ndarray = None       # the run of each solver line
    owner: np.ndarray = None        # output line -> its display/test line (-1: none)
    lr_of: np.ndarray = None        # display line -> its lr line (-1: none)
    alive: np.ndarray = None        # False where a resumed run replaced the line

    def where(self, index):
        """`path:line` of solver line `index`, for warnings."""
        line = self.raw.count(b"\n", 0, self.lines.offset[index]) + 1
        return f"{self.path}:{line}"


@dataclass
class _Run:
    tid: int
    first: int                  # index of its first solver line
    start: int                  # usec of its "Solving" line, else of its first line
    resume_file: str = None
    resume_line: int = None
    resume_iter: int = None
    done: bool = False
    snapshots: list = field(default_factory=list)
    params: dict = field(default_factory=dict)


def read_log(path, warn):
    """Reads a Caffe log into Series, one per independent training in the file.

    `warn(message)` receives every problem that is worked around (log cut off, processes
    interleaved, several runs, no test phase). A file that is not a Caffe training log is a
    CaffeFileError.
    """
    path = Path(path)
    raw = read_bytes(path)
    cut = bool(raw) and not raw.endswith(b"\n")
    if cut:
        raw = raw[:raw.rfind(b"\n") + 1]
    lines = scan.scan(raw)
    p = _Parse(path, raw, lines, warn)
    rows = lines.kind != EVENT
    if not rows.any():
        fatal = _FATAL.search(raw)
        if fatal:
            raise CaffeFileError(path, "no training iterations; Caffe stopped with: "
                                       + fatal.group(1).decode(errors="replace").strip())
        raise CaffeFileError(path, "not a Caffe training log (no 'Iteration N' lines of "
                                   "Caffe's solver after glog's prefix)")
    if cut:
        warn(f"{path}: the last line is incomplete (log cut off while being written); ignored")
    _runs(p)
    orphans = _attach(p)
    runs, run_of = p.runs, p.run_of
    garbled = lines.rejected + orphans
    if garbled > 0:
        warn(f"{path}: {garbled} solver line(s) garbled or without their 'Iteration' line "
             "(cut off, or written into each other); skipped")
    live = np.flatnonzero(np.bincount(run_of[rows], minlength=len(runs))).tolist()
    switches = int(np.count_nonzero(np.diff(lines.tid[rows])))
    if switches > len(live) - 1:
        tids = sorted({runs[r].tid for r in live})
        warn(f"{path}: lines of {len(tids)} training processes interleave (thread ids "
             f"{', '.join(map(str, tids))}); told apart by thread id")
    p.alive = np.ones(len(lines.kind), bool)
    groups = _join_resumed(p, live)
    series = []
    for n, group in enumerate(groups, 1):
        label = path.name if len(groups) == 1 else f"{path.name} (run {n})"
        series.append(_series(p, group, label))
    if len(groups) > 1:
        warn(f"{path}: {len(groups)} separate trainings in one file; shown as "
             + ", ".join(repr(s.label) for s in series))
    if not any(len(t.iters) for s in series for t in s.tests):
        warn(f"{path}: no test phase (no 'Test net output' lines); training curves only")
    return series


def _runs(p):
    """Sets p.runs (in the order they start) and p.run_of (the run of every solver line)."""
    lines, raw = p.lines, p.raw
    kind, n = lines.kind, len(lines.kind)
    is_row = kind != EVENT
    has_iter = (kind == DISPLAY) | (kind == LR) | (kind == TESTING)
    runs, run_of = [], np.empty(n, np.int64)
    for tid in _distinct(lines.tid):
        idx = np.flatnonzero(lines.tid == tid)
        rows_before = np.cumsum(is_row[idx]) - is_row[idx]
        it_lines = idx[has_iter[idx]]
        back = np.flatnonzero(np.diff(lines.iteration[it_lines]) < 0) + 1
        went_back = dict(zip(it_lines[back].tolist(), it_lines[back - 1].tolist()))
        specials = sorted(set(idx[kind[idx] == EVENT].tolist()) | set(went_back))
        tid_runs = []

        def open_run(j):
            tid_runs.append(_Run(tid, j, int(lines.usec[j])))
            return tid_runs[-1]

        current = open_run(int(idx[0]))
        pending = None                  # the line after "Optimization Done" starts a new run
        for j in specials:
            if pending is not None and pending <= j:
                current, pending = open_run(pending), None
            local = int(np.searchsorted(idx, j))
            first_local = int(np.searchsorted(idx, current.first))
            has_rows = rows_before[local] > rows_before[first_local]
            if j in went_back:
                if went_back[j] >= current.first:
                    p.warn(f"{p.where(j)}: the iteration goes back to {lines.iteration[j]} "
                           "without a new solver start; a new run")
                    current = open_run(j)
                continue
            event = lines.name[j]
            if event in _START_EVENTS:
                if has_rows or current.done:
                    current = open_run(j)
                if event == "Solving":
                    current.start = int(lines.usec[j])
                elif event.startswith("Initializing"):
                    current.params = _solver_dump(raw, int(lines.offset[j]))
                else:
                    current.resume_file, current.resume_line = lines.value[j], j
            elif event.startswith("Optimization"):
                current.done = True
                if local + 1 < len(idx):
                    pending = int(idx[local + 1])
            else:
                current.snapshots.append(Path(lines.value[j].split()[-1]).name)
        if pending is not None:
            open_run(pending)
        firsts = np.array([r.first for r in tid_runs])
        run_of[idx] = len(runs) + np.searchsorted(firsts, idx, side="right") - 1
        runs.extend(tid_runs)
    order = np.argsort([r.first for r in runs], kind="stable")
    renumber = np.empty(len(runs), np.int64)
    renumber[order] = np.arange(len(runs))
    p.runs, p.run_of = [runs[i] for i in order], renumber[run_of]


def _solver_dump(raw, offset):
    """average_loss and iter_size from the SolverParameter text printed after `offset`."""
    start = raw.find(b"\n", offset) + 1
    end = _GLOG_LINE.search(raw, start)
    dump = raw[start:end.start() if end else len(raw)]
    return {k.decode(): int(v) for k, v in _DUMP_FIELD.findall(dump)}


def _attach(p):
    """Sets p.owner (owner[i]: the display or test line whose row output line i belongs to,
    -1: none) and p.lr_of (lr_of[i]: the lr line of display line i, -1: none); returns the
    count of outputs without an owner."""
    lines, run_of = p.lines, p.run_of
    kind, n = lines.kind, len(lines.kind)
    owner = np.full(n, -1, np.int64)
    lr_of = np.full(n, -1, np.int64)
    for tid in _distinct(lines.tid):
        idx = np.flatnonzero(lines.tid == tid)
        k = kind[idx]
        heads = idx[(k == DISPLAY) | (k == TESTING)]
        outs = idx[(k == TRAIN_OUT) | (k == TEST_OUT)]
        at = np.searchsorted(heads, outs) - 1
        head = heads[np.maximum(at, 0)] if len(heads) else outs
        ok = (at >= 0) & (kind[head] == np.where(kind[outs] == TRAIN_OUT, DISPLAY, TESTING)) \
            & (run_of[head] == run_of[outs])
        owner[outs[ok]] = head[ok]
        displays = idx[k == DISPLAY]
        lrs = idx[k == LR]
        at = np.searchsorted(displays, lrs) - 1
        display = displays[np.maximum(at, 0)] if len(displays) else lrs
        ok = (at >= 0) & (lines.iteration[display] == lines.iteration[lrs]) \
            & (run_of[display] == run_of[lrs])
        lr_of[display[ok]] = lrs[ok]
    outputs = (kind == TRAIN_OUT) | (kind == TEST_OUT)
    p.owner, p.lr_of = owner, lr_of
    return int((outputs & (owner < 0)).sum())


def _join_resumed(p, live):
    """Groups the live runs into series: a resumed run continues the run that wrote its
    snapshot (or, when none in this file did, starts a series of its own); what the earlier
    runs logged from the snapshot's iteration on is marked dead in p.alive."""
    lines, runs, run_of = p.lines, p.runs, p.run_of
    groups = []
    has_iter = lines.iteration >= 0
    for r in live:
        run = runs[r]
        target = None
        if run.resume_file:
            name = Path(run.resume_file).name
            target = next((g for g in reversed(groups)
                           if any(name in runs[e].snapshots for e in g)), None)
        if target is None:
            groups.append([r])
            continue
        found = names.snapshot_iteration(run.resume_file)
        mine = lines.iteration[has_iter & (run_of == r)]
        run.resume_iter = found if found is not None else int(mine.min()) if len(mine) else 0
        superseded = np.isin(run_of, target) & has_iter & (lines.iteration >= run.resume_iter)
        p.alive &= ~superseded
        displays = int((superseded & (lines.kind == DISPLAY)).sum())
        tests = int((superseded & (lines.kind == TESTING)).sum())
        replaced = (f"; the earlier run's {displays} display(s) and {tests} test(s) from "
                    f"iteration {run.resume_iter} on are replaced by the resumed run's"
                    if displays or tests else "")
        p.warn(f"{p.where(run.resume_line)}: training resumed from {run.resume_file} at "
               f"iteration {run.resume_iter}{replaced}")
        target.append(r)
    return groups


def _series(p, group, label):
    """The Series of one group of runs (a training and the runs resuming it)."""
    lines, runs, owner, lr_of = p.lines, p.runs, p.owner, p.lr_of
    kind = lines.kind
    mine = np.isin(p.run_of, group) & p.alive
    start = runs[group[0]].start
    seconds = lambda idx: (lines.usec[idx] - start) / 1e6      # noqa: E731
    outputs = np.flatnonzero(((kind == TRAIN_OUT) | (kind == TEST_OUT)) & (owner >= 0))
    outputs = outputs[mine[owner[outputs]]]
    displays = np.flatnonzero(mine & (kind == DISPLAY))
    lrs = np.flatnonzero(mine & (kind == LR))
    lr_texts = lines.value[lrs]

    def display_lr(heads):
        at = lr_of[heads]
        return np.where(at >= 0, lines.value[np.maximum(at, 0)], "")

    def test_lr(heads):
        # the rate of the last update before the test; the first rate for a test at the start
        if not len(lrs):
            return np.full(len(heads), "", object)
        at = np.searchsorted(lines.iteration[lrs], lines.iteration[heads]) - 1
        return lr_texts[np.maximum(at, 0)]

    train = _table("train", lines, outputs[kind[outputs] == TRAIN_OUT], owner, seconds,
                   display_lr)
    test_heads = np.flatnonzero(mine & (kind == TESTING))
    test_outputs = outputs[kind[outputs] == TEST_OUT]
    nets = int(lines.net[test_heads].max()) + 1 if len(test_heads) else 0
    tests = [_table("test" if t == 0 else f"test{t}", lines,
                    test_outputs[lines.net[owner[test_outputs]] == t], owner, seconds, test_lr)
             for t in range(nets)]
    for table in [train] + tests:
        _warn_incomplete(p.path, label, table, p.warn)
    weighted = outputs[(kind[outputs] == TRAIN_OUT) & (lines.tail[outputs] >= 0)]
    heads, _, row = _groups(owner[weighted])
    params = next((runs[r].params for r in group if runs[r].params), {})
    return Series(
        p.path, label, train, tests,
        loss=Curve(lines.iteration[displays], seconds(displays), lines.value[displays]),
        lr=Curve(lines.iteration[lrs], seconds(lrs), lr_texts),
        average_loss=params.get("average_loss", 1), iter_size=params.get("iter_size", 1),
        resumed_at=[runs[r].resume_iter for r in group[1:]], done=runs[group[-1]].done,
        loss_terms=(lines.iteration[heads], seconds(heads), row,
                    lambda: lines.weighted(weighted)))


def _table(kind, lines, outputs, owner, seconds, lr_of_rows):
    """parse_log.py's table of the rows that have `outputs`, columns in output order."""
    heads, first, row = _groups(owner[outputs])
    names = lines.name[outputs]
    columns = list(dict.fromkeys(names.tolist()))
    index = {name: j for j, name in enumerate(columns)}
    col = np.fromiter(map(index.__getitem__, names.tolist()), np.int64, len(names))
    filled = np.zeros((len(heads), len(columns)), bool)
    filled[row, col] = True
    if filled.sum() < len(outputs):             # a name repeated within a row
        columns, col = _distinct_columns(lines, outputs, row)
    cells = np.full((len(heads), len(columns)), "", object)
    cells[row, col] = lines.value[outputs]
    loss_columns = {columns[j] for j in set(col[lines.tail[outputs] >= 0].tolist())}
    return Table(kind, lines.iteration[heads], seconds(outputs[first]), lr_of_rows(heads),
                 columns, cells, loss_columns, np.bincount(row, minlength=len(heads)))


def _distinct_columns(lines, outputs, row):
    """Columns when a row repeats a name (an output blob with several values): the repeats
    are named NAME_K after their output number K."""
    columns, index, col = [], {}, []
    seen = set()
    last_row = -1
    for r, name, position in zip(row.tolist(), lines.name[outputs].tolist(), outputs.tolist()):
        if r != last_row:
            seen, last_row = set(), r
        key = name if name not in seen else f"{name}_{lines.output[position]}"
        seen.add(name)
        if key not in index:
            index[key] = len(columns)
            columns.append(key)
        col.append(index[key])
    return columns, np.array(col, np.int64)


def _warn_incomplete(path, label, table, warn):
    if not len(table.iters):
        return
    counts = table.counts
    short = np.flatnonzero(counts < counts.max())
    if len(short):
        where = ", ".join(map(str, table.iters[short[:5]].tolist())) \
            + (" ..." if len(short) > 5 else "")
        warn(f"{path}: {label}: {len(short)} {table.kind} row(s) lack some of the "
             f"{counts.max()} outputs (log cut off?) at iteration {where}; left empty")
