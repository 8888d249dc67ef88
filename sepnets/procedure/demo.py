"""`make demo`: the whole procedure on LeNet and the real MNIST 5,000-image sample, offline, in
minutes — data, training, the 5x5 binarization with an offset sweep, frozen fine-tuning,
evaluation, the refined model exported to ONNX, curves and results.md, in models/demo/ and
logs/demo/."""
import math
import time

from sepnets import names, paths
from sepnets.caffe import files, netstate
from sepnets.caffe.db import iter_records
from sepnets.deploy.evaluate import export_evaluated
from sepnets.errors import UserError
from sepnets.patterns.selection import Selector, parse_filters
from sepnets.procedure import report, steps
from sepnets.procedure.workspace import Workspace, prototxt_dir, refined_model, rel, trained_model

TRAIN_ITERS = 1000
FINETUNE_ITERS = 500
SWEEP = "0.02:0.09:0.01"  # the authors' range
FILTER = "5x5"
ONNX_MODEL = "lenet_refined.onnx"  # in models/demo/


def workspace():
    return Workspace("demo", "lenet", paths.root() / "models" / "demo" / "solver.prototxt")


def write_solver(ws, train_iters, test_records):
    """models/demo/solver.prototxt: LeNet's solver on the demo's schedule."""
    param = files.read_solver(prototxt_dir() / "lenet" / "solver.prototxt")
    test_batch = next(layer.data_param.batch_size for layer in files.read_net(ws.train_val).layer
                      if layer.type == "Data" and any(r.phase == 1 for r in layer.include))
    param.max_iter = train_iters
    param.snapshot = train_iters
    param.test_interval = max(train_iters // 4, 1)
    del param.test_iter[:]
    param.test_iter.append(math.ceil(test_records / test_batch))  # the whole test set once
    param.display = 50
    param.snapshot_prefix = str(rel(ws.models / "lenet"))
    text = files.format_text(param)
    if ws.solver.exists() and ws.solver.read_text() != text:
        raise UserError(f"{rel(ws.models)} holds a demo run with another schedule; "
                        "remove models/demo and logs/demo to start over")
    files.make_dirs(ws.models)
    if not ws.solver.exists():
        files.write_text(ws.solver, param)


def test_batches(train_val, size=100):
    """(images, labels) of every record of the net's TEST Data layer database, in key order,
    in batches of `size`, each record transformed as Caffe's TEST phase does (the engine's
    input pipeline: sepnets.engine.data.database_batches)."""
    from sepnets.engine import data  # torch comes with the engine: only here
    layer = next(layer for layer in netstate.filter_net(files.read_net(train_val), "TEST").layer
                 if layer.type == "Data")
    yield from data.database_batches(layer, size)


def run(train_iters=TRAIN_ITERS, finetune_iters=FINETUNE_ITERS, sweep=SWEEP, engine="caffe",
        gpu=None):
    """The whole demo, holding models/demo/'s lock throughout (a second `make demo` stops at
    once instead of mixing its results with this one's)."""
    ws = workspace()
    with ws.hold():
        _run(ws, train_iters, finetune_iters, sweep, engine, gpu)


def _run(ws, train_iters, finetune_iters, sweep, engine, gpu):
    engine_name = "stock Caffe 1.0 (CPU)" if engine == "caffe" else "the PyTorch engine"
    stages = ["MNIST 5k -> LMDB", f"train LeNet, {train_iters} iterations ({engine_name})",
              f"pattern binarization of the 5x5 filters, offset sweep {sweep}",
              f"fine-tune {finetune_iters} iterations with the patterns fixed",
              "evaluate full / patterned / refined; the refined model to ONNX", "plots",
              "results.md"]
    start = time.time()

    def stage(i):
        print(f"\n[demo {i + 1}/{len(stages)}, {time.time() - start:.0f} s] {stages[i]}",
              flush=True)

    stage(0)
    test_db = paths.root() / names.mnist_db("test")
    if not test_db.is_dir():
        steps.run_logged(steps.tool("tools/prepare_mnist.py", "--out-dir", names.MNIST_DIR),
                         ws.log(names.DATA_LOG))
    else:
        print(f"{names.MNIST_DIR} exists")
    write_solver(ws, train_iters, sum(1 for _ in iter_records(test_db, "lmdb")))
    stage(1)
    steps.train(ws, engine, gpu, quiet=True)
    stage(2)
    selector = Selector(parse_filters([FILTER]))
    patterned = steps.quantize(ws, selector, sweep=sweep, engine=engine, gpu=gpu)
    stage(3)
    steps.finetune(ws, selector, patterned, engine, gpu, max_iter=finetune_iters, quiet=True)
    stage(4)
    models = {"full": trained_model(ws), "patterned": patterned,
              "refined": refined_model(ws, selector)}
    steps.evaluate(ws, models, engine, gpu)
    exported, top1 = export_evaluated(ws.deploy, rel(models["refined"]), rel(ws.models / ONNX_MODEL),
                                      test_batches(ws.train_val), ws.log(names.ONNX_JSON), "refined")
    print("\n".join(exported.lines()) + f"\nONNX Runtime accuracy on the test set: {top1:.4f}")
    stage(5)
    png = steps.plot(ws)
    stage(6)
    fix_solver = rel(ws.models / names.fine_tune_solver(selector.tag))
    path = report.write(ws, selector, "LeNet on the MNIST 5k sample: pattern binarization "
                                      "(make demo)", [
        f"`make demo`: {train_iters} training iterations of prototxt/lenet with LeNet's "
        f"solver (inv policy, base_lr 0.01), 4,000 training and 1,000 test images.",
        f"Offsets {sweep} tried on the test set; the best kept "
        f"({rel(ws.log(names.SWEEP_CSV))}).",
        f"Fine-tuning: {finetune_iters} iterations, base_lr halved, pattern layers at "
        f"lr_mult 0 / decay_mult 0 ({fix_solver}).",
        f"Logs: {rel(ws.logs)}/{names.TRAIN_LOG}, {names.FINETUNE_LOG}, {names.QUANT_LOG}; "
        f"curves: {rel(png)}.",
        f"Engine: {engine_name}; whole run {time.time() - start:.0f} s."])
    print(path.read_text())
    print(f"wrote {rel(path)} and {rel(png)} ({time.time() - start:.0f} s)")
