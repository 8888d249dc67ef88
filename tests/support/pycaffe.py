"""The one way tests and benchmarks run stock pycaffe (Python 3.9, stock Caffe 1.0): a program
of tests/support/stock_programs/ by name, with its arguments, in tools/pycaffe."""
from pathlib import Path

from sepnets.caffe import stock

PROGRAMS = Path(__file__).resolve().parent / "stock_programs"


def program(name):
    path = PROGRAMS / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"no stock pycaffe program {path}")
    return path


def run(name, *args, cwd=None, timeout=600):
    """Runs program `name`; returns its stdout (UserError with its stderr when it fails)."""
    return stock.run_pycaffe(program(name), [str(a) for a in args], cwd=cwd, timeout=timeout)


def run_json(name, *args, cwd=None, timeout=600):
    """Runs program `name`, whose last stdout line is JSON; returns it decoded."""
    return stock.run_pycaffe_json(program(name), [str(a) for a in args], cwd=cwd,
                                  timeout=timeout)
