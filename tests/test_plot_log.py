"""plot_log.py and the Caffe log parser: the authors' real log, agreement with Caffe's own
parse_log.py, logs written by stock Caffe, and damaged or unusual logs (generated)."""
import csv
from datetime import datetime

import numpy as np
import pytest
from PIL import Image

from sepnets.errors import CaffeFileError
from sepnets.trainlog import parse
from tests.support import parse_log_ref
from tests.support.project import NETS, run_tool
from tests.support.synthlog import GOOGLENET_TEST, GOOGLENET_TRAIN, LogWriter, training_log

AUTHORS_LOG = "resnet20_train_third_version_cifar10.log"
RESNET_OUT = (("acctop1", 0), ("acctop5", 0), ("loss", 1))


def read(path):
    warnings = []
    return parse.read_log(path, warnings.append), warnings


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def small_log(log=None, **kw):
    """A short ResNet-like run: displays every 100, tests every 200, up to 600."""
    args = dict(iterations=600, display=100, test_interval=200, train_outputs=RESNET_OUT,
                test_nets=[RESNET_OUT])
    args.update(kw)
    return training_log(log or LogWriter(), **args)


def column(table, name):
    return table.cells[:, table.columns.index(name)].tolist()


# ---------------------------------------------------------------- the authors' real log

@pytest.fixture(scope="module")
def authors_series(authors):
    return read(authors / AUTHORS_LOG)


def test_authors_log_final_test_and_learning_rate_steps(authors_series):
    (series,), warnings = authors_series
    test = series.tests[0]
    assert test.columns == ["acctop1", "acctop5", "loss"]
    assert test.iters[-1] == 80000
    assert column(test, "acctop1")[-1] == "0.9118" and column(test, "acctop5")[-1] == "0.9974"
    lr = series.train.lr_values()
    iters = series.train.iters
    assert set(lr[iters < 48000]) == {0.1}
    assert set(lr[(iters >= 48000) & (iters < 64000)]) == {0.01}
    assert set(lr[iters >= 64000]) == {0.001}
    # the log holds two runs: the second resumes from the 50000 snapshot after the first
    # had reached 52900; what the first logged from 50000 on is replaced
    assert series.resumed_at == [50000] and series.done
    assert list(iters) == list(range(0, 80000, 100))
    assert list(test.iters) == list(range(0, 80001, 1000))
    assert len(warnings) == 1 and "resumed from model/ResNet20_highway_padded_data_iter_50000" \
        ".solverstate at iteration 50000" in warnings[0] and ":13152:" in warnings[0]


def test_authors_log_cli_figure_csv_and_summary(authors, tmp_path):
    out = tmp_path / "resnet20.png"
    proc = run_tool("tools/plot_log.py", authors / AUTHORS_LOG, "-o", out,
                    "--csv", tmp_path / "resnet20.csv")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"{AUTHORS_LOG}: iterations up to 80000, 801 displays, 81 tests, "
                               "5:38:44 wall clock, resumed at 50000, finished")
    assert "  lr: 0.1 from 0 -> 0.01 from 48000 -> 0.001 from 64000" in lines
    assert "  test acctop1: final 0.9118 at 80000, best 0.9141 at 70000 (highest)" in lines
    assert "  test acctop5: final 0.9974 at 80000, best 0.9976 at 73000 (highest)" in lines
    assert "  test loss: final 0.370212 at 80000, best 0.318045 at 51000 (lowest)" in lines
    assert proc.stderr.count("warning") == 1
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size[0] >= 1200 and image.size[1] >= 700
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 10                      # drawn, not blank
    assert (tmp_path / "resnet20.train.csv").exists() and (tmp_path / "resnet20.test.csv").exists()


def parse_log_segments(rows):
    """parse_log.py's rows split where the iteration goes back (a new run)."""
    segments, last = [[]], -1
    for row in rows:
        if float(row["NumIters"]) < last:
            segments.append([])
        segments[-1].append(row)
        last = float(row["NumIters"])
    return segments


