"""tools/pipeline.py: the Makefile's train / quant / finetune / eval / plot / results / demo.

    python tools/pipeline.py train resnet20 [--engine torch] [--gpu 0]
    python tools/pipeline.py quant lenet --filter 5x5 --sweep 0.02:0.09:0.01
    python tools/pipeline.py finetune lenet --filter 5x5
    python tools/pipeline.py eval lenet --filter 5x5
    python tools/pipeline.py demo
"""
import math
import sys
import time
from pathlib import Path

from sepnets import caffeio, pipeline, report, selection
from sepnets.errors import ArgumentParser, UserError

DEMO_TRAIN_ITERS = 1000
DEMO_FINETUNE_ITERS = 500
DEMO_SWEEP = "0.02:0.09:0.01"  # the authors' range
DEMO_FILTER = "5x5"


def add_common(parser):
    parser.add_argument("--engine", choices=["caffe", "torch"], default="caffe",
                        help="stock Caffe (default) or the PyTorch engine")
    parser.add_argument("--gpu", help="passed to caffe as --gpu (a CUDA build or the engine)")


def build_parser():
    parser = ArgumentParser(prog="pipeline.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("train", help="train NET from prototxt/NET/solver.prototxt (resumes)")
    p.add_argument("net")
    add_common(p)
    p = sub.add_parser("quant", help="quant_pattern.py on NET's newest snapshot")
    p.add_argument("net")
    selection.add_arguments(p)
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--offset", type=float)
    how.add_argument("--sweep", metavar="START:STOP:STEP")
    add_common(p)
    p = sub.add_parser("finetune", help="fix-pattern files + caffe train --weights <patterned>")
    p.add_argument("net")
    selection.add_arguments(p)
    p.add_argument("--offset", help="which patterned model (default: the newest)")
    add_common(p)
    p = sub.add_parser("eval", help="caffe test on the full, patterned and refined models")
    p.add_argument("net")
    selection.add_arguments(p)
    p.add_argument("--offset", help="which patterned model (default: the newest)")
    add_common(p)
    p = sub.add_parser("plot", help="loss and accuracy curves of NET's logs")
    p.add_argument("net")
    p.add_argument("--metric", help="test output to plot (default: every one)")
    p = sub.add_parser("results", help="logs/NET/results.md from the evaluation")
    p.add_argument("net")
    selection.add_arguments(p)
    p = sub.add_parser("demo", help="the whole procedure on LeNet / MNIST 5k, offline")
    p.add_argument("--train-iters", type=int, default=DEMO_TRAIN_ITERS)
    p.add_argument("--finetune-iters", type=int, default=DEMO_FINETUNE_ITERS)
    p.add_argument("--sweep", default=DEMO_SWEEP)
    add_common(p)
    return parser


def plot(ws, metric=None):
    logs = [ws.logs / name for name in ("train.log", "finetune.log") if (ws.logs / name).exists()]
    if not logs:
        raise UserError(f"no logs in {pipeline.rel(ws.logs)}: train {ws.net} first")
    out = ws.logs / "curves.png"
    argv = [sys.executable, pipeline.REPO / "tools" / "plot_log.py", *map(pipeline.rel, logs),
            "-o", pipeline.rel(out), "--csv", pipeline.rel(ws.logs / "curves.csv")]
    if metric:
        argv += ["--metric", metric]
    pipeline.run_logged(argv, ws.logs / "plot.log")
    return out


def evaluate(ws, args, offset=None):
    models = {"full": pipeline.trained_model(ws)}
    selector = selection.from_args(args)
    models["patterned"] = pipeline.quantized_model(ws, selector, offset)
    try:
        models["refined"] = pipeline.refined_model(ws, selector)
    except UserError:
        print("(no fine-tuned model yet: evaluating full and patterned only)")
    return pipeline.evaluate(ws, models, args.engine, args.gpu)


# ---------------------------------------------------------------- the demo

def demo_solver(ws, train_iters, test_records):
    """models/demo/solver.prototxt: LeNet's solver on the demo's schedule."""
    param = caffeio.read_solver(pipeline.prototxt_dir() / "lenet" / "solver.prototxt")
    test_batch = next(l.data_param.batch_size for l in caffeio.read_net(ws.train_val).layer
                      if l.type == "Data" and any(r.phase == 1 for r in l.include))
    param.max_iter = train_iters
    param.snapshot = train_iters
    param.test_interval = max(train_iters // 4, 1)
    del param.test_iter[:]
    param.test_iter.append(math.ceil(test_records / test_batch))  # the whole test set once
    param.display = 50
    param.snapshot_prefix = str(pipeline.rel(ws.models / "lenet"))
    text = caffeio.format_text(param)
    if ws.solver.exists() and ws.solver.read_text() != text:
        raise UserError(f"{pipeline.rel(ws.models)} holds a demo run with another schedule; "
                        "remove models/demo and logs/demo to start over")
    ws.models.mkdir(parents=True, exist_ok=True)
    if not ws.solver.exists():
        caffeio.write_text(ws.solver, param)


def count_records(source):
    from sepnets.db import iter_records
    return sum(1 for _ in iter_records(source, "lmdb"))


def demo(args):
    ws = pipeline.Workspace("demo", "lenet", pipeline.root() / "models" / "demo" / "solver.prototxt")
    engine = "stock Caffe 1.0 (CPU)" if args.engine == "caffe" else "the PyTorch engine"
    steps = ["MNIST 5k -> LMDB", f"train LeNet, {args.train_iters} iterations ({engine})",
             f"pattern binarization of the 5x5 filters, offset sweep {args.sweep}",
             f"fine-tune {args.finetune_iters} iterations with the patterns fixed",
             "evaluate full / patterned / refined", "plots", "results.md"]
    start = time.time()

    def step(i):
        print(f"\n[demo {i + 1}/{len(steps)}, {time.time() - start:.0f} s] {steps[i]}", flush=True)

    step(0)
    mnist = pipeline.root() / "data" / "mnist"
    if not (mnist / "mnist_test_lmdb").is_dir():
        pipeline.run_logged([sys.executable, pipeline.REPO / "tools" / "prepare_mnist.py",
                             "--out-dir", "data/mnist"],
                            ws.logs / "data.log")
    else:
        print("data/mnist exists")
    demo_solver(ws, args.train_iters, count_records(mnist / "mnist_test_lmdb"))
    step(1)
    pipeline.train(ws, args.engine, args.gpu, quiet=True)
    step(2)
    selector = selection.Selector(selection.parse_filters([DEMO_FILTER]))
    patterned = pipeline.quantize(ws, selector, sweep=args.sweep, engine=args.engine,
                                  gpu=args.gpu, sweep_csv=ws.logs / "sweep.csv")
    step(3)
    pipeline.finetune(ws, selector, patterned, args.engine, args.gpu,
                      max_iter=args.finetune_iters, quiet=True)
    step(4)
    models = {"full": pipeline.trained_model(ws), "patterned": patterned,
              "refined": pipeline.refined_model(ws, selector)}
    pipeline.evaluate(ws, models, args.engine, args.gpu)
    step(5)
    png = plot(ws)
    step(6)
    path = report.write(ws, selector, "LeNet on the MNIST 5k sample: pattern binarization (make demo)", [
        f"`make demo`: {args.train_iters} training iterations of prototxt/lenet with LeNet's "
        f"solver (inv policy, base_lr 0.01), 4,000 training and 1,000 test images.",
        f"Offsets {args.sweep} tried on the test set; the best kept (logs/demo/sweep.csv).",
        f"Fine-tuning: {args.finetune_iters} iterations, base_lr halved, pattern layers at "
        "lr_mult 0 / decay_mult 0 (models/demo/solver_fix_5x5_pattern.prototxt).",
        f"Logs: logs/demo/train.log, finetune.log, quant.log; curves: {pipeline.rel(png)}.",
        f"Engine: {engine}; whole run {time.time() - start:.0f} s."])
    print(path.read_text())
    print(f"wrote {pipeline.rel(path)} and {pipeline.rel(png)} ({time.time() - start:.0f} s)")


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.step == "demo":
        return demo(args) or 0
    ws = pipeline.workspace(args.net)
    if args.step == "train":
        pipeline.check_data(ws)
        model = pipeline.train(ws, args.engine, args.gpu)
        print(f"trained: {pipeline.rel(model)}")
    elif args.step == "quant":
        model = pipeline.quantize(ws, selection.from_args(args), args.offset, args.sweep,
                                  args.engine, args.gpu,
                                  sweep_csv=ws.logs / "sweep.csv" if args.sweep else None)
        print(f"patterned: {pipeline.rel(model)}")
    elif args.step == "finetune":
        selector = selection.from_args(args)
        patterned = pipeline.quantized_model(ws, selector, args.offset)
        model = pipeline.finetune(ws, selector, patterned, args.engine, args.gpu)
        print(f"refined: {pipeline.rel(model)}")
    elif args.step == "eval":
        evaluate(ws, args, args.offset)
    elif args.step == "plot":
        print(f"wrote {pipeline.rel(plot(ws, args.metric))}")
    elif args.step == "results":
        print(report.write(ws, selection.from_args(args), f"{ws.net}: pattern binarization").read_text())
    return 0
