"""tools/pipeline.py: the Makefile's train / quant / finetune / eval / plot / results / demo.

    python tools/pipeline.py train resnet20 [--engine torch] [--gpu 0]
    python tools/pipeline.py quant lenet --filter 5x5 --sweep 0.02:0.09:0.01
    python tools/pipeline.py finetune lenet --filter 5x5
    python tools/pipeline.py eval lenet --filter 5x5
    python tools/pipeline.py demo
    python tools/pipeline.py make quant NET=lenet FILTER=5x5 OFFSET= SWEEP=0.02:0.09:0.01 ...
    python tools/pipeline.py make export NET=lenet FILTER=5x5 BQ=1   # tools/export_onnx.py --workspace

`make` is how the Makefile calls it: every make variable arrives as one NAME=VALUE argument,
is checked here (one line naming the variable when it is wrong) and becomes the flags above
(or export_onnx.py's, for `make export`).
"""
import shlex

from sepnets.caffe import engines
from sepnets.cli import export_onnx, flags
from sepnets.errors import ArgumentParser, UserError
from sepnets.patterns.selection import parse_filters
from sepnets.procedure import demo, report, steps
from sepnets.procedure.workspace import quantized_model, refined_model, rel, trained_model, workspace


def build_parser():
    parser = ArgumentParser(prog="pipeline.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("train", help="train NET from prototxt/NET/solver.prototxt (resumes)")
    p.add_argument("net")
    flags.add_engine(p)
    p = sub.add_parser("quant", help="quant_pattern.py on NET's newest snapshot")
    p.add_argument("net")
    flags.add_selection(p)
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--offset", type=flags.offset)
    how.add_argument("--sweep", metavar="START:STOP:STEP", type=flags.sweep)
    flags.add_engine(p)
    for step, text in (("finetune", "fix-pattern files + caffe train --weights <patterned>"),
                       ("eval", "caffe test on the full, patterned and refined models")):
        p = sub.add_parser(step, help=text)
        p.add_argument("net")
        flags.add_selection(p)
        p.add_argument("--offset", type=flags.offset,
                       help="which patterned model (default: the one the last `quant` made)")
        flags.add_engine(p)
    p = sub.add_parser("plot", help="loss and accuracy curves of NET's logs")
    p.add_argument("net")
    p.add_argument("--metric", help="test output to plot (default: every one)")
    p = sub.add_parser("results", help="logs/NET/results.md from the evaluation")
    p.add_argument("net")
    flags.add_selection(p)
    p = sub.add_parser("demo", help="the whole procedure on LeNet / MNIST 5k, offline")
    p.add_argument("--train-iters", type=int, default=demo.TRAIN_ITERS)
    p.add_argument("--finetune-iters", type=int, default=demo.FINETUNE_ITERS)
    p.add_argument("--sweep", default=demo.SWEEP, type=flags.sweep)
    flags.add_engine(p)
    p = sub.add_parser("make", help="a make target with its variables as NAME=VALUE (the Makefile's "
                                    "way in: every value checked, none run by a shell)")
    p.add_argument("target", choices=sorted(MAKE_TARGETS))
    p.add_argument("variables", nargs="*", metavar="NAME=VALUE")
    return parser


# the make variables each target reads (the Makefile passes exactly these)
RUN = ("ENGINE", "GPU")
MAKE_TARGETS = {"train": ("NET",) + RUN, "quant": ("NET", "FILTER", "OFFSET", "SWEEP") + RUN,
                "finetune": ("NET", "FILTER", "OFFSET") + RUN, "eval": ("NET", "FILTER", "OFFSET") + RUN,
                "plot": ("NET",), "results": ("NET", "FILTER"), "demo": RUN,
                "export": ("NET", "FILTER", "BQ")}
# the make targets another command runs: its name and main (their argv has no step name)
OTHER_COMMANDS = {"export": ("tools/export_onnx.py", export_onnx.main)}


def _checked(name, value, check):
    try:
        return check(value)
    except UserError as err:
        raise UserError(f"{name}={value!r}: {err}") from None


def _net(value):
    if not value or value != value.strip() or "/" in value or value.startswith("."):
        raise UserError("give a network directory of prototxt/, e.g. lenet or resnet20")
    workspace(value)
    return value


def make_argv(target, assignments):
    """The step's argv for a make target and its NAME=VALUE variables, each value checked
    (UserError naming the variable)."""
    values = {}
    for item in assignments:
        name, sep, value = item.partition("=")
        if not sep or name not in MAKE_TARGETS[target]:
            raise UserError(f"make {target}: unexpected variable {item!r} (it takes "
                            f"{', '.join(MAKE_TARGETS[target])})")
        values[name] = value
    get = values.get
    argv = [] if target in OTHER_COMMANDS else [target]
    if "NET" in MAKE_TARGETS[target]:
        net = _checked("NET", get("NET", "lenet"), _net)
        argv += ["--workspace", net] if target in OTHER_COMMANDS else [net]
    if "FILTER" in MAKE_TARGETS[target]:
        text = get("FILTER", "kxk")
        specs = _checked("FILTER", text, lambda v: parse_filters(v.split()))
        argv += ["--filter", *(spec.text for spec in specs)]
    offset = get("OFFSET", "")
    if offset:
        _checked("OFFSET", offset, flags.offset)
        argv += ["--offset", offset]
    if "SWEEP" in MAKE_TARGETS[target]:
        sweep = _checked("SWEEP", get("SWEEP", demo.SWEEP), flags.sweep)
        argv += [] if offset else ["--sweep", sweep]
    if "ENGINE" in MAKE_TARGETS[target]:
        argv += ["--engine", _checked("ENGINE", get("ENGINE", "caffe"), _engine)]
        if get("GPU"):
            argv += ["--gpu", _checked("GPU", get("GPU"), flags.gpu_list)]
    if "BQ" in MAKE_TARGETS[target]:
        argv += ["--bq"] if _checked("BQ", get("BQ", ""), _switch) else []
    return argv


def _switch(value):
    """A make variable that turns a flag on: BQ=1 (empty or 0: off)."""
    if value not in ("", "0", "1"):
        raise UserError("give 1 (on) or leave it empty")
    return value == "1"


def _engine(value):
    engines.check_engine(value)
    return value


def evaluate(ws, args):
    selector = flags.selector(args)
    models = {"full": trained_model(ws), "patterned": quantized_model(ws, selector, args.offset)}
    try:
        models["refined"] = refined_model(ws, selector)
    except UserError:
        print("(no fine-tuned model yet: evaluating full and patterned only)")
    return steps.evaluate(ws, models, args.engine, args.gpu)


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.step == "make":
        argv = make_argv(args.target, args.variables)
        tool, command = OTHER_COMMANDS.get(args.target, ("tools/pipeline.py", None))
        print(f"+ {tool} " + " ".join(shlex.quote(a) for a in argv), flush=True)
        if command:
            return command(argv)
        args = build_parser().parse_args(argv)
    if args.step == "demo":
        demo.run(args.train_iters, args.finetune_iters, args.sweep, args.engine, args.gpu)
        return 0
    ws = workspace(args.net)
    if args.step in ("train", "quant", "finetune", "eval"):
        with ws.hold():   # one run per workspace, from the first file it reads
            return _step(ws, args)
    return _step(ws, args)


def _step(ws, args):
    if args.step == "train":
        steps.check_data(ws)
        print(f"trained: {rel(steps.train(ws, args.engine, args.gpu))}")
    elif args.step == "quant":
        model = steps.quantize(ws, flags.selector(args), args.offset, args.sweep, args.engine,
                               args.gpu)
        print(f"patterned: {rel(model)}")
    elif args.step == "finetune":
        selector = flags.selector(args)
        patterned = quantized_model(ws, selector, args.offset)
        model = steps.finetune(ws, selector, patterned, args.engine, args.gpu)
        print(f"refined: {rel(model)}")
    elif args.step == "eval":
        evaluate(ws, args)
    elif args.step == "plot":
        print(f"wrote {rel(steps.plot(ws, args.metric))}")
    elif args.step == "results":
        path = report.write(ws, flags.selector(args), f"{ws.net}: pattern binarization")
        print(path.read_text())
    return 0