def test_csv_agrees_with_caffes_parse_log(authors, tmp_path):
    script = parse_log_ref.extract(tmp_path)
    theirs_train, theirs_test = parse_log_ref.run(script, authors / AUTHORS_LOG, tmp_path)
    proc = run_tool("tools/plot_log.py", authors / AUTHORS_LOG, "--csv", tmp_path / "ours")
    assert proc.returncode == 0, proc.stderr
    for kind, theirs in (("train", theirs_train), ("test", theirs_test)):
        with open(tmp_path / f"ours.{kind}.csv", newline="") as f:
            ours = list(csv.DictReader(f))
        assert list(ours[0]) == list(theirs[0]) == \
            ["NumIters", "Seconds", "LearningRate", "acctop1", "acctop5", "loss"]
        # parse_log.py keeps the first run's rows that the resumed run replaces
        first, resumed = parse_log_segments(theirs)
        kept = [r for r in first if float(r["NumIters"]) < 50000]
        replaced = len(first) - len(kept)
        assert replaced == (30 if kind == "train" else 3)
        assert len(ours) == len(kept) + len(resumed)
        for mine, their in zip(ours, kept + resumed):
            for name in ("NumIters", "Seconds", "acctop1", "acctop5", "loss"):
                assert float(mine[name]) == float(their[name]), (kind, name, mine, their)
        if kind == "test":
            assert [float(r["LearningRate"]) for r in ours] == \
                [float(r["LearningRate"]) for r in kept + resumed]
        else:
            # ours: the rate of the row's own iteration ("Iteration N, lr = R" comes after
            # the outputs); parse_log.py gives the previous display's, one display late
            for segment, rows in ((kept, ours[:len(kept)]), (resumed, ours[len(kept):])):
                assert [float(r["LearningRate"]) for r in rows[:-1]] == \
                    [float(r["LearningRate"]) for r in segment[1:]]
            lr_at = {int(r["NumIters"]): float(r["LearningRate"]) for r in ours}
            assert lr_at[47900] == 0.1 and lr_at[48000] == 0.01 and lr_at[64000] == 0.001


# ---------------------------------------------------------------- stock Caffe's own output

SOLVER = """train_net: "{net}"
test_net: "{net}"
test_net: "{net}"
test_iter: 2
test_iter: 3
test_interval: 10
base_lr: 0.05
lr_policy: "step"
stepsize: 15
gamma: 0.5
display: 1
average_loss: 3
max_iter: 30
snapshot: 20
snapshot_prefix: "snap"
solver_mode: CPU
"""


def test_stock_caffe_log_smoothed_loss_two_test_nets_and_resume(stock, tmp_path):
    (tmp_path / "solver.prototxt").write_text(SOLVER.format(net=NETS / "tiny_train.prototxt"))
    first = stock.run_caffe(["train", "--solver", "solver.prototxt"], cwd=tmp_path)
    again = stock.run_caffe(["train", "--solver", "solver.prototxt",
                             "--snapshot", "snap_iter_20.solverstate"], cwd=tmp_path)
    log = write(tmp_path, "train.log", first.stderr + again.stderr)
    (series,), warnings = read(log)
    assert series.resumed_at == [20] and series.done and series.average_loss == 3
    assert any("resumed from snap_iter_20.solverstate at iteration 20" in w for w in warnings)
    assert [t.kind for t in series.tests] == ["test", "test1"]
    assert [list(t.iters) for t in series.tests] == [[0, 10, 20, 30]] * 2
    assert list(series.train.iters) == list(range(30))
    lr = dict(zip(series.lr.iters.tolist(), series.lr.values.tolist()))
    assert lr[14] == 0.05 and lr[15] == 0.025
    # what Caffe displays as "loss" is the mean of the last average_loss iterations' own
    # losses (each the sum of the weighted loss outputs), restarted when a run starts
    own = dict(zip(series.raw_loss.iters.tolist(), series.raw_loss.values.tolist()))
    shown = dict(zip(series.loss.iters.tolist(), series.loss.values.tolist()))
    for it in list(range(2, 20)) + list(range(22, 30)):
        mean = np.mean([own[it - 2], own[it - 1], own[it]])
        assert shown[it] == pytest.approx(mean, rel=2e-5, abs=1e-6), it
    assert shown[20] == pytest.approx(own[20], rel=2e-5)     # the resumed run's first


# ---------------------------------------------------------------- damaged and unusual logs

def test_truncated_log(tmp_path):
    text = small_log().text()
    cut = text.index("Test net output #1", text.index("Iteration 400, Testing")) + 10
    (series,), warnings = read(write(tmp_path, "cut.log", text[:cut]))
    assert any("last line is incomplete" in w for w in warnings)
    assert any("1 test row(s) lack some of the 3 outputs" in w and "at iteration 400" in w
               for w in warnings)
    test = series.tests[0]
    assert list(test.iters) == [0, 200, 400] and list(test.cells[-1][1:]) == ["", ""]
    assert list(series.train.iters) == [0, 100, 200, 300] and not series.done


