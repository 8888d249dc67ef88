"""Log lines in Google glog's format, as stock Caffe writes them to stderr.

    I1122 03:04:05.123456  1234 solver.cpp:239] Iteration 100 (2.1 iter/s, 47.6s/100 iters), loss = 0.9

Every message stock Caffe also prints carries the tag Caffe 1.0 prints for it (file:line of
its LOG statement), so tools written against Caffe's logs (parse_log.py, plot_log.py) read
the engine's logs unchanged; the engine's own messages (tag None) carry their Python
file:line, as glog would. GLOG_minloglevel (0 INFO, 1 WARNING, 2 ERROR) is honoured like
glog does, so `GLOG_minloglevel=2` quiets both engines.
"""
import os
import sys
import threading
import time

SEVERITIES = "IWEF"


def number(value):
    """A number as C++ `ostream << float` prints it: %g with 6 significant digits."""
    value = float(value)
    if value != value:
        return "nan"
    if value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    return f"{value:.6g}"


class GLog:
    def __init__(self, stream=None, min_level=None):
        self.stream = stream
        if min_level is None:
            try:
                min_level = int(os.environ.get("GLOG_minloglevel", "0"))
            except ValueError:
                min_level = 0
        self.min_level = min_level

    def write(self, level, tag, message, caller_depth=1):
        """One line; tag None names the caller's file:line (`caller_depth` frames up)."""
        if level < self.min_level:
            return
        if tag is None:
            caller = sys._getframe(caller_depth)
            tag = f"{os.path.basename(caller.f_code.co_filename)}:{caller.f_lineno}"
        now = time.time()
        stamp = time.strftime("%m%d %H:%M:%S", time.localtime(now))
        micros = int((now % 1) * 1e6)
        line = (f"{SEVERITIES[level]}{stamp}.{micros:06d} {threading.get_native_id():>5} "
                f"{tag}] {message}\n")
        stream = self.stream or sys.stderr
        stream.write(line)
        stream.flush()


# The process-wide logger (glog is process-wide too); `configure` redirects or quiets it.
LOG = GLog()


def configure(stream=None, min_level=None):
    LOG.stream = stream
    if min_level is not None:
        LOG.min_level = min_level
    return LOG


def info(tag, message):
    LOG.write(0, tag, message, caller_depth=2)


def warning(tag, message):
    LOG.write(1, tag, message, caller_depth=2)


def error(tag, message):
    LOG.write(2, tag, message, caller_depth=2)
