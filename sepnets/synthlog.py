"""Writes training logs line for line as stock Caffe 1.0 prints them (glog prefix, solver.cpp
and sgd_solver.cpp messages), from values the caller chooses: input for the log parser's
tests and benchmark where a real run would be too long (200k iterations) or cannot produce
the case (a log cut off mid-line, two processes writing one file, a new year's night)."""
import math
import random
from datetime import datetime, timedelta


def caffe_float(value):
    """A float as C++'s ostream prints it by default (6 significant digits; glibc's -nan)."""
    if math.isnan(value):
        return "-nan" if math.copysign(1, value) < 0 else "nan"
    return f"{value:g}"


class LogWriter:
    """Appends glog lines to `self.lines`; the clock advances by the seconds each call says."""

    def __init__(self, start=datetime(2017, 4, 18, 16, 30, 46, 830205), tid=2203,
                 year_in_prefix=False):
        self.now = start
        self.tid = tid
        self.year_in_prefix = year_in_prefix
        self.lines = []

    def line(self, source, message, after=0.0, severity="I"):
        self.now += timedelta(seconds=after)
        date = self.now.strftime("%Y%m%d" if self.year_in_prefix else "%m%d")
        self.lines.append(f"{severity}{date} {self.now:%H:%M:%S.%f} {self.tid:5d} {source}] "
                          f"{message}")

    def raw(self, text):
        """A line without glog's prefix (the solver parameter dump, a shell's message)."""
        self.lines.append(text)

    def start(self, net_name="net", solver_text="base_lr: 0.01\ndisplay: 20\n", resume=None,
              setup_lines=0):
        """What `caffe train` prints before the first iteration (`setup_lines` of net set-up)."""
        self.line("caffe.cpp:197", "Use CPU.")
        self.line("solver.cpp:44", "Initializing solver from parameters: ", after=0.001)
        for text in solver_text.rstrip("\n").split("\n"):
            self.raw(text)
        for i in range(setup_lines):
            self.line("net.cpp:200", f"layer{i} does not need backward computation.",
                      after=0.000005)
        self.line("solver.cpp:57", "Solver scaffolding done.", after=0.01)
        if resume:
            self.line("caffe.cpp:242", f"Resuming from {resume}")
        self.line("caffe.cpp:248", "Starting Optimization")
        self.line("solver.cpp:273", f"Solving {net_name}")
        self.line("solver.cpp:274", "Learning Rate Policy: multistep")

    def test(self, iteration, outputs, net_id=0, seconds=1.0):
        """outputs: (name, value, loss_weight or 0) in the test net's output order."""
        self.line("solver.cpp:331", f"Iteration {iteration}, Testing net (#{net_id})")
        self.outputs("solver.cpp:398", "Test", outputs, after=seconds)

    def display(self, iteration, loss, outputs, lr, seconds=10.0, old_format=False,
                display=100):
        if old_format:
            self.line("solver.cpp:209", f"Iteration {iteration}, loss = {caffe_float(loss)}",
                      after=seconds)
        else:
            rate = display / seconds
            self.line("solver.cpp:219", f"Iteration {iteration} ({caffe_float(rate)} iter/s, "
                      f"{caffe_float(seconds)}s/{display} iters), loss = {caffe_float(loss)}",
                      after=seconds)
        self.outputs("solver.cpp:238", "Train", outputs)
        self.line("sgd_solver.cpp:105", f"Iteration {iteration}, lr = {caffe_float(lr)}",
                  after=0.000006)

    def outputs(self, source, net, outputs, after=0.0):
        for k, (name, value, weight) in enumerate(outputs):
            tail = f" (* {caffe_float(weight)} = {caffe_float(weight * value)} loss)" if weight else ""
            self.line(source, f"    {net} net output #{k}: {name} = {caffe_float(value)}{tail}",
                      after=after if k == 0 else 0.000007)

    def snapshot(self, prefix, iteration):
        self.line("solver.cpp:448", f"Snapshotting to binary proto file {prefix}_iter_{iteration}.caffemodel")
        self.line("sgd_solver.cpp:273", "Snapshotting solver state to binary proto file "
                  f"{prefix}_iter_{iteration}.solverstate", after=0.1)

    def final(self, iteration, loss):
        self.line("solver.cpp:311", f"Iteration {iteration}, loss = {caffe_float(loss)}")

    def done(self):
        self.line("solver.cpp:316", "Optimization Done.")
        self.line("caffe.cpp:259", "Optimization Done.")

    def text(self):
        return "\n".join(self.lines) + "\n"


GOOGLENET_TRAIN = (("loss1/loss1", 0.3), ("loss2/loss2", 0.3), ("loss3/loss3", 1.0))
GOOGLENET_TEST = tuple((f"loss{b}/{k}", w) for b in (1, 2, 3)
                       for k, w in ((f"loss{b}", 0.3 if b < 3 else 1.0), ("top-1", 0), ("top-5", 0)))


def googlenet_log(iterations=200000, display=10, test_interval=1000, seed=0, start=None):
    """A GoogLeNet-style log (three weighted losses in training, nine test outputs, poly
    learning rate, data-layer noise) of `iterations` iterations: the benchmark's input."""
    rng = random.Random(seed)
    log = LogWriter(**({"start": start} if start else {}))
    solver = (f"test_iter: 1000\ntest_interval: {test_interval}\nbase_lr: 0.01\ndisplay: {display}\n"
              f"max_iter: {iterations}\nlr_policy: \"poly\"\npower: 0.5\naverage_loss: 40\n"
              "snapshot: 40000\nsnapshot_prefix: \"googlenet\"\nnet: \"train_val.prototxt\"\n")
    log.start("GoogleNet", solver, setup_lines=2000)
    for it in range(0, iterations + 1, display):
        progress = it / iterations
        if it and it % 40000 == 0:
            log.snapshot("googlenet", it)
        if it % test_interval == 0 and it > 0:
            acc = 0.7 * progress + rng.uniform(-0.01, 0.01)
            log.test(it, [(name, 6.9 * (1 - 0.6 * progress) if weight else acc + (0.2 if "top-5" in name else 0),
                           weight) for name, weight in GOOGLENET_TEST], seconds=60.0)
        if it == iterations:
            log.final(it, 3.0 * (1 - 0.6 * progress))
            break
        losses = [(name, 6.9 * (1 - 0.6 * progress) + rng.uniform(-0.3, 0.3), w)
                  for name, w in GOOGLENET_TRAIN]
        smoothed = sum(v * w for _, v, w in losses) * rng.uniform(0.95, 1.05)
        log.display(it, smoothed, losses, 0.01 * (1 - progress) ** 0.5, seconds=6.0,
                    display=display)
        if it % 2000 == 0:
            log.line("data_layer.cpp:73", "Restarting data prefetching from start.",
                     after=0.001)
    log.done()
    return log.text()
