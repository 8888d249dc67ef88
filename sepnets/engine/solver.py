"""Caffe's Solver (solver.cpp) and the part of SGDSolver (sgd_solver.cpp) every Caffe solver
shares, on engine nets; the update rules of the six solver types are in
sepnets.engine.updates, chosen by the solver's `type`.

Each iteration: zero the gradients; test if test_interval says so; forward/backward
iter_size times (loss averaged); display the smoothed loss and the train outputs; then
ApplyUpdate, in Caffe's order and float arithmetic:

    rate   = the lr_policy's rate for this iteration
    grads  = gradients()          the learnable blobs' gradients, in learnable order
    clip:  if the L2 norm of all gradients exceeds clip_gradients, scale them down
    for each learnable blob (blobs sharing lr_mult and decay_mult in one group):
        g = g / iter_size                                          (Normalize)
        g = g + local_decay * w   (L1: local_decay * sign(w))       (Regularize)
        update = rule(g, history, local_rate)                      (ComputeUpdateValue)
        w = w - update                                             (Net::Update)

with local_rate = rate * lr_mult and local_decay = weight_decay * decay_mult. SGD's rule is
history = momentum * history + local_rate * g, update = history (it differs from
torch.optim.SGD when the learning rate changes). Snapshots write `<prefix>_iter_<N>.caffemodel`
and `.solverstate` (the rule's history blobs in Caffe's layout), which stock Caffe reads, and
stock Caffe's snapshots restore here.
"""
import time

import numpy as np
import torch

from sepnets import names
from sepnets.caffe import files, glog, snapshots, upgrade
from sepnets.caffe.proto import caffe_pb2
from sepnets.engine import distributed, lr_policy, updates
from sepnets.engine.net import Net
from sepnets.errors import CaffeFileError, UserError

f32 = np.float32
NONE, STOP, SNAPSHOT = "none", "stop", "snapshot"  # Caffe's SolverAction

def read_solver_params(path):
    """Caffe's ReadSolverParamsFromTextFileOrDie: the solver file, upgraded as Caffe upgrades
    it (sepnets.caffe.upgrade: solver_type -> type, the snapshot_prefix default)."""
    return upgrade.upgrade_solver(files.read_solver(path), path, glog.info)


def accumulate_scores(sums, values):
    """Caffe's test score sums: float32, one per output value, in output order."""
    array = np.asarray([v for _, v in values], np.float32)
    return array if sums is None else sums + array


def mean_scores(net, sums, count):
    """(name, mean, loss note) per output value: Caffe's summary after `count` test batches."""
    names = [name for name in net.outputs for _ in range(net.blob_count(name))]
    means = [sums[i] / f32(count) for i in range(len(names))] if sums is not None else []
    return [(name, mean, net.loss_note(name, mean)) for name, mean in zip(names, means)]


def _merged_state(phase, *states):
    state = caffe_pb2.NetState(phase=phase)
    for s in states:
        state.MergeFrom(s)
    return state


