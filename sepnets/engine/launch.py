"""`train -gpu 0,1,...` / `-gpu all`: one process per device, as Caffe's tool trains on several
GPUs (tools/caffe.cpp:240-246) — here processes rather than Caffe's threads, joined by
torch.distributed (sepnets.engine.distributed).

The launcher starts `python -m sepnets.caffe` once per device with torchrun's environment
(RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR=127.0.0.1, a free MASTER_PORT)
and the same flags; rank r takes the r-th device of the list. The ranks run in their own
session: SIGINT and SIGHUP sent to the launcher (Ctrl-C in its terminal) go to rank 0, which
handles them for all (stop, snapshot); SIGTERM ends every rank. When a rank fails, the others
end by themselves within SEPNETS_DIST_TIMEOUT seconds, each with one line; a rank still
running after that and a grace period is killed. The launcher's exit status is the first
failing rank's (0 when all succeed).
"""
import os
import signal
import socket
import subprocess
import sys
import time

from sepnets import paths
from sepnets.engine.distributed import LAUNCHER_ENV, timeout_seconds

GRACE = 10.0  # seconds beyond the timeout before a rank that outlived a failure is killed


def free_port():
    """A TCP port free on this machine now (rank 0 listens on it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rank_environment(rank, count, port):
    """torchrun's variables for one rank; torch's C++ warnings off unless asked for (a rank
    that loses a peer would print a stack trace before its one line); this checkout on the
    module path, wherever the launcher runs."""
    env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(count),
               LOCAL_WORLD_SIZE=str(count), GROUP_RANK="0", MASTER_ADDR="127.0.0.1",
               MASTER_PORT=str(port), **{LAUNCHER_ENV: str(os.getpid())})
    env.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(paths.REPO), env.get("PYTHONPATH")]))
    return env


def spawn(argv, count):
    """Runs `python -m sepnets.caffe argv` as `count` ranks; returns the exit status."""
    timeout = timeout_seconds()
    port = free_port()
    ranks = [subprocess.Popen([sys.executable, "-m", "sepnets.caffe", *argv],
                              env=rank_environment(rank, count, port), start_new_session=True)
             for rank in range(count)]

    def forward(sig, _frame):
        if ranks[0].poll() is None:
            ranks[0].send_signal(sig)

    def terminate(sig, _frame):
        for proc in ranks:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, handler) for sig, handler in
                ((signal.SIGINT, forward), (signal.SIGHUP, forward), (signal.SIGTERM, terminate))}
    try:
        return _wait(ranks, timeout)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait(ranks, timeout):
    status, failed_at = 0, None
    while [proc.poll() for proc in ranks].count(None):
        time.sleep(0.1)
        if failed_at is None:
            codes = [proc.returncode for proc in ranks if proc.returncode]
            if codes:
                status, failed_at = codes[0], time.monotonic()
        elif time.monotonic() - failed_at > timeout + GRACE:
            for rank, proc in enumerate(ranks):
                if proc.poll() is None:
                    print(f"sepnets.caffe: error: rank {rank} still runs {timeout + GRACE:g} s "
                          "after another rank failed; killed", file=sys.stderr, flush=True)
                    proc.kill()
    if not status:
        status = next((proc.returncode for proc in ranks if proc.returncode), 0)
    return 128 - status if status < 0 else status
