"""One run at a time: an exclusive lock on a workspace (models/<name>/) or on a snapshot
prefix, so that two trainings, or a quantization racing a fine-tuning, never mix their files.

The lock is an flock(2) on a small file (sepnets.names: WORKSPACE_LOCK, snapshot_lock), which
the kernel releases when the holder exits, however it exits (a kill -9 included): nothing
stale is left to clean up. The holder writes its PID into the file; a second run does not
wait, it stops at once with one line naming that PID. The file is opened without following
a symbolic link and is never removed (removing it would let a third run lock a new file
while the second still holds the old one).

Within one process the lock is re-entrant (the demo holds its workspace while each step it
runs takes it again); child processes do not inherit it (close-on-exec), so a step may run an
engine that takes its own snapshot-prefix lock.
"""
import errno
import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from sepnets.errors import UserError

_HELD = {}  # real path of a lock file -> [fd, depth]


class Busy(UserError):
    """Another run holds the lock."""


def _holder(fd):
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return text if text.isdigit() else "unknown"


@contextmanager
def exclusive(path, what):
    """Holds the lock file `path` for the duration; `what` names what it protects in the
    message a second run gets ("models/lenet", "snapshot prefix models/lenet/lenet")."""
    path = Path(path)
    key = os.path.realpath(path)
    held = _HELD.get(key)
    if held is not None:
        held[1] += 1
        try:
            yield path
        finally:
            held[1] -= 1
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise UserError(f"{path}: the lock file of {what} is a symbolic link; remove it") from None
        raise UserError(f"{path}: cannot create the lock file of {what}: {err.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        holder = _holder(fd)
        os.close(fd)
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise Busy(f"{what} is in use by another run (PID {holder}); wait for it to finish "
                       f"or stop it (lock: {path})") from None
        raise UserError(f"{path}: cannot lock {what}: {err.strerror}") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass  # a full disk: the lock holds all the same, only the PID is not shown
    _HELD[key] = [fd, 1]
    try:
        yield path
    finally:
        del _HELD[key]
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        os.close(fd)
