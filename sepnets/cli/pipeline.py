"""tools/pipeline.py: the Makefile's train / quant / finetune / eval / plot / results / demo.

    python tools/pipeline.py train resnet20 [--engine torch] [--gpu 0]
    python tools/pipeline.py quant lenet --filter 5x5 --sweep 0.02:0.09:0.01
    python tools/pipeline.py finetune lenet --filter 5x5
    python tools/pipeline.py eval lenet --filter 5x5
    python tools/pipeline.py demo
"""
from sepnets.cli import flags
from sepnets.errors import ArgumentParser, UserError
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
    how.add_argument("--offset", type=float)
    how.add_argument("--sweep", metavar="START:STOP:STEP")
    flags.add_engine(p)
    for step, text in (("finetune", "fix-pattern files + caffe train --weights <patterned>"),
                       ("eval", "caffe test on the full, patterned and refined models")):
        p = sub.add_parser(step, help=text)
        p.add_argument("net")
        flags.add_selection(p)
        p.add_argument("--offset", help="which patterned model (default: the one the last "
                                        "`quant` made)")
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
    p.add_argument("--sweep", default=demo.SWEEP)
    flags.add_engine(p)
    return parser


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
    if args.step == "demo":
        demo.run(args.train_iters, args.finetune_iters, args.sweep, args.engine, args.gpu)
        return 0
    ws = workspace(args.net)
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
