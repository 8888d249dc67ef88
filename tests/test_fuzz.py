"""Property-based fuzzing of every reader and of the user commands (issue 11).

The generators (tests/support/fuzz.py) mutate real files - net prototxts, solvers,
caffemodels, packed pattern files, training logs, solverstates - and each input goes to the
commands that read it, run in this process as their scripts run them (sepnets.errors.cli):
netinfo, fix_pattern, quant_pattern (with --pack), unpack_pattern, plot_log, export_onnx and
the engine's `caffe` command (time, test, train; its data layers with their -data_workers and
-stage_data options), and to the readers of mean files (files.read_blobproto) and of snapshot
pairs (the resume check of sepnets.caffe.snapshots).
The property: a result, or the project's one-line error (exit 2) - never another exception,
and never more than DEADLINE for one input.

`make test` runs a fixed number of inputs per generator, derived from a fixed seed
(derandomize), about a minute in all on 2 cores; `make fuzz N=10000` runs N per generator,
`make fuzz N=10000 SEED=7` other inputs (any number).
"""
import os
from datetime import timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from sepnets.caffe import files, snapshots
from sepnets.caffe.proto import caffe_pb2
from sepnets.cli import export_onnx, fix_pattern, netinfo, plot_log, quant_pattern, unpack_pattern
from sepnets.engine import commands
from sepnets.errors import CaffeFileError
from tests.support import fuzz
from tests.support.models import model_for
from tests.support.project import NETS, run_command

try:
    EXAMPLES = int(os.environ.get("SEPNETS_FUZZ_EXAMPLES") or 0)
    SEED = int(os.environ.get("SEPNETS_FUZZ_SEED") or -1)
except ValueError:
    raise pytest.UsageError("make fuzz N=... SEED=...: N and SEED must be numbers") from None
DEADLINE = timedelta(seconds=10)     # one input, every command it goes to


