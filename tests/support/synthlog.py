"""Writes training logs line for line as stock Caffe 1.0 prints them (glog's prefix,
solver.cpp's and sgd_solver.cpp's messages), with values the caller chooses and a record of
what was written: the input of the log parser's tests and benchmark where a real run would
be too long (200k iterations) or cannot produce the case (a log cut off mid-line, two
processes writing one file, a new year's night)."""
import math
import random
from datetime import datetime, timedelta


def caffe_float(value):
    """A float as C++'s ostream prints it by default (6 significant digits; glibc's -nan)."""
    if math.isnan(value):
        return "-nan" if math.copysign(1, value) < 0 else "nan"
    return f"{value:g}"


class LogWriter:
    """Appends glog lines to `lines`; the clock advances by the seconds each call says.

    `displays` records (iteration, displayed loss, {output: value}, lr) and `tests`
    (iteration, net, {output: value}), all as the texts written.
    """

    def __init__(self, start=datetime(2017, 4, 18, 16, 30, 46, 830205), tid=2203,
                 year_in_prefix=False):
        self.now = start
        self.tid = tid
        self.year_in_prefix = year_in_prefix
        self.lines = []
        self.displays = []
        self.tests = []

    def line(self, source, message, after=0.0, severity="I"):
        self.now += timedelta(seconds=after)
        day = self.now.strftime("%Y%m%d" if self.year_in_prefix else "%m%d")
        self.lines.append(f"{severity}{day} {self.now:%H:%M:%S.%f} {self.tid:5d} {source}] "
                          f"{message}")

    def start(self, net_name="net", solver_text="display: 20\n", resume=None, setup_lines=0):
        """What `caffe train` prints before the first iteration."""
        self.line("caffe.cpp:197", "Use CPU.")
        self.line("solver.cpp:44", "Initializing solver from parameters: ", after=0.001)
        self.lines.extend(solver_text.rstrip("\n").split("\n"))    # DebugString, unprefixed
        for i in range(setup_lines):
            self.line("net.cpp:200", f"layer{i} does not need backward computation.",
                      after=0.000005)
        self.line("solver.cpp:56", "Solver scaffolding done.", after=0.01)
        if resume:
            self.line("caffe.cpp:242", f"Resuming from {resume}")
        self.line("caffe.cpp:248", "Starting Optimization")
        self.line("solver.cpp:273", f"Solving {net_name}")
        self.line("solver.cpp:274", "Learning Rate Policy: multistep")

    def test(self, iteration, outputs, net=0, seconds=1.0):
        """outputs: (name, value, loss weight or 0) in the test net's output order."""
        self.line("solver.cpp:331", f"Iteration {iteration}, Testing net (#{net})")
        texts = self._outputs("solver.cpp:398", "Test", outputs, after=seconds)
        self.tests.append((iteration, net, texts))

    def display(self, iteration, loss, outputs, lr, seconds=10.0, display=100,
                old_format=False):
        if old_format:                                   # Caffe before 1.0
            self.line("solver.cpp:209", f"Iteration {iteration}, loss = {caffe_float(loss)}",
                      after=seconds)
        else:
            self.line("solver.cpp:219", f"Iteration {iteration} ({caffe_float(display / seconds)}"
                      f" iter/s, {caffe_float(seconds)}s/{display} iters), "
                      f"loss = {caffe_float(loss)}", after=seconds)
        texts = self._outputs("solver.cpp:238", "Train", outputs)
        self.line("sgd_solver.cpp:105", f"Iteration {iteration}, lr = {caffe_float(lr)}",
                  after=0.000006)
        self.displays.append((iteration, caffe_float(loss), texts, caffe_float(lr)))

    def _outputs(self, source, net, outputs, after=0.0):
        texts = {}
        for k, (name, value, weight) in enumerate(outputs):
            tail = f" (* {caffe_float(weight)} = {caffe_float(weight * value)} loss)" if weight else ""
            self.line(source, f"    {net} net output #{k}: {name} = {caffe_float(value)}{tail}",
                      after=after if k == 0 else 0.000007)
            texts[name] = caffe_float(value)
        return texts

    def snapshot(self, prefix, iteration):
        self.line("solver.cpp:448", "Snapshotting to binary proto file "
                  f"{prefix}_iter_{iteration}.caffemodel")
        self.line("sgd_solver.cpp:273", "Snapshotting solver state to binary proto file "
                  f"{prefix}_iter_{iteration}.solverstate", after=0.1)

    def final(self, iteration, loss):
        """The forward-only display after the last update."""
        self.line("solver.cpp:311", f"Iteration {iteration}, loss = {caffe_float(loss)}")

    def done(self):
        self.line("solver.cpp:316", "Optimization Done.")
        self.line("caffe.cpp:259", "Optimization Done.")

    def text(self):
        return "\n".join(self.lines) + "\n"


