"""What the training benchmarks share (not a benchmark itself: `make bench` runs bench_*.py):
generated databases, a solver, running a command, and the time per iteration read from the
log's own display lines."""
import re
import subprocess

import numpy as np

from sepnets.caffe import engines
from sepnets.caffe.db import DatumWriter
from sepnets.caffe.proto import caffe_pb2

TIMING = re.compile(r"\] Iteration (\d+) \(([\d.e+-]+) iter/s, ([\d.e+-]+)s/(\d+) iters\)")


def make_db(path, count, shape, classes, rng, floats=False):
    """An LMDB of `count` random records of `shape`: uint8 `data`, or float32 `float_data`."""
    with DatumWriter(path, "lmdb") as out:
        for i in range(count):
            datum = caffe_pb2.Datum(channels=shape[0], height=shape[1], width=shape[2],
                                    label=int(i % classes))
            if floats:
                datum.float_data.extend(rng.normal(0, 1, shape).astype(np.float32).ravel().tolist())
            else:
                datum.data = rng.integers(0, 256, shape, dtype=np.uint8).tobytes()
            out.put(datum)
    return path


def solver(path, net, iterations, display):
    path.write_text(f'net: "{net}"\nbase_lr: 0.01\nmomentum: 0.9\nweight_decay: 0.0001\n'
                    f'lr_policy: "multistep"\ngamma: 0.1\nstepvalue: {iterations // 2}\n'
                    f"display: {display}\nmax_iter: {iterations}\nsnapshot_after_train: false\n"
                    f'snapshot_prefix: "{path.parent / "snap"}"\nrandom_seed: 1\n')
    return path


def seconds_per_iteration(log, what="bench"):
    """The fastest display interval's seconds per iteration, after the start-up interval."""
    spans = [(float(s), int(k)) for _, _, s, k in TIMING.findall(log)]
    spans = spans[2:]  # iteration 0's line, then the first interval (start-up, warm-up)
    if not spans:
        raise SystemExit(f"{what}: too few display lines to time:\n" + log[-2000:])
    return min(s / k for s, k in spans)


def run(argv, cwd, what="bench", env=None, finished=None):
    """The command's log (stderr). `finished`: a log line after which a crash does not count
    (stock Caffe 1.0 can abort in its Data layer's destructor after training)."""
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True,
                          env=env)
    if proc.returncode != 0 and not (finished and finished in proc.stderr):
        raise SystemExit(f"{what}: {' '.join(map(str, argv))} failed:\n{proc.stderr[-3000:]}")
    return proc.stderr


def engine_command(solver_path, *flags):
    return engines.engine_command("torch") + ["train", "-solver", str(solver_path), *flags]
