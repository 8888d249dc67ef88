"""Data-parallel training with BVLC Caffe 1.0's multi-GPU semantics, on torch.distributed
(NCCL between GPUs, gloo between CPU processes): one process per device (rank), started by
`-gpu 0,1,...` / `-gpu all` (sepnets.engine.launch) or by torchrun, whose environment
(RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT) is read here.

Caffe's rules, and where they are kept:
- batch_size is per rank; rank r reads stream records r, r+N, ... (DataLayer::Skip,
  data_layer.cpp:59-67: sepnets.engine.records), so the effective batch is N x batch x iter_size;
- gradients are summed over the ranks and scaled by 1/N (NCCL::on_gradients_ready,
  parallel.cpp:247-254) after the backward passes and before clip_gradients, the iter_size
  normalization, regularization and the update (Solver::Step, solver.cpp:264-267), which
  then run identically on every rank (`reduce_gradients`, called by Solver.gradients, the
  update's first step, whatever the solver type).
  Blobs with lr_mult 0 take no part (Caffe computes no gradient for them: their zeros);
- weights (every learnable blob, BatchNorm's statistics included) come from rank 0 at the
  start (NCCL::Broadcast, parallel.cpp:189-199, after every rank restored the same
  .solverstate: parallel.cpp:282-287); BatchNorm's statistics then stay per rank and
  rank 0's are saved;
- random seeds are random_seed + rank (Solver::Init, solver.cpp:50-52);
- only rank 0 tests, displays and snapshots (solver.cpp:214-216, 239, 272-276) and handles
  SIGINT/SIGHUP; its requests reach every rank (`share`, `agree`), so all stop or snapshot at
  the same iteration (Caffe 1.0's worker threads never see the request);
- every log line is printed once, by rank 0 (LOG_IF(INFO, Caffe::root_solver())); the other
  ranks print errors only.

Faults: every rank runs a monitor thread that beats a counter in the rendezvous store while
its process makes progress (a batch read, a collective reached) and watches the others'. A
rank whose beats stop for SEPNETS_DIST_TIMEOUT seconds (default 120; its process ended,
froze or stalled) makes the others exit with one line naming it; a rank that fails with an
error posts it, and the others exit at once with one line naming it. A collective that waits
5 x SEPNETS_DIST_TIMEOUT fails too. No snapshot is left half-written (files are written
under a temporary name and renamed).
"""
import datetime
import os
import sys
import threading
import time

import numpy as np
import torch

from sepnets.caffe import glog
from sepnets.errors import UserError, one_line

TIMEOUT_ENV = "SEPNETS_DIST_TIMEOUT"
DEFAULT_TIMEOUT = 120.0
JOIN_TIMEOUT = 120.0  # at least this long for all ranks to start
LAUNCHER_ENV = "SEPNETS_LAUNCHER_PID"  # set by sepnets.engine.launch for its children
EXIT_FAULT = 2
REQUESTS = ("none", "stop", "snapshot")  # Caffe's SolverAction (sepnets.engine.solver)


def timeout_seconds():
    text = os.environ.get(TIMEOUT_ENV, "")
    try:
        value = float(text) if text else DEFAULT_TIMEOUT
    except ValueError:
        raise UserError(f"{TIMEOUT_ENV}={text}: give seconds") from None
    if value <= 0:
        raise UserError(f"{TIMEOUT_ENV}={text}: give a positive number of seconds")
    return value


def in_environment():
    """Started as one of several ranks (by torchrun or sepnets.engine.launch)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def local_rank():
    return _env_int("LOCAL_RANK", _env_int("RANK"))


def local_world_size():
    return _env_int("LOCAL_WORLD_SIZE", _env_int("WORLD_SIZE"))


class World:
    """One process training alone: Caffe's solver_count 1, rank 0. Every operation is the
    identity; DistributedWorld does the work when there are several ranks."""
    rank, size, local_rank, local_size = 0, 1, 0, 1
    backend = None

    @property
    def is_root(self):
        return self.rank == 0

    def seed(self, random_seed):
        """Caffe::set_random_seed(random_seed + solver_rank) (solver.cpp:50-52)."""
        return random_seed + self.rank if random_seed >= 0 else random_seed

    def tick(self):
        """The main thread made progress (a batch was read)."""

    def broadcast_parameters(self, learnable):
        """Rank 0's values of every learnable blob on every rank."""

    def reduce_gradients(self, learnable, grads):
        """grads (one per learnable blob, in place): summed over the ranks, times 1/N."""

    def share(self, request):
        """Rank 0's solver request (none/stop/snapshot), on every rank."""
        return request

    def agree(self, value):
        """After a phase only rank 0 runs (a test): rank 0's `value` (a bool), on every rank;
        the other ranks wait for rank 0 as long as it is alive."""
        return value

    def announce(self, solver):
        """The one start-up line: world size and effective batch."""

    def failed(self, err):
        """This rank ends with `err`: tell the others."""

    def finish(self):
        """Every rank, after training: leave together."""


