"""The caffe tool's commands (tools/caffe.cpp) on the engine: train, test, time,
device_query, with the same flags and the same log lines."""
import signal
import sys
from contextlib import contextmanager

import numpy as np
import torch

from sepnets import names
from sepnets.caffe import glog, runlock, snapshots
from sepnets.caffe.proto import caffe_pb2
from sepnets.engine import data, distributed, launch, timing
from sepnets.engine import device as devices
from sepnets.engine.flags import Flag, parse, unparse, usage
from sepnets.engine.net import Net
from sepnets.engine.solver import (
    NONE,
    SNAPSHOT,
    STOP,
    SGDSolver,
    accumulate_scores,
    mean_scores,
    read_solver_params,
)
from sepnets.errors import UserError

f32 = np.float32

FLAGS = [
    Flag("gpu", str, "", "Optional; run in GPU mode on given device IDs separated by ','. Use "
                         "'-gpu all' to run on all available GPUs. The effective training batch "
                         "size is multiplied by the number of devices."),
    Flag("iterations", int, 50, "The number of iterations to run."),
    Flag("level", int, 0, "Optional; network level."),
    Flag("model", str, "", "The model definition protocol buffer text file."),
    Flag("phase", str, "", "Optional; network phase (TRAIN or TEST). Only used for 'time'."),
    Flag("sighup_effect", str, "snapshot", "Optional; action to take when a SIGHUP signal is "
                                           "received: snapshot, stop or none."),
    Flag("sigint_effect", str, "stop", "Optional; action to take when a SIGINT signal is "
                                       "received: snapshot, stop or none."),
    Flag("snapshot", str, "", "Optional; the snapshot solver state to resume training."),
    Flag("solver", str, "", "The solver definition protocol buffer text file."),
    Flag("stage", str, "", "Optional; network stages (not to be confused with phase), "
                           "separated by ','."),
    Flag("weights", str, "", "Optional; the pretrained weights to initialize finetuning, "
                             "separated by ','. Cannot be set simultaneously with snapshot."),
    Flag("data_workers", int, -1, "Engine; processes decoding and transforming each Data "
                                  "layer's records (0: on its prefetch thread; default: "
                                  f"${data.WORKERS_ENV}, else one per core per local rank)."),
    Flag("stage_data", bool, False, "Engine; decode each TRAIN Data layer's database once "
                                    "into device memory and form batches there (also "
                                    f"${data.STAGE_ENV}=1)."),
    Flag("minloglevel", int, 0, "Messages logged at a lower level than this don't actually get "
                                "logged anywhere (glog: 0 INFO, 1 WARNING, 2 ERROR)."),
    Flag("help", bool, False, "show help on all flags"),
    Flag("version", bool, False, "show version and build info and exit"),
]

USAGE = """command line brew (the SEP-Nets engine: Caffe on PyTorch)
usage: python -m sepnets.caffe <command> <args>

commands:
  train           train or finetune a model
  test            score a model
  device_query    show GPU diagnostic information
  time            benchmark model execution time"""

VERSION = "1.0.0"


def gpus_from(flag):
    """Caffe's get_gpus: '' -> [], 'all' -> every CUDA device, '0,1' -> [0, 1]."""
    if flag == "all":
        return list(range(torch.cuda.device_count())) if devices.cuda_available() else []
    if not flag:
        return []
    try:
        return [int(part) for part in flag.split(",")]
    except ValueError:
        raise UserError(f"-gpu {flag}: give device IDs separated by ',' (or 'all')") from None


def stages_from(flag):
    return flag.split(",")  # like boost::split: an empty flag is one empty stage


def phase_from(flag, default):
    if flag == "":
        return default
    if flag in ("TRAIN", "TEST"):
        return getattr(caffe_pb2, flag)
    raise UserError('phase must be "TRAIN" or "TEST"')