class Solver:
    def __init__(self, param, device=None, source="solver"):
        self.param = param
        self.device = torch.device("cpu") if device is None else device
        self.source = source
        self.request_action = lambda: NONE  # set by the command line (SIGINT/SIGHUP)
        self.snapshot_inputs = []  # files snapshots must not overwrite (weights, resumed state)
        glog.info("solver.cpp:45", "Initializing solver from parameters: \n"
                  + files.format_text(param))
        self._check()
        self.seed = distributed.current().seed(param.random_seed)  # distributed: + rank
        if self.seed >= 0:
            torch.manual_seed(self.seed)
        self.net = self._train_net()
        self.test_nets = self._test_nets()
        glog.info("solver.cpp:57", "Solver scaffolding done.")
        self.iter = 0
        self.current_step = 0
        # history[k][i]: history blob k of learnable blob i (Caffe's history_[k * N + i])
        self.history = [[torch.zeros_like(p.tensor, requires_grad=False)
                         for p in self.net.learnable] for _ in range(self.rule.HISTORY)]
        self.groups = self._update_groups()
        self.losses = []
        self.smoothed_loss = f32(0)
        self.requested_early_exit = False

    # ---------------------------------------------------------------- set-up
    def _check(self):
        p = self.param
        self.rule = updates.rule_for(p, self.source)
        if p.average_loss < 1:
            raise UserError(f"{self.source}: average_loss should be at least 1")
        if p.iter_size < 1:
            raise UserError(f"{self.source}: iter_size should be at least 1")
        if p.regularization_type not in ("L1", "L2"):
            raise UserError(f"{self.source}: unknown regularization type: {p.regularization_type}")
        if p.snapshot_format != caffe_pb2.SolverParameter.BINARYPROTO:
            raise UserError(f"{self.source}: snapshot_format HDF5 is not supported by the engine "
                            "(use BINARYPROTO, Caffe's default)")
        if p.snapshot_diff:
            raise UserError(f"{self.source}: snapshot_diff is not supported by the engine")
        if p.debug_info:
            glog.warning(None, "debug_info is not supported by the engine; ignored")
        lr_policy.check(p)
        if p.snapshot and distributed.current().is_root:  # Caffe probes on the root only
            snapshots.check_writable(p.snapshot_prefix)  # Caffe's probe, never through a link

    def _train_net(self):
        p = self.param
        given = [f for f in ("net", "net_param", "train_net", "train_net_param") if p.HasField(f)]
        if len(given) != 1:
            raise UserError(f"{self.source}: specify the train net with exactly one of net, "
                            f"net_param, train_net, train_net_param (given: {given or 'none'})")
        if p.HasField("train_net_param"):
            glog.info("solver.cpp:88", "Creating training net specified in train_net_param.")
            net_param, source = p.train_net_param, "train_net_param"
        elif p.HasField("train_net"):
            glog.info("solver.cpp:92", f"Creating training net from train_net file: {p.train_net}")
            net_param, source = files.read_net(p.train_net), p.train_net
        elif p.HasField("net_param"):
            glog.info("solver.cpp:97", "Creating training net specified in net_param.")
            net_param, source = p.net_param, "net_param"
        else:
            glog.info("solver.cpp:102", f"Creating training net from net file: {p.net}")
            net_param, source = files.read_net(p.net), p.net
        built = caffe_pb2.NetParameter()
        built.CopyFrom(net_param)
        built.state.CopyFrom(_merged_state(caffe_pb2.TRAIN, net_param.state, p.train_state))
        net = Net(built, self.device, self.seed, source)
        for weights in p.weights:
            self.load_weights(net, weights)
        return net

    def _test_nets(self):
        p = self.param
        if p.HasField("net_param") and p.HasField("net"):
            raise UserError(f"{self.source}: both net_param and net may not be specified")
        specs = [(n, "test_net_param") for n in p.test_net_param]
        specs += [(files.read_net(f), f"test_net file: {f}") for f in p.test_net]
        generic = p.HasField("net") or p.HasField("net_param")
        if generic and len(p.test_iter) < len(specs) or not generic and len(p.test_iter) != len(specs):
            raise UserError(f"{self.source}: test_iter must be specified for each test network")
        for _ in range(len(p.test_iter) - len(specs)):
            if p.HasField("net_param"):
                specs.append((p.net_param, "net_param"))
            else:
                specs.append((files.read_net(p.net), f"net file: {p.net}"))
        if p.test_state and len(p.test_state) != len(specs):
            raise UserError(f"{self.source}: test_state must be unspecified or specified once per "
                            "test net")
        if specs and p.test_interval <= 0:
            raise UserError(f"{self.source}: test_interval must be positive when testing")
        nets = []
        for i, (net_param, source) in enumerate(specs):
            built = caffe_pb2.NetParameter()
            built.CopyFrom(net_param)
            extra = [p.test_state[i]] if p.test_state else []
            built.state.CopyFrom(_merged_state(caffe_pb2.TEST, net_param.state, *extra))
            glog.info("solver.cpp:190", f"Creating test net (#{i}) specified by {source}")
            net = Net(built, self.device, self.seed, source.split(": ", 1)[-1])
            for weights in p.weights:
                self.load_weights(net, weights)
            nets.append(net)
        return nets

    def load_weights(self, net, model_list):
        """Caffe's LoadNetWeights: comma-separated caffemodels, copied in turn."""
        for name in model_list.split(","):
            name = name.strip()
            glog.info("solver.cpp:72", f"Finetuning from {name}")
            net.copy_trained_layers_from(name)
            self.snapshot_inputs.append(name)

    # ---------------------------------------------------------------- training
    def solve(self, resume_file=None):
        glog.info("solver.cpp:289", f"Solving {self.net.name}")
        glog.info("solver.cpp:290", f"Learning Rate Policy: {self.param.lr_policy}")
        self.requested_early_exit = False
        if resume_file:
            glog.info("solver.cpp:296", f"Restoring previous solver status from {resume_file}")
            self.restore(resume_file)
        distributed.current().broadcast_parameters(self.net.learnable)  # rank 0's weights
        start_iter = self.iter
        self.step(self.param.max_iter - self.iter)
        p = self.param
        if p.snapshot_after_train and (not p.snapshot or self.iter % p.snapshot != 0):
            self.snapshot()
        if self.requested_early_exit:
            glog.info("solver.cpp:311", "Optimization stopped early.")
            return
        if p.display and self.iter % p.display == 0:
            loss = f32(float(self.net.forward(grad=False).detach()))
            self._update_smoothed_loss(loss, start_iter)
            glog.info("solver.cpp:327", f"Iteration {self.iter}, loss = "
                                        f"{glog.number(self.smoothed_loss)}")
        if p.test_interval and self.iter % p.test_interval == 0:
            self.test_all()
        glog.info("solver.cpp:332", "Optimization Done.")

    def step(self, iters):
        p = self.param
        start_iter = self.iter
        stop_iter = self.iter + iters
        self.losses = []
        self.smoothed_loss = f32(0)
        last_display_iter = self.iter
        timer = time.perf_counter()
        while self.iter < stop_iter:
            self.net.clear_param_diffs()
            if (p.test_interval and self.iter % p.test_interval == 0
                    and (self.iter > 0 or p.test_initialization)):
                self.test_all()
                # distributed: rank 0 tested; its stop request (if any) holds for every rank
                self.requested_early_exit = distributed.current().agree(self.requested_early_exit)
                if self.requested_early_exit:
                    break
            display = p.display and self.iter % p.display == 0
            loss = f32(0)
            for _ in range(p.iter_size):
                loss += f32(self.net.forward_backward())
            loss /= f32(p.iter_size)
            self._update_smoothed_loss(loss, start_iter)
            if display:
                lapse = time.perf_counter() - timer
                per_s = (self.iter - last_display_iter) / (lapse or 1)
                glog.info("solver.cpp:239", f"Iteration {self.iter} ({glog.number(per_s)} iter/s, "
                          f"{glog.number(lapse)}s/{p.display} iters), loss = "
                          f"{glog.number(self.smoothed_loss)}")
                timer = time.perf_counter()
                last_display_iter = self.iter
                self._log_outputs(self.net, "solver.cpp:258", "    Train net output")
            self.apply_update()
            request = distributed.current().share(self.request_action())  # rank 0's request
            if (p.snapshot and self.iter % p.snapshot == 0) or request == SNAPSHOT:
                self.snapshot()
            if request == STOP:
                self.requested_early_exit = True
                break

    def _update_smoothed_loss(self, loss, start_iter):
        average = self.param.average_loss
        if len(self.losses) < average:
            self.losses.append(loss)
            size = f32(len(self.losses))
            self.smoothed_loss = (self.smoothed_loss * (size - f32(1)) + loss) / size
        else:
            index = (self.iter - start_iter) % average
            self.smoothed_loss += (loss - self.losses[index]) / f32(average)
            self.losses[index] = loss

    @staticmethod
    def _log_outputs(net, tag, prefix):
        for index, (name, value) in enumerate(net.output_values()):
            glog.info(tag, f"{prefix} #{index}: {name} = {glog.number(value)}"
                           f"{net.loss_note(name, value)}")

    # ---------------------------------------------------------------- the update
    def learning_rate(self):
        with np.errstate(over="ignore", under="ignore"):
            rate, self.current_step = lr_policy.learning_rate(self.param, self.iter,
                                                              self.current_step)
        return rate

    def _update_groups(self):
        """Learnable blob indices grouped by (lr_mult, decay_mult): the blobs of a group get
        the same local rate and decay, so they update together in a few `_foreach` calls
        (the same float operations Caffe applies blob by blob)."""
        groups = {}
        for i, entry in enumerate(self.net.learnable):
            groups.setdefault((entry.lr_mult, entry.decay_mult), []).append(i)
        return [(f32(lr_mult), f32(decay_mult), indices)
                for (lr_mult, decay_mult), indices in groups.items()]

    def gradients(self):
        """The learnable blobs' gradients, in Caffe's learnable_params order (zeros for a blob
        nothing back-propagated into, e.g. lr_mult 0, as Caffe's cleared diffs). The update
        may overwrite them.

        The seam for data-parallel training: Caffe's multi-GPU solver (parallel.cpp,
        P2PSync::on_gradients_ready) sums these over the solvers and scales them by
        1 / solver_count here, before ApplyUpdate clips, normalizes and regularizes them;
        the all-reduce of this list (sepnets.engine.distributed: torch.distributed.all_reduce,
        then a division by the world size; lr_mult 0 blobs left out) is here and nowhere
        else."""
        grads = [entry.tensor.grad if entry.tensor.grad is not None
                 else torch.zeros_like(entry.tensor) for entry in self.net.learnable]
        distributed.current().reduce_gradients(self.net.learnable, grads)  # sum / N over ranks
        return grads

    def apply_update(self):
        """Caffe's SGDSolver::ApplyUpdate, shared by every solver type."""
        p = self.param
        rate = self.learning_rate()
        if p.display and self.iter % p.display == 0:
            glog.info("sgd_solver.cpp:112", f"Iteration {self.iter}, lr = {glog.number(rate)}")
        grads = self.gradients()
        self.clip_gradients(grads)
        weight_decay = f32(p.weight_decay)
        with torch.no_grad():
            for lr_mult, decay_mult, indices in self.groups:
                weights = [self.net.learnable[i].tensor for i in indices]
                group = [grads[i] for i in indices]
                self.normalize(group)
                self.regularize(weights, group, weight_decay * decay_mult)
                histories = [[blobs[i] for i in indices] for blobs in self.history]
                update = self.rule.compute(group, histories, f32(rate * lr_mult), self.iter)
                torch._foreach_sub_(weights, update)
        self.iter += 1

    def clip_gradients(self, grads):
        """Caffe's ClipGradients: all gradients scaled by clip_gradients / their L2 norm when
        that norm exceeds clip_gradients (negative: off)."""
        limit = self.param.clip_gradients
        if limit < 0:
            return
        norm = float(torch.sqrt(sum(torch.sum(g * g) for g in grads)))
        if norm > limit:
            factor = float(f32(limit) / f32(norm))
            glog.info("sgd_solver.cpp:99", f"Gradient clipping: scaling down gradients (L2 norm "
                                           f"{glog.number(norm)} > {glog.number(limit)}) by scale "
                                           f"factor {glog.number(factor)}")
            torch._foreach_mul_(grads, factor)

    def normalize(self, grads):
        """Caffe's Normalize: gradients accumulated over iter_size passes, averaged."""
        if self.param.iter_size > 1:
            torch._foreach_mul_(grads, float(f32(1) / f32(self.param.iter_size)))

    def regularize(self, weights, grads, local_decay):
        """Caffe's Regularize: L2 adds local_decay * w, L1 local_decay * sign(w)."""
        if not local_decay:
            return
        penalty = weights if self.param.regularization_type == "L2" else torch._foreach_sign(weights)
        torch._foreach_add_(grads, penalty, alpha=float(local_decay))

    # ---------------------------------------------------------------- testing
    def test_all(self):
        if not distributed.current().is_root:
            return  # only rank 0 tests (solver.cpp:214-216)
        for i in range(len(self.test_nets)):
            if self.requested_early_exit:
                break
            self.test(i)

    def test(self, index):
        glog.info("solver.cpp:347", f"Iteration {self.iter}, Testing net (#{index})")
        net = self.test_nets[index]
        net.share_trained_layers_with(self.net)
        scores = None
        loss = f32(0)
        iterations = self.param.test_iter[index]
        for _ in range(iterations):
            request = self.request_action()
            while request != NONE:
                if request == SNAPSHOT:
                    self.snapshot()
                elif request == STOP:
                    self.requested_early_exit = True
                request = self.request_action()
            if self.requested_early_exit:
                break
            iter_loss = f32(float(net.forward(grad=False)))
            if self.param.test_compute_loss:
                loss += iter_loss
            scores = accumulate_scores(scores, net.output_values())
        if self.requested_early_exit:
            glog.info("solver.cpp:396", "Test interrupted.")
            return
        if self.param.test_compute_loss:
            glog.info("solver.cpp:401", f"Test loss: {glog.number(loss / f32(iterations))}")
        for i, (name, mean, note) in enumerate(mean_scores(net, scores, iterations)):
            glog.info("solver.cpp:414", f"    Test net output #{i}: {name} = "
                                        f"{glog.number(mean)}{note}")

    # ---------------------------------------------------------------- snapshots
    def snapshot(self):
        if not distributed.current().is_root:
            return  # only rank 0 snapshots (solver.cpp:272-276, 421)
        model_file = names.snapshot(self.param.snapshot_prefix, self.iter, "caffemodel")
        glog.info("solver.cpp:464", f"Snapshotting to binary proto file {model_file}")
        files.write_model(model_file, self.net.to_model(), inputs=self.snapshot_inputs)
        state_file = names.snapshot(self.param.snapshot_prefix, self.iter, "solverstate")
        glog.info("sgd_solver.cpp:284", f"Snapshotting solver state to binary proto file "
                                        f"{state_file}")
        state = files.SolverState(self.iter, model_file,
                                  [h.detach().cpu().numpy() for h in self._history_blobs()],
                                    self.current_step)
        files.write_solverstate(state_file, state, inputs=self.snapshot_inputs)

    def _history_blobs(self):
        """Every history blob in Caffe's order: history 0 of each learnable blob, then (for
        AdaDelta and Adam) history 1 of each: the order of a .solverstate's history."""
        return [blob for blobs in self.history for blob in blobs]

    def restore(self, state_file):
        """Caffe's Restore: iteration, learning rate step, weights (the state's learned_net)
        and the update rule's history, from a .solverstate stock Caffe or the engine wrote."""
        if str(state_file).endswith(".h5"):
            raise CaffeFileError(state_file, "HDF5 solver states are not supported by the engine")
        state = files.read_solverstate(state_file)
        self.snapshot_inputs = list(self.snapshot_inputs) + [state_file]
        self.iter = state.iter
        if state.learned_net:
            self.net.copy_trained_layers_from(state.learned_net)
            self.snapshot_inputs.append(state.learned_net)
        self.current_step = state.current_step
        blobs = self._history_blobs()
        if len(state.history) != len(blobs):
            raise CaffeFileError(state_file, f"incorrect length of history blobs: "
                                             f"{len(state.history)} stored, the {self.param.type} "
                                             f"solver keeps {len(blobs)} for the net's "
                                             f"{len(self.net.learnable)} learnable blobs")
        glog.info("sgd_solver.cpp:336", "SGDSolver: restoring history")
        with torch.no_grad():
            for i, (history, stored) in enumerate(zip(blobs, state.history)):
                if stored.size != history.numel():
                    raise CaffeFileError(state_file, f"history blob {i} holds {stored.size} values, "
                                                     f"the net's blob {history.numel()}")
                history.copy_(torch.from_numpy(np.ascontiguousarray(stored, np.float32))
                              .reshape(history.shape))

    def close(self):
        for net in [self.net] + self.test_nets:
            net.close()


# Caffe's SGDSolver is the base class of every solver type; the name stays for callers.
SGDSolver = Solver
