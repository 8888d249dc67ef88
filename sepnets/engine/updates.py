"""Caffe's update rules, one class per solver file of Caffe 1.0, registered by the solver
`type` strings Caffe's SolverRegistry knows ("SGD", "Nesterov", "AdaGrad", "RMSProp",
"AdaDelta", "Adam").

Each rule is Caffe's ComputeUpdateValue (src/caffe/solvers/<name>_solver.cpp): it runs after
the solver loop (sepnets.engine.solver) has clipped, normalized and regularized the gradients,
turns them into the values Net::Update subtracts from the weights, and keeps its history
blobs. `HISTORY` is how many history blobs it keeps per learnable blob: Caffe's history_
holds one per blob (SGDSolver::PreSolve), and AdaDelta and Adam append a second set after the
first (AdaDeltaPreSolve, AdamPreSolve), so a .solverstate lists history[0] of every blob,
then history[1] of every blob. `histories[k][i]` here is Caffe's history_[k * N + i]. The
count is sepnets.caffe.snapshots.HISTORY_PER_BLOB's (the rule the resume check uses too,
kept in caffe/ where the torch-free tools read it): `register` sets it on each rule.

Arithmetic is Caffe's, in float32, one torch `_foreach` operation per BLAS or vector call of
Caffe's CPU code, in Caffe's order (caffe_cpu_axpby(a, x, b, y) is y = b * y, then y += a * x,
as its two-call form in mkl_alternate.hpp does): the rules apply to a group of blobs that
share a learning rate and decay multiplier in a few calls rather than one per blob.
"""

import numpy as np
import torch

from sepnets.caffe.snapshots import HISTORY_PER_BLOB
from sepnets.errors import UserError

f32 = np.float32
UPDATE_RULES = {}


def register(cls):
    """Registers an update rule by its type, with Caffe's history count for that type."""
    cls.HISTORY = HISTORY_PER_BLOB[cls.TYPE]
    UPDATE_RULES[cls.TYPE] = cls
    return cls


def known_types():
    """Caffe's SolverTypeListString: the registered types, sorted."""
    return ", ".join(sorted(UPDATE_RULES))


def rule_for(param, where):
    """The update rule a SolverParameter's `type` names (Caffe's SolverRegistry::CreateSolver)."""
    cls = UPDATE_RULES.get(param.type)
    if cls is None:
        raise UserError(f"{where}: Unknown solver type: {param.type} (known types: "
                        f"{known_types()})")
    return cls(param, where)


class UpdateRule:
    TYPE = None
    HISTORY = None  # history blobs per learnable blob (set by `register`)

    def __init__(self, param, where):
        self.param = param
        self.where = where
        self.check()

    def check(self):
        """Caffe's constructor_sanity_check: the solver's CHECKs, as one-line errors."""

    def fail(self, problem):
        raise UserError(f"{self.where}: {problem}")

    def compute(self, grads, histories, local_rate, iteration):
        """The update values for one group of blobs (Caffe's diffs after ComputeUpdateValue).
        grads: the group's regularized gradients (may be overwritten); histories: HISTORY
        lists of the group's history blobs; local_rate: rate * lr_mult as a float32 value;
        iteration: the solver's iter_ before this update."""
        raise NotImplementedError

    @staticmethod
    def axpby(alpha, x, beta, y):
        """Caffe's caffe_cpu_axpby in place: y = beta * y, then y += alpha * x."""
        torch._foreach_mul_(y, float(beta))
        torch._foreach_add_(y, x, alpha=float(alpha))


@register
class SGD(UpdateRule):
    """sgd_solver.cpp: history = momentum * history + local_rate * g; update = history."""
    TYPE = "SGD"

    def compute(self, grads, histories, local_rate, iteration):
        (history,) = histories
        self.axpby(local_rate, grads, f32(self.param.momentum), history)
        return history


@register
class Nesterov(UpdateRule):
    """nesterov_solver.cpp: h_new = momentum * h + local_rate * g; the update steps back
    and over: (1 + momentum) * h_new - momentum * h."""
    TYPE = "Nesterov"

    def compute(self, grads, histories, local_rate, iteration):
        (history,) = histories
        momentum = f32(self.param.momentum)
        update = torch._foreach_mul(history, -float(momentum))  # the saved history, scaled
        self.axpby(local_rate, grads, momentum, history)
        torch._foreach_add_(update, history, alpha=float(f32(1) + momentum))
        return update


