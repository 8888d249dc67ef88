"""User-facing errors: one line naming the file and what is wrong, no traceback."""
import argparse
import functools
import sys


class UserError(Exception):
    """A problem with the user's input (a file, a flag): reported as one line, exit code 2."""


class CaffeFileError(UserError):
    """A Caffe file (prototxt, solver, caffemodel, binaryproto, solverstate) that cannot be used."""

    def __init__(self, path, problem):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def cli(main):
    """Runs `main` as a command: a UserError becomes `prog: message` on stderr and exit 2."""
    @functools.wraps(main)
    def run(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as err:
            prog = (sys.argv[0].rsplit("/", 1)[-1] or "sepnets")
            print(f"{prog}: error: {err}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)
        except BrokenPipeError:
            sys.exit(1)
    return run


class ArgumentParser(argparse.ArgumentParser):
    """argparse with its usage errors raised as UserError: one line under `cli`, exit 2."""

    def error(self, message):
        raise UserError(f"{message} (see --help)")
