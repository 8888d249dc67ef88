"""User-facing errors: one line naming the file and what is wrong, no traceback."""
import argparse
import functools
import os
import signal
import sys
import threading

# C0 control characters but the tab, and DEL, as escapes: a name or path from a file cannot
# break a message's one line (or move a terminal's cursor)
_ESCAPES = {c: f"\\x{c:02x}" for c in [*range(32), 0x7F] if c != 9} | {10: "\\n", 13: "\\r"}


def one_line(text):
    """`text` with line breaks and other control characters escaped (\\n, \\r, \\x1b ...)."""
    return str(text).translate(_ESCAPES)


class UserError(Exception):
    """A problem with the user's input (a file, a flag): reported as one line, exit code 2."""

    def lines(self):
        """What `cli` prints after `prog: error: `: the one line."""
        return [one_line(self)]


class ProgramFailed(UserError):
    """A program the toolkit ran (stock Caffe, pycaffe, a training) ended with an error: the
    one line saying so, then the last lines of the program's own output as it printed them."""

    def __init__(self, message, output_lines):
        self.message, self.output_lines = message, list(output_lines)
        super().__init__("\n".join([message, *self.output_lines]))

    def lines(self):
        return [one_line(self.message), *self.output_lines]


class CaffeFileError(UserError):
    """A Caffe file (prototxt, solver, caffemodel, binaryproto, solverstate) that cannot be used."""

    def __init__(self, path, problem):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class Terminated(BaseException):
    """SIGTERM, raised where the command is so that its clean-up (temporary files and
    directories, locks, child processes) runs as for Ctrl-C."""


def _terminate(signum, frame):
    raise Terminated()


def _default_in_child():
    """A forked worker (multiprocessing) ends on SIGTERM as processes do: a Python handler
    only runs between bytecodes, and a worker stuck in C code would never end."""
    if signal.getsignal(signal.SIGTERM) is _terminate:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


os.register_at_fork(after_in_child=_default_in_child)


def cli(main):
    """Runs `main` as a command: a UserError becomes `prog: message` on stderr and exit 2;
    Ctrl-C exits 130 and SIGTERM 143, both after the command's clean-up ran."""
    @functools.wraps(main)
    def run(*args, **kwargs):
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, _terminate)
        try:
            return main(*args, **kwargs)
        except UserError as err:
            prog = (sys.argv[0].rsplit("/", 1)[-1] or "sepnets")
            print(f"{prog}: error: " + "\n".join(err.lines()), file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)
        except Terminated:
            print("terminated", file=sys.stderr)
            sys.exit(143)
        except BrokenPipeError:
            sys.exit(1)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
    return run


class ArgumentParser(argparse.ArgumentParser):
    """argparse with its usage errors raised as UserError: one line under `cli`, exit 2."""

    def error(self, message):
        raise UserError(f"{message} (see --help)")