def training_log(log, iterations, display, test_interval, train_outputs, test_nets,
                 lr=lambda it: 0.01, first=0, snapshot=0, prefix="net", resume=None,
                 seconds=6.0, setup_lines=0, old_format=False, noise_every=0, seed=0,
                 average_loss=1):
    """Writes a whole `caffe train` run into `log` (a LogWriter): iterations `first` to
    `iterations`, outputs given as (name, loss weight) for the train net and per test net,
    losses falling and accuracies rising with noise. Returns the writer."""
    rng = random.Random(seed)
    solver = (f"test_interval: {test_interval}\nbase_lr: {caffe_float(lr(0))}\n"
              f"display: {display}\nmax_iter: {iterations}\naverage_loss: {average_loss}\n"
              f"snapshot: {snapshot}\nsnapshot_prefix: \"{prefix}\"\nnet: \"train_val.prototxt\"\n")
    log.start(prefix, solver, resume=resume, setup_lines=setup_lines)

    def value(name, weight, progress):
        if weight:
            return 6.9 * (1 - 0.6 * progress) + rng.uniform(-0.3, 0.3)
        return min(1.0, 0.7 * progress + (0.2 if "5" in name else 0) + rng.uniform(0, 0.01))

    for it in range(first, iterations + 1, display):
        progress = it / iterations
        if snapshot and it > first and it % snapshot == 0:
            log.snapshot(prefix, it)
        if test_nets and it % test_interval == 0 and (it > 0 or first == 0):
            for net, outputs in enumerate(test_nets):
                log.test(it, [(n, value(n, w, progress), w) for n, w in outputs], net,
                         seconds=seconds * 10)
        if it == iterations:
            log.final(it, 3.0 * (1 - 0.6 * progress))
            break
        outputs = [(n, value(n, w, progress), w) for n, w in train_outputs]
        smoothed = sum(v * w for _, v, w in outputs) * rng.uniform(0.95, 1.05)
        log.display(it, smoothed, outputs, lr(it), seconds=seconds, display=display,
                    old_format=old_format)
        if noise_every and (it // display) % noise_every == 0:
            log.line("data_layer.cpp:73", "Restarting data prefetching from start.",
                     after=0.001)
    log.done()
    return log


GOOGLENET_TRAIN = (("loss1/loss1", 0.3), ("loss2/loss2", 0.3), ("loss3/loss3", 1.0))
GOOGLENET_TEST = tuple((f"loss{b}/{k}", w) for b in (1, 2, 3)
                       for k, w in ((f"loss{b}", 0.3 if b < 3 else 1.0), ("top-1", 0), ("top-5", 0)))


def googlenet_log(iterations=200000, display=10, test_interval=1000):
    """A GoogLeNet-style log (three weighted losses in training, nine test outputs, poly
    learning rate, data-layer lines): the benchmark's input."""
    log = training_log(LogWriter(), iterations, display, test_interval, GOOGLENET_TRAIN,
                       [GOOGLENET_TEST], lr=lambda it: 0.01 * (1 - it / iterations) ** 0.5,
                       snapshot=40000, prefix="googlenet", setup_lines=2000, noise_every=200,
                       average_loss=40)
    return log.text()