class SignalActions:
    """Caffe's SignalHandler: SIGINT and SIGHUP become solver requests (stop/snapshot/none)."""

    def __init__(self, sigint_effect, sighup_effect):
        self.effects = {}
        for sig, effect in ((signal.SIGINT, sigint_effect), (signal.SIGHUP, sighup_effect)):
            if effect not in (STOP, SNAPSHOT, NONE):
                raise UserError(f'Invalid signal effect "{effect}" was specified')
            self.effects[sig] = effect
        self.pending = []
        self.previous = {}

    def __enter__(self):
        for sig in self.effects:
            self.previous[sig] = signal.signal(sig, lambda s, _frame: self.pending.append(s))
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        return False

    def request(self):
        while self.pending:
            effect = self.effects[self.pending.pop(0)]
            if effect != NONE:
                return effect
        return NONE


def train(f):
    if not f["solver"]:
        raise UserError("Need a solver definition to train (-solver).")
    if f["snapshot"] and f["weights"]:
        raise UserError("Give a snapshot to resume training or weights to finetune but not both.")
    stages = stages_from(f["stage"])
    param = read_solver_params(f["solver"])
    param.train_state.level = f["level"]
    param.train_state.stage.extend(stages)
    gpu_flag = f["gpu"]
    if not gpu_flag and param.HasField("solver_mode") and param.solver_mode == param.GPU:
        gpu_flag = str(param.device_id) if param.HasField("device_id") else "0"
        if not devices.cuda_available():
            glog.warning(None, f"{f['solver']}: solver_mode GPU, but CUDA is not available to "
                               "torch here; training on the CPU")
            gpu_flag = ""
    gpus = gpus_from(gpu_flag)
    if len(gpus) > 1 and not distributed.in_environment():
        _check_gpus(gpus)
        return launch.spawn(unparse("train", f, FLAGS, gpu=",".join(map(str, gpus))), len(gpus))
    device = _rank_device(gpus)
    world = distributed.join(device)
    try:
        _train(f, param, gpus, world, device)
        world.finish()
    except BaseException as err:
        world.failed(err)  # the other ranks end at once, naming this one
        raise
    glog.info("caffe.cpp:250", "Optimization Done.")
    return 0


def _check_gpus(gpus):
    missing = [g for g in gpus if not 0 <= g < _all_gpus()]
    if missing:
        raise UserError(f"-gpu {','.join(map(str, gpus))}: no CUDA device {missing[0]} here "
                        f"({_all_gpus()} available to torch)")


def _rank_device(gpus):
    """This process's device: its rank's GPU of the list (distributed), the GPU, or the CPU."""
    if not distributed.in_environment() or not gpus:
        return devices.select(gpus)
    local, ranks_here = distributed.local_rank(), distributed.local_world_size()
    if len(gpus) < ranks_here or len(gpus) > ranks_here and len(gpus) != _all_gpus():
        raise UserError(f"-gpu lists {len(gpus)} devices for the {ranks_here} processes on this "
                        "machine: give one per process, or -gpu all")
    return devices.select([gpus[local]])


def _all_gpus():
    return torch.cuda.device_count() if devices.cuda_available() else 0


def _train(f, param, gpus, world, device):
    if gpus:
        glog.info("caffe.cpp:204", "Using GPUs " + ", ".join(map(str, gpus)))
        for gpu in gpus:
            glog.info("caffe.cpp:209", f"GPU {gpu}: {torch.cuda.get_device_properties(gpu).name}")
        param.device_id = gpus[world.local_rank]
    else:
        glog.info("caffe.cpp:197", "Use CPU.")
    if world.size > 1 and not gpus:
        devices.use_all_cores(world.local_size)  # the machine's cores, shared by its ranks
    # the rank that writes snapshots holds the prefix (rank 0; the others never write there)
    with holding_prefix(param.snapshot_prefix, world.is_root), \
            SignalActions(f["sigint_effect"], f["sighup_effect"]) as signals:
        if f["snapshot"]:
            param.ClearField("weights")
        elif f["weights"]:
            param.ClearField("weights")
            param.weights.append(f["weights"])
        solver = SGDSolver(param, device, f["solver"])
        solver.request_action = signals.request
        try:
            world.announce(solver)
            if f["snapshot"]:
                check_resumable(solver, f["snapshot"])
                glog.info("caffe.cpp:235", f"Resuming from {f['snapshot']}")
                solver.restore(f["snapshot"])
            glog.info("caffe.cpp:239", "Starting Optimization")
            solver.solve()
        finally:
            solver.close()


