"""Caffe's learning rate policies (SGDSolver::GetLearningRate), in Caffe's float arithmetic.

    fixed      base_lr
    step       base_lr * gamma ^ floor(iter / stepsize)
    exp        base_lr * gamma ^ iter
    inv        base_lr * (1 + gamma * iter) ^ (-power)
    multistep  base_lr * gamma ^ (number of stepvalues passed)
    poly       base_lr * (1 - iter / max_iter) ^ power
    sigmoid    base_lr * 1 / (1 + exp(-gamma * (iter - stepsize)))

Caffe computes in float (Dtype) except where C++ promotes to double (pow with an int
exponent), and so does this module, so the rates print and apply as Caffe's do.
"""
import numpy as np

from sepnets.caffe import glog
from sepnets.errors import UserError

f32 = np.float32
POLICIES = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid")


def check(param):
    """Refuses a solver whose policy Caffe would stop on (its CHECKs), before training."""
    policy = param.lr_policy
    if policy not in POLICIES:
        raise UserError(f"unknown learning rate policy: {policy} (Caffe's: {', '.join(POLICIES)})")
    if policy in ("step", "sigmoid") and param.stepsize <= 0:
        raise UserError(f"lr_policy {policy} needs stepsize > 0")
    if policy in ("step", "exp", "inv", "multistep", "sigmoid") and param.gamma < 0:
        raise UserError(f"lr_policy {policy} needs gamma >= 0")
    if policy == "poly" and param.max_iter <= 0:
        raise UserError("lr_policy poly needs max_iter > 0")


def _power(base, gamma, exponent):
    """base * gamma ^ exponent as Caffe computes it: pow(Dtype, int) promotes to double
    (sgd_solver.cpp:32-44), and a result too large for a double is inf - Caffe's lr becomes
    inf and training goes on (Python's ** would raise OverflowError instead)."""
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        return np.float64(base) * np.power(np.float64(gamma), np.float64(exponent))


def learning_rate(param, iteration, current_step):
    """(rate as float32, current_step): the rate for `iteration`; multistep advances the step
    once per call when `iteration` reaches the next stepvalue, as Caffe does."""
    policy = param.lr_policy
    base = f32(param.base_lr)
    gamma = f32(param.gamma)
    if policy == "fixed":
        rate = base
    elif policy == "step":
        current_step = iteration // param.stepsize
        rate = f32(_power(base, gamma, current_step))
    elif policy == "exp":
        rate = f32(_power(base, gamma, iteration))
    elif policy == "inv":
        rate = base * np.power(f32(1) + gamma * f32(iteration), -f32(param.power))
    elif policy == "multistep":
        values = param.stepvalue
        if current_step < len(values) and iteration >= values[current_step]:
            current_step += 1
            glog.info("sgd_solver.cpp:50", f"MultiStep Status: Iteration {iteration}, "
                                           f"step = {current_step}")
        rate = f32(_power(base, gamma, current_step))
    elif policy == "poly":
        rate = base * np.power(f32(1) - f32(iteration) / f32(param.max_iter), f32(param.power))
    elif policy == "sigmoid":
        rate = base * (f32(1) / (f32(1) + np.exp(-gamma * (f32(iteration) - f32(param.stepsize)))))
    else:
        raise UserError(f"unknown learning rate policy: {policy}")
    return f32(rate), current_step