_WORLD = World()


def current():
    return _WORLD


def join(device):
    """The world of this process: alone, or one rank of WORLD_SIZE (torchrun's environment),
    joined to the others through torch.distributed on `device`."""
    global _WORLD
    if in_environment() and not isinstance(_WORLD, DistributedWorld):
        _WORLD = DistributedWorld(device)
    return _WORLD


def leave():
    """Back to one process (after finish, or in tests that ran several worlds)."""
    global _WORLD
    _WORLD = World()


def _env_int(name, default=None):
    text = os.environ.get(name)
    if text is None or text == "":
        if default is None:
            raise UserError(f"{name} is not set: start the ranks with torchrun or -gpu")
        return default
    try:
        return int(text)
    except ValueError:
        raise UserError(f"{name}={text}: not a number") from None


class DistributedWorld(World):
    def __init__(self, device):
        import torch.distributed as dist
        self.dist = dist
        self.rank, self.size = _env_int("RANK"), _env_int("WORLD_SIZE")
        self.local_rank, self.local_size = local_rank(), local_world_size()
        self.device = torch.device(device)
        self.backend = "nccl" if self.device.type == "cuda" else "gloo"
        self.timeout = timeout_seconds()
        if not self.is_root:
            glog.configure(min_level=max(glog.LOG.min_level, 2))  # rank 0 logs, the others err
        wait = datetime.timedelta(seconds=self.timeout)
        joining = max(self.timeout, JOIN_TIMEOUT)  # ranks start (import torch) at their pace
        try:
            store, _, _ = next(dist.rendezvous("env://", self.rank, self.size,
                                               timeout=datetime.timedelta(seconds=joining)))
            dist.init_process_group(self.backend, store=store, rank=self.rank,
                                    world_size=self.size, timeout=5 * wait,
                                    device_id=self.device if self.backend == "nccl" else None)
        except (RuntimeError, ValueError) as err:
            raise UserError(f"rank {self.rank} of {self.size}: could not join the others at "
                            f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')} "
                            f"within {joining:g} s ({_first_line(err)})") from None
        self.store = dist.PrefixStore("sepnets/", store)
        self.agreements = 0
        self.last_tick = time.monotonic()
        self.waiting = 1  # setting up counts as waiting: no progress is expected of it
        self.dying = threading.Lock()
        self.monitor = Monitor(self)
        self.monitor.start()

    # ---------------------------------------------------------------- progress
    def tick(self):
        self.last_tick = time.monotonic()

    def making_progress(self, now):
        return self.waiting > 0 or now - self.last_tick < self.timeout

    def _collective(self, what, operation, *args, **kwargs):
        self.waiting += 1
        try:
            return operation(*args, **kwargs)
        except RuntimeError as err:
            self._collective_failed(what, err)
        finally:
            self.waiting -= 1
            self.tick()

    def _collective_failed(self, what, err):
        """A collective failed (a peer's connection closed, a timeout): let the monitor
        find which rank ended, for a while, then end with what is known."""
        deadline = time.monotonic() + 2 * self.timeout
        while time.monotonic() < deadline and not self.monitor.stopping.is_set():
            time.sleep(0.1)  # the monitor ends the process when it names the rank
        self.die(f"{what} failed: {_first_line(err)}")

    # ---------------------------------------------------------------- the rules
    def broadcast_parameters(self, learnable):
        with torch.no_grad():
            tensors = [entry.tensor for entry in learnable]
            self._flat(tensors, lambda flat: self._collective(
                "the broadcast of rank 0's weights", self.dist.broadcast, flat, 0))
        self.waiting = 0  # training begins: from now on each rank must make progress

    def reduce_gradients(self, learnable, grads):
        reduced = []
        scale = float(np.float32(1.0 / self.size))  # (Dtype) 1.0 / solver_count
        with torch.no_grad():
            for entry, grad in zip(learnable, grads):
                if entry.lr_mult == 0:
                    grad.zero_()  # Caffe computes none: every rank clips the same norm
                else:
                    reduced.append(grad)

            def all_reduce(flat):
                self._collective("the gradient all-reduce", self.dist.all_reduce, flat)
                flat.mul_(scale)
            self._flat(reduced, all_reduce)

    @staticmethod
    def _flat(tensors, operation):
        """`operation` on one flat copy of `tensors`, copied back (one collective call)."""
        if not tensors:
            return
        flat = torch.cat([t.reshape(-1) for t in tensors])
        operation(flat)
        offset = 0
        for t in tensors:
            t.copy_(flat[offset:offset + t.numel()].view(t.shape))
            offset += t.numel()

    def share(self, request):
        value = torch.tensor([REQUESTS.index(request) if self.is_root else 0],
                             dtype=torch.int64, device=self.device)
        self._collective("the broadcast of rank 0's request", self.dist.broadcast, value, 0)
        return REQUESTS[int(value.item())]

    def agree(self, value):
        self.agreements += 1
        key = f"agree/{self.agreements}"
        if self.is_root:
            return self._collective("telling the others", self._tell, key, value)
        return self._collective("waiting for rank 0", self._hear, key)

    def _tell(self, key, value):
        self.store.set(key, "1" if value else "0")
        return value

    def _hear(self, key):
        """Rank 0's word, waited for as long as its monitor sees it alive."""
        while not self.store.check([key]):
            time.sleep(0.005)
        return self.store.get(key) == b"1"

    def announce(self, solver):
        batch = solver.net.steps[0].layer.top_shapes[0][0] if solver.net.steps else 1
        iter_size = solver.param.iter_size
        glog.info(None, f"Data parallel: {self.size} ranks ({self.backend}), batch {batch} per "
                        f"rank x iter_size {iter_size}: effective batch "
                        f"{self.size * batch * iter_size}")

    # ---------------------------------------------------------------- ending
    def failed(self, err):
        message = _first_line(err) or type(err).__name__
        try:
            self.store.set(f"failed/{self.rank}", message)
            self.store.add("failures", 1)
        except RuntimeError:
            pass

    def finish(self):
        self.agree(True)  # rank 0 is done (its last test, its last snapshot)
        self.monitor.stop()
        try:
            self._collective("leaving together", self.dist.barrier)
        finally:
            self.dist.destroy_process_group()
        leave()

    def die(self, message):
        """Ends this process now with one line (from any thread; the first call wins)."""
        if not self.dying.acquire(blocking=False):
            while True:
                time.sleep(1)  # another thread is ending the process
        prog = (sys.argv[0].rsplit("/", 1)[-1] or "sepnets")
        print(f"{prog}: error: {one_line(message)}; rank {self.rank} of {self.size} ends",
              file=sys.stderr, flush=True)
        os._exit(EXIT_FAULT)