@contextmanager
def holding_prefix(prefix, writer=True):
    """One training per snapshot prefix (sepnets.caffe.runlock on names.snapshot_lock): a
    second one stops at once naming the first's PID. Holding it, the temporary files an
    interrupted snapshot of this prefix left are removed. Only the process that writes the
    snapshots takes it (`writer`: rank 0 of a data-parallel training, solver.cpp:272-276; the
    other ranks of the same training never write there and must not be refused). No lock
    where the prefix's directory does not exist or its names are too long: nothing can be
    written there."""
    lock = names.snapshot_lock(prefix)
    if not writer or not lock.parent.is_dir() or len(lock.name.encode()) > names.NAME_MAX:
        yield     # no snapshot of this prefix is written here (the write probe says why)
        return
    with runlock.exclusive(lock, f"snapshot prefix {prefix}"):
        snapshots.remove_temps(prefix, lambda message: glog.warning(None, message))
        yield


def check_resumable(solver, state_file):
    """The snapshot and its caffemodel checked as the pipeline checks them
    (sepnets.caffe.snapshots: parse, iteration, history count for the solver type, blob
    shapes) against the engine's own net: one line saying what is wrong."""
    net = solver.net
    blobs = snapshots.NetBlobs([tuple(entry.tensor.shape) for entry in net.learnable],
                               {name: list(layer.blob_shapes) for name, layer in net.layers.items()})
    snapshots.check_resume(state_file, blobs, solver.param.type or "SGD")


def _net_for(f, phase, gpu_tag, cpu_tag):
    gpus = gpus_from(f["gpu"])
    if gpus:
        device = devices.select(gpus)
        glog.info(gpu_tag, f"Use GPU with device ID {gpus[0]}")
    else:
        glog.info(cpu_tag, "Use CPU.")
        device = devices.select([])
    return Net.from_file(f["model"], phase, f["level"], stages_from(f["stage"]), device=device)


def test(f):
    if not f["model"]:
        raise UserError("Need a model definition to score (-model).")
    if not f["weights"]:
        raise UserError("Need model weights to score (-weights).")
    net = _net_for(f, caffe_pb2.TEST, "caffe.cpp:266", "caffe.cpp:275")
    try:
        net.copy_trained_layers_from(f["weights"])
        iterations = f["iterations"]
        glog.info("caffe.cpp:281", f"Running for {iterations} iterations.")
        scores = None
        loss = f32(0)
        for i in range(iterations):
            loss += f32(float(net.forward(grad=False)))
            values = net.output_values()
            for name, value in values:
                glog.info("caffe.cpp:304", f"Batch {i}, {name} = {glog.number(value)}")
            scores = accumulate_scores(scores, values)
        loss /= f32(iterations)
        glog.info("caffe.cpp:309", f"Loss: {glog.number(loss)}")
        for name, mean, note in mean_scores(net, scores, iterations):
            glog.info("caffe.cpp:321", f"{name} = {glog.number(mean)}{note}")
    finally:
        net.close()
    return 0