def test_interleaved_processes_are_told_apart(tmp_path):
    a = small_log(log=LogWriter(tid=2203), seed=1)
    b = small_log(log=LogWriter(tid=4242, start=datetime(2017, 4, 18, 16, 30, 50)), seed=2,
                  old_format=True)
    mixed = [line for pair in zip(a.lines, b.lines) for line in pair]
    mixed += a.lines[len(b.lines):] + b.lines[len(a.lines):]
    both, warnings = read(write(tmp_path, "mixed.log", "\n".join(mixed) + "\n"))
    assert any("lines of 2 training processes interleave (thread ids 2203, 4242)" in w
               for w in warnings)
    assert [s.label for s in both] == ["mixed.log (run 1)", "mixed.log (run 2)"]
    for series, writer in zip(both, (a, b)):
        assert list(series.train.iters) == [d[0] for d in writer.displays]
        assert column(series.train, "acctop1") == [d[2]["acctop1"] for d in writer.displays]
        assert list(series.train.lr) == [d[3] for d in writer.displays]
        assert column(series.tests[0], "loss") == [t[2]["loss"] for t in writer.tests]
        assert list(series.loss.texts[:-1]) == [d[1] for d in writer.displays]


def test_several_runs_and_a_resumed_one_in_one_file(tmp_path):
    log = small_log(snapshot=200, prefix="snaps/net")
    small_log(log=log, prefix="finetune")                       # a second, fresh training
    small_log(log=log, first=400, resume="snaps/net_iter_400.solverstate", prefix="snaps/net",
              seed=5)                                           # resumes the first
    (first, second), warnings = read(write(tmp_path, "runs.log", log.text()))
    assert [s.label for s in (first, second)] == ["runs.log (run 1)", "runs.log (run 2)"]
    assert first.resumed_at == [400] and second.resumed_at == []
    assert list(first.train.iters) == [0, 100, 200, 300, 400, 500]
    resumed_loss = [d[2]["loss"] for d in log.displays if d[0] >= 400][-2:]
    assert column(first.train, "loss")[-2:] == resumed_loss
    assert any("2 separate trainings in one file" in w for w in warnings)
    # 400, 500 and the forward-only display at 600; the tests at 400 and 600
    assert any("the earlier run's 3 display(s) and 2 test(s) from iteration 400" in w
               for w in warnings)


def test_no_test_phase(tmp_path):
    path = write(tmp_path, "notest.log", small_log(test_nets=[]).text())
    proc = run_tool("tools/plot_log.py", path, "-o", tmp_path / "notest.png",
                    "--csv", tmp_path / "notest")
    assert proc.returncode == 0, proc.stderr
    assert "warning: " in proc.stderr and "no test phase" in proc.stderr
    assert (tmp_path / "notest.train.csv").exists() and not (tmp_path / "notest.test.csv").exists()
    assert (tmp_path / "notest.png").stat().st_size > 10000


def test_new_years_night_and_year_in_prefix(tmp_path):
    for year_in_prefix in (False, True):
        writer = LogWriter(start=datetime(2016, 12, 31, 23, 58, 0), year_in_prefix=year_in_prefix)
        log = small_log(log=writer, seconds=30.0, test_nets=[])
        assert ("I20170101 " if year_in_prefix else "I0101 ") in log.text()
        (series,), _ = read(write(tmp_path, "newyear.log", log.text()))
        assert np.allclose(np.diff(series.train.seconds), 30, atol=1e-4)


def test_googlenet_outputs_two_test_nets_old_format_and_crlf(tmp_path):
    log = small_log(train_outputs=GOOGLENET_TRAIN, test_nets=[GOOGLENET_TEST, RESNET_OUT],
                    old_format=True)
    path = tmp_path / "googlenet.log"
    path.write_bytes(log.text().replace("\n", "\r\n").encode())
    (series,), warnings = read(path)
    assert warnings == []
    assert series.train.columns == [n for n, _ in GOOGLENET_TRAIN]
    assert series.tests[0].columns == [n for n, _ in GOOGLENET_TEST] and len(GOOGLENET_TEST) == 9
    assert series.tests[1].columns == ["acctop1", "acctop5", "loss"]
    assert series.tests[0].loss_columns == {"loss1/loss1", "loss2/loss2", "loss3/loss3"}
    for name, _ in GOOGLENET_TEST:
        assert column(series.tests[0], name) == [t[2][name] for t in log.tests if t[1] == 0]
    proc = run_tool("tools/plot_log.py", path, "--metric", "loss3/top-1", "--metric", "acctop1",
                    "-o", tmp_path / "g.svg", "--x", "seconds")
    assert proc.returncode == 0, proc.stderr
    assert "  test #0 loss3/top-5: final" in proc.stdout and "  test #1 acctop1: final" in proc.stdout
    # GoogLeNet's accuracies are named loss1/top-1 ...: best is the highest
    assert all(line.endswith("(highest)") == ("top-" in line or "acc" in line)
               for line in proc.stdout.splitlines() if line.startswith("  test"))
    assert (tmp_path / "g.svg").read_text().lstrip().startswith("<?xml")