class _RootMeanSquare(UpdateRule):
    """AdaGrad and RMSProp: update = local_rate * g / (sqrt(history) + delta), where the
    history accumulates g^2 (the two differ in how). Neither takes a momentum."""

    def check(self):
        if f32(self.param.momentum) != 0:
            self.fail(f"Momentum cannot be used with {self.TYPE}.")

    def accumulate(self, squares, history):
        raise NotImplementedError

    def compute(self, grads, histories, local_rate, iteration):
        (history,) = histories
        squares = torch._foreach_mul(grads, grads)            # caffe_powx(g, 2)
        self.accumulate(squares, history)
        root = torch._foreach_sqrt(history)                   # caffe_powx(h, 0.5)
        torch._foreach_add_(root, float(f32(self.param.delta)))
        update = torch._foreach_div(grads, root)
        torch._foreach_mul_(update, float(local_rate))       # axpby(local_rate, u, 0, diff)
        return update


@register
class AdaGrad(_RootMeanSquare):
    """adagrad_solver.cpp: history += g^2."""
    TYPE = "AdaGrad"

    def accumulate(self, squares, history):
        torch._foreach_add_(history, squares)


@register
class RMSProp(_RootMeanSquare):
    """rmsprop_solver.cpp: history = rms_decay * history + (1 - rms_decay) * g^2."""
    TYPE = "RMSProp"

    def check(self):
        super().check()
        if not 0 <= f32(self.param.rms_decay) < 1:
            self.fail("rms_decay should lie between 0 and 1.")

    def accumulate(self, squares, history):
        decay = f32(self.param.rms_decay)
        self.axpby(f32(1) - decay, squares, decay, history)


@register
class AdaDelta(UpdateRule):
    """adadelta_solver.cpp: with momentum m, delta d, gradient history h and update history u,
    h = m h + (1 - m) g^2;  g = g sqrt((u + d) / (h + d));  u = m u + (1 - m) g^2;
    update = local_rate * g (Caffe's AdaDelta still multiplies by the learning rate, so
    its solvers set base_lr: 1 with lr_policy fixed)."""
    TYPE = "AdaDelta"

    def compute(self, grads, histories, local_rate, iteration):
        gradient_history, update_history = histories
        momentum = f32(self.param.momentum)
        delta = float(f32(self.param.delta))
        self.axpby(f32(1) - momentum, torch._foreach_mul(grads, grads), momentum,
                   gradient_history)
        ratio = torch._foreach_add(update_history, delta)
        torch._foreach_div_(ratio, torch._foreach_add(gradient_history, delta))
        torch._foreach_sqrt_(ratio)
        torch._foreach_mul_(grads, ratio)
        self.axpby(f32(1) - momentum, torch._foreach_mul(grads, grads), momentum,
                   update_history)
        torch._foreach_mul_(grads, float(local_rate))
        return grads


@register
class Adam(UpdateRule):
    """adam_solver.cpp: m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
    update = local_rate * correction * m / (sqrt(v) + delta), with the bias correction
    sqrt(1 - b2^t) / (1 - b1^t) for t = iter + 1 (computed in double, as C++'s pow with an
    int exponent does, then stored as float); b1 = momentum, b2 = momentum2."""
    TYPE = "Adam"

    def compute(self, grads, histories, local_rate, iteration):
        first, second = histories
        beta1, beta2 = f32(self.param.momentum), f32(self.param.momentum2)
        t = iteration + 1
        with np.errstate(all="ignore"):  # C++'s doubles: adam_solver.cpp:40 has no CHECK, so
            # momentum2 > 1 makes the root NaN (momentum 1: a zero denominator, inf) and
            # training goes on; Python's math would raise instead
            correction = f32(np.sqrt(1.0 - np.float64(beta2) ** t) / (1.0 - np.float64(beta1) ** t))
        self.axpby(f32(1) - beta1, grads, beta1, first)
        self.axpby(f32(1) - beta2, torch._foreach_mul(grads, grads), beta2, second)
        root = torch._foreach_sqrt(second)
        torch._foreach_add_(root, float(f32(self.param.delta)))
        update = torch._foreach_div(first, root)
        torch._foreach_mul_(update, float(f32(local_rate) * correction))
        return update