def time(f):
    """Caffe's time: the averages time the forward and backward that training runs (the fused
    net, synchronized on CUDA); the per-layer rows come from a separate instrumented pass
    over the unfused layers (sepnets.engine.timing)."""
    if not f["model"]:
        raise UserError("Need a model definition to time (-model).")
    phase = phase_from(f["phase"], caffe_pb2.TRAIN)
    net = _net_for(f, phase, "caffe.cpp:339", "caffe.cpp:343")
    iterations = f["iterations"]
    try:
        glog.info("caffe.cpp:351", "Performing Forward")
        loss = net.forward(grad=True)
        glog.info("caffe.cpp:356", f"Initial loss: {glog.number(float(loss.detach()))}")
        glog.info("caffe.cpp:357", "Performing Backward")
        net.backward(loss)
        net.clear_param_diffs()
        glog.info("caffe.cpp:365", "*** Benchmark begins ***")
        glog.info("caffe.cpp:366", f"Testing for {iterations} iterations.")

        # Caffe's CPU timer counts whole milliseconds for these lines (its GPU timer does not)
        whole = (lambda ms: float(int(ms))) if net.device.type == "cpu" else (lambda ms: ms)

        def each(j, seconds):
            glog.info("caffe.cpp:394", f"Iteration: {j + 1} forward-backward time: "
                                       f"{glog.number(whole(seconds * 1000))} ms.")

        forward_total, backward_total, wall = timing.training_passes(net, iterations, each)
        glog.info(None, f"Per-layer times from a separate instrumented pass of {iterations} "
                        "iterations over the unfused layers, each with its own autograd graph; "
                        "the Average lines time the fused forward and backward that training runs")
        forward, backward = timing.per_layer(net, iterations)
        glog.info("caffe.cpp:397", "Average time per layer: ")
        for step, fwd, bwd in zip(net.layer_steps, forward, backward):
            glog.info("caffe.cpp:400", f"{step.layer.name:>10}\tforward: "
                                       f"{glog.number(fwd * 1000 / iterations)} ms.")
            glog.info("caffe.cpp:403", f"{step.layer.name:>10}\tbackward: "
                                       f"{glog.number(bwd * 1000 / iterations)} ms.")
        glog.info("caffe.cpp:408", f"Average Forward pass: "
                                   f"{glog.number(forward_total * 1000 / iterations)} ms.")
        glog.info("caffe.cpp:410", f"Average Backward pass: "
                                   f"{glog.number(backward_total * 1000 / iterations)} ms.")
        glog.info("caffe.cpp:412", f"Average Forward-Backward: "
                                   f"{glog.number(whole(wall * 1000) / iterations)} ms.")
        glog.info("caffe.cpp:414", f"Total Time: {glog.number(whole(wall * 1000))} ms.")
        glog.info("caffe.cpp:415", "*** Benchmark ends ***")
    finally:
        net.close()
    return 0


def device_query(f):
    glog.info("caffe.cpp:138", f"Querying GPUs {f['gpu']}")
    gpus = gpus_from(f["gpu"])
    if not gpus:
        raise UserError("device_query: give the GPU id(s) with -gpu (CUDA devices seen by torch: "
                        f"{torch.cuda.device_count() if devices.cuda_available() else 0})")
    for gpu in gpus:
        device = devices.select([gpu])
        props = torch.cuda.get_device_properties(device)
        for line in (f"Device id:                     {gpu}",
                     f"Major revision number:         {props.major}",
                     f"Minor revision number:         {props.minor}",
                     f"Name:                          {props.name}",
                     f"Total global memory:           {props.total_memory}",
                     f"Number of multiprocessors:     {props.multi_processor_count}"):
            glog.info(None, line)
    return 0


COMMANDS = {"train": train, "test": test, "time": time, "device_query": device_query}


def main(argv=None, program="caffe"):
    argv = sys.argv[1:] if argv is None else argv
    values, positional = parse(argv, FLAGS)
    if values["minloglevel"]:
        glog.configure(min_level=values["minloglevel"])
    data.configure(workers=values["data_workers"] if values["data_workers"] >= 0 else None,
                   stage=values["stage_data"] or None)
    if values["version"]:
        print(f"{program} version {VERSION} (SEP-Nets engine, torch {torch.__version__})")
        return 0
    if values["help"] or len(positional) != 1:
        print(usage(program, USAGE, FLAGS), file=sys.stderr)
        return 0 if values["help"] else 1
    command = COMMANDS.get(positional[0])
    if command is None:
        raise UserError(f"Unknown action: {positional[0]} (available caffe actions: "
                        f"{', '.join(sorted(COMMANDS))})")
    return command(values)