def test_overlaid_logs_write_one_csv_set_each(tmp_path):
    train = write(tmp_path, "train.log", small_log().text())
    finetune = write(tmp_path, "finetune.log", small_log(seed=3).text())
    proc = run_tool("tools/plot_log.py", train, finetune, "-o", tmp_path / "both.png",
                    "--csv", tmp_path / "out.csv")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("train.log: ") and "\nfinetune.log: " in proc.stdout
    for name in ("out.train.log.train.csv", "out.train.log.test.csv",
                 "out.finetune.log.train.csv", "out.finetune.log.test.csv"):
        assert (tmp_path / name).read_text().startswith("NumIters,Seconds,LearningRate,acctop1")


@pytest.mark.parametrize("case", ["missing", "prototxt", "binary", "fatal", "metric", "format",
                                  "directory"])
def test_errors_are_one_line(tmp_path, case):
    log = write(tmp_path, "ok.log", small_log().text())
    argv, expected = {
        "missing": ([tmp_path / "nope.log"], "nope.log: no such file"),
        "prototxt": ([NETS / "tiny.prototxt"], "tiny.prototxt: not a Caffe training log"),
        "binary": ([write(tmp_path, "x.caffemodel", "\x00\x01\x02" * 50)], "not a Caffe training log"),
        "fatal": ([write(tmp_path, "f.log", LogWriter().text() + "F0418 16:30:47.000000  2203 "
                         "net.cpp:757] Check failed: x == y\n")],
                  "no training iterations; Caffe stopped with: Check failed: x == y"),
        "metric": ([log, "--metric", "acctop9"], "--metric acctop9: no such output"),
        "format": ([log, "-o", tmp_path / "x.doc"], "unknown figure format '.doc'"),
        "directory": ([log, "--csv", tmp_path / "no" / "out"], "output directory"),
    }[case]
    proc = run_tool("tools/plot_log.py", *argv)
    assert proc.returncode == 2 and expected in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_input_is_never_overwritten(tmp_path):
    text = small_log().text()
    log = write(tmp_path, "run.train.csv", text)              # a log named like a table
    proc = run_tool("tools/plot_log.py", log, "--csv", tmp_path / "run")
    assert proc.returncode == 2 and "refusing to overwrite an input" in proc.stderr
    assert log.read_text() == text


def test_not_a_log_error_names_the_file(tmp_path):
    with pytest.raises(CaffeFileError, match="empty.log: not a Caffe training log"):
        parse.read_log(write(tmp_path, "empty.log", ""), print)


def test_csv_quotes_text_that_needs_it():
    table = parse.Table("train", np.array([0, 10]), np.array([0.5, 1.25]),
                           np.array(["0.1", "0.1"], object), ["acc,top1", "loss"],
                           np.array([["0.5", "1,5"], ["0.75", "2"]], object))
    rows = list(csv.reader(table.csv_text().splitlines()))
    assert rows == [["NumIters", "Seconds", "LearningRate", "acc,top1", "loss"],
                    ["0", "0.5", "0.1", "0.5", "1,5"], ["10", "1.25", "0.1", "0.75", "2"]]


def test_repeated_names_and_many_outputs(tmp_path):
    # an output blob with three values prints its name three times (#0, #1, #2)
    outputs = [("per_class", 0)] * 3 + [(f"class{k}/acc", 0) for k in range(32)] + [("loss", 1)]
    log = small_log(test_nets=[outputs])
    path = write(tmp_path, "many.log", log.text())
    (series,), _ = read(path)
    assert series.tests[0].columns[:4] == ["per_class", "per_class_1", "per_class_2", "class0/acc"]
    assert len(series.tests[0].columns) == 36
    proc = run_tool("tools/plot_log.py", path, "-o", tmp_path / "many.png")
    assert proc.returncode == 0, proc.stderr
    # 36 test outputs and the train net's acctop1, acctop5
    assert "38 outputs: the figure shows the first 30; choose others with --metric" in proc.stderr
    with Image.open(tmp_path / "many.png") as image:
        assert image.size[1] < 4000