class Monitor(threading.Thread):
    """Beats this rank's counter and watches the others' (the module's 'Faults')."""

    def __init__(self, world):
        super().__init__(name="sepnets rank monitor", daemon=True)
        self.world = world
        self.interval = min(2.0, max(0.2, world.timeout / 20))
        self.stopping = threading.Event()
        self.seen = {}  # peer -> (its counter, when it last changed)
        self.launcher = _env_int(LAUNCHER_ENV, 0)

    def stop(self):
        self.stopping.set()
        self.join()

    def run(self):
        while not self.stopping.wait(self.interval):
            try:
                message = self._check(time.monotonic())
            except RuntimeError as err:
                if self.stopping.is_set():
                    return
                message = (f"lost the rendezvous store, which rank 0 (or torchrun's agent) "
                           f"holds: it has ended ({_first_line(err)})")
            if message and not self.stopping.is_set():
                self.world.die(message)

    def _check(self, now):
        w, store = self.world, self.world.store
        if self.launcher and os.getppid() != self.launcher:
            return f"the launcher (process {self.launcher}) has ended"
        if not w.making_progress(now):
            return f"this rank made no progress for {w.timeout:g} s ({TIMEOUT_ENV}): it stalled"
        store.add(f"beat/{w.rank}", 1)
        if store.add("failures", 0):
            for peer in range(w.size):
                if peer != w.rank and store.check([f"failed/{peer}"]):
                    return f"rank {peer} failed: {store.get(f'failed/{peer}').decode()}"
        for peer in range(w.size):
            if peer == w.rank:
                continue
            count = store.add(f"beat/{peer}", 0)
            last = self.seen.get(peer)
            if last is None or last[0] != count:
                self.seen[peer] = (count, now)
            elif now - last[1] > w.timeout:
                return (f"rank {peer} stopped: no sign of life for {w.timeout:g} s "
                        f"({TIMEOUT_ENV}): its process ended or stalled")
        return None


def _first_line(err):
    text = str(err).strip()
    return text.splitlines()[0] if text else ""