def bounded(count):
    """Settings for one generator: `count` inputs (or make fuzz's N), derived from a fixed
    seed (or make fuzz's SEED, for other inputs), no example database written into the
    checkout, DEADLINE per input."""
    chosen = settings(max_examples=EXAMPLES or count, deadline=DEADLINE, derandomize=SEED < 0,
                      database=None, print_blob=True,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    return (lambda test: seed(SEED)(chosen(test))) if SEED >= 0 else chosen


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    # hypothesis caches what it learns of the source in its home directory: not the checkout
    set_hypothesis_home_dir(tmp_path_factory.mktemp("hypothesis"))
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(autouse=True)
def quiet_numpy():
    with np.errstate(all="ignore"):   # overflow warnings from hostile values are not the point
        yield


def check(main, argv, allowed=(0, 1, 2)):
    fuzz.check_outcome(run_command(main, [str(a) for a in argv]), allowed)


LENET = NETS / "engine" / "lenet.prototxt"
# the engine's data options a data net runs with (its worker processes, the staged database)
DATA_OPTIONS = (["-data_workers", "0"], ["-data_workers", "0"], ["-data_workers", "0", "-stage_data"],
                ["-data_workers", "1"])


def inputs(kind, d):
    """(strategy, file name, inputs in `make test`, the commands an input goes to: a function
    of its path (and of the options the strategy drew with it, for data nets) giving
    [(main, argv)])."""
    if kind == "data":   # a net reading real sources, with the options drawn for it
        (d / "data").mkdir(exist_ok=True)
        seed = fuzz.data_seed(d / "data")
        return (st.tuples(fuzz.net_texts([seed]), st.sampled_from(DATA_OPTIONS)), "data.prototxt",
                80, lambda p, options: [(commands.main, ["time", "-model", p, "-iterations", "1",
                                                          *options])])
    weights = d / "tiny.caffemodel"   # MODEL_NET's, for exporting nets mutated from it
    if kind == "net":
        files.write_model(weights, fuzz.valid_model())
    return {
        "net": (fuzz.net_texts(), "net.prototxt", 400, lambda p: [
            (netinfo.main, [p]), (netinfo.main, [p, "--phase", "TRAIN", "--json"]),
            (fix_pattern.main, ["--net", p, "--filter", "kxk", "--out-dir", d]),
            (commands.main, ["time", "-model", p, "-iterations", "1"]),
            (export_onnx.main, ["--net", p, "--weights", weights, "-o", d / "n.onnx"])]),
        "solver": (fuzz.solver_texts(LENET, d / "snap"), "solver.prototxt", 60, lambda p: [
            (fix_pattern.main, ["--net", LENET, "--solver", p, "--filter", "5x5", "--out-dir", d]),
            (commands.main, ["train", "-solver", p])]),
        "caffemodel": (fuzz.caffemodel_bytes(), "m.caffemodel", 700, lambda p: [
            (quant_pattern.main, ["--model", p, "--filter", "kxk", "--offset", "0.05", "--output",
                                  d / "q.caffemodel", "--pack", d / "q.pack"]),
            (quant_pattern.main, ["--model", p, "--filter", "3x3", "--scale", "mean", "--net",
                                  fuzz.MODEL_NET, "--output", d / "q.caffemodel"]),
            (netinfo.main, [fuzz.MODEL_NET, "--weights", p]),
            (commands.main, ["test", "-model", fuzz.MODEL_NET, "-weights", p, "-iterations", "1"]),
            (export_onnx.main, ["--net", fuzz.MODEL_NET, "--weights", p, "-o", d / "m.onnx",
                                "--bq"])]),   # patterns found (INT2), the other blobs 8-bit
        "packed": (fuzz.packed_bytes(), "m.pack", 1000, lambda p: [
            (unpack_pattern.main, [p, d / "u.caffemodel"])]),
        "log": (fuzz.log_texts(), "train.log", 800, lambda p: [
            (plot_log.main, [p, "--csv", d / "curves"])]),
    }[kind]


@pytest.mark.parametrize("kind", ["net", "data", "solver", "caffemodel", "packed", "log"])
def test_commands_on_damaged_files(scratch, monkeypatch, kind):
    """Net prototxts (the layer types of every seed, tests/nets/layer_zoo.prototxt's among
    them) through netinfo, fix_pattern, the engine's time (forward and backward) and
    export_onnx; nets of Data, ImageData and HDF5Data layers reading real sources through
    the engine's time with its data options; solvers through fix_pattern and the engine's
    train (at most 3 iterations); caffemodels (some patterned) through quant_pattern (with
    --pack, and checked against the net), netinfo --weights, the engine's test and
    export_onnx --bq; packed files through unpack_pattern; logs through
    plot_log."""
    monkeypatch.chdir(scratch)
    strategy, name, count, commands_of = inputs(kind, scratch)
    path = scratch / name

    @bounded(count)
    @given(strategy)
    def run(data):
        data, options = data if isinstance(data, tuple) else (data, None)
        path.write_bytes(data) if isinstance(data, bytes) else path.write_text(data)
        for main, argv in commands_of(path) if options is None else commands_of(path, options):
            check(main, argv)
    run()


def test_solverstates(scratch):
    """The resume check of a snapshot pair: a problem in a few words, or None - never an
    exception (the pipeline moves a damaged pair aside on it)."""
    net = files.read_net(NETS / "engine" / "lenet.prototxt")
    net.state.phase = caffe_pb2.TRAIN
    blobs = snapshots.net_blobs(net)
    history = [np.zeros(shape, np.float32) for shape in blobs.learnable]
    model = scratch / "s_iter_10.caffemodel"
    files.write_model(model, model_for(NETS / "engine" / "lenet.prototxt",
                                            lambda shape: np.zeros(shape, np.float32), "TRAIN"))
    state = scratch / "s_iter_10.solverstate"

    @bounded(800)
    @given(fuzz.solverstate_bytes(history), st.sampled_from(sorted(snapshots.HISTORY_PER_BLOB)))
    def run(data, solver_type):
        state.write_bytes(data)
        problem = snapshots.pair_problem(state, model, blobs, solver_type)
        assert problem is None or isinstance(problem, str) and "\n" not in problem
    run()


def test_binaryprotos(scratch):
    """Mean files through files.read_blobproto: an array, or a CaffeFileError."""
    path = scratch / "mean.binaryproto"

    @bounded(600)
    @given(fuzz.binaryproto_bytes())
    def run(data):
        path.write_bytes(data)
        try:
            assert isinstance(files.read_blobproto(path), np.ndarray)
        except CaffeFileError as err:
            assert "\n" not in str(err)
    run()
