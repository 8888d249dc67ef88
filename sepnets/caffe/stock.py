"""Running stock Caffe: the `caffe` tool (tools/caffe, or $CAFFE) and pycaffe (tools/pycaffe,
or $PYCAFFE), both from the rootfs `make setup` installs."""
import json
import os
import subprocess
from pathlib import Path

from sepnets.errors import ProgramFailed, UserError
from sepnets.paths import REPO  # the toolkit's own files

CAFFE_TOOL = REPO / "tools" / "caffe"
PYCAFFE_TOOL = REPO / "tools" / "pycaffe"
CAFFE_BIN_TOOL = REPO / "tools" / "caffe-bin"


def _env(quiet):
    env = dict(os.environ)
    if quiet:
        env.setdefault("GLOG_minloglevel", "2")
    return env


def caffe_command():
    """argv prefix that runs stock caffe."""
    return [str(CAFFE_TOOL)]


def run_caffe(args, cwd=None, quiet=False, check=True, timeout=None):
    """Runs `caffe ARGS`; returns the CompletedProcess (stdout and stderr as text)."""
    proc = subprocess.run(caffe_command() + [str(a) for a in args], cwd=cwd, env=_env(quiet),
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise ProgramFailed(f"caffe {' '.join(map(str, args))} failed (exit {proc.returncode}):",
                            (proc.stderr or proc.stdout).strip().splitlines()[-5:])
    return proc


def run_caffe_program(name, args, cwd=None, quiet=False, check=True, timeout=None):
    """Runs another program of the stock Caffe rootfs, e.g. convert_imageset."""
    proc = subprocess.run([str(CAFFE_BIN_TOOL), name] + [str(a) for a in args], cwd=cwd,
                          env=_env(quiet), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise ProgramFailed(f"{name} {' '.join(map(str, args))} failed (exit {proc.returncode}):",
                            (proc.stderr or proc.stdout).strip().splitlines()[-5:])
    return proc


def run_pycaffe(code_or_script, args=(), cwd=None, quiet=True, timeout=None):
    """Runs Python 3.9 code (a string) or a script path with stock pycaffe importable.

    Returns stdout; raises ProgramFailed with the end of stderr when it fails.
    """
    if isinstance(code_or_script, Path) or str(code_or_script).endswith(".py"):
        argv = [str(PYCAFFE_TOOL), str(code_or_script)]
    else:
        argv = [str(PYCAFFE_TOOL), "-c", code_or_script]
    proc = subprocess.run(argv + [str(a) for a in args], cwd=cwd, env=_env(quiet),
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise ProgramFailed(f"pycaffe failed (exit {proc.returncode}):",
                            proc.stderr.strip().splitlines()[-8:])
    return proc.stdout


def run_pycaffe_json(code_or_script, args=(), cwd=None, timeout=None):
    """Like run_pycaffe; the program's last stdout line is JSON, returned decoded."""
    out = run_pycaffe(code_or_script, args, cwd=cwd, timeout=timeout)
    lines = [line for line in out.splitlines() if line.strip()]
    if not lines:
        raise UserError("pycaffe printed nothing")
    return json.loads(lines[-1])


def available():
    """True when stock Caffe can run here (rootfs made by setup, or $CAFFE and $PYCAFFE)."""
    try:
        return subprocess.run([str(CAFFE_TOOL), "--version"], capture_output=True,
                              timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
