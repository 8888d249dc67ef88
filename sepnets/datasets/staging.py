"""Outputs of a long conversion that appear together or not at all.

Each output (a database directory or a file) is built under a hidden name beside its final
one (`.NAME.staged`) and moved into place only when every output of the run is complete. An
interrupted or failed run leaves nothing under the final names, and its leftovers are removed
by the next run.
"""
import os
import shutil
from pathlib import Path

from sepnets.caffe import files
from sepnets.errors import UserError


def _remove(path):
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _holds(output, source):
    """True when replacing `output` would destroy `source` (the same path, or a parent of it)."""
    output, source = Path(output).resolve(), Path(source).resolve()
    return output == source or output in source.parents


def up_to_date(outputs, force=False, derived=(), inputs=()):
    """Decides, before any work, what existing outputs mean.

    True when every output exists and `force` is off (nothing to do). Raises UserError when
    only some exist (the user's own files are never replaced without --force), except those
    listed in `derived`: files fully determined by the inputs (a mean of the same data), which
    are simply written again. An output that is (or holds) one of `inputs` is refused.
    """
    outputs = [Path(p) for p in outputs]
    for output in outputs:
        for source in inputs:
            if source is not None and _holds(output, source):
                raise UserError(f"{output}: refusing to replace an input ({source}); "
                                "choose another output name")
    present = [p for p in outputs if p.exists()]
    if force:
        return False
    if outputs and len(present) == len(outputs):
        return True
    derived = {Path(p) for p in derived}
    blocking = [str(p) for p in present if p not in derived]
    if blocking:
        raise UserError(f"{', '.join(blocking)}: already exist(s) while other outputs of this run "
                        "are missing; remove them or pass --force to rebuild everything")
    return False


class StagedOutputs:
    """Context manager: `stage.path(final)` is where to build `final`; on success all staged
    outputs replace their final names, on any error or interrupt they are deleted."""

    def __init__(self, outputs):
        self.outputs = [Path(p) for p in outputs]
        for final in self.outputs:
            files.make_dirs(final.parent)
            _remove(self.path(final))  # left by an interrupted run

    @staticmethod
    def path(final):
        final = Path(final)
        return final.with_name(f".{final.name}.staged")

    def commit(self):
        missing = [str(f) for f in self.outputs if not self.path(f).exists()]
        if missing:
            raise RuntimeError(f"staged outputs never written: {missing}")
        for final in self.outputs:
            try:
                _remove(final)
                os.replace(self.path(final), final)
            except OSError as err:
                raise UserError(f"{final}: cannot move the finished output into place: "
                                f"{err.strerror}") from None

    def discard(self):
        for final in self.outputs:
            _remove(self.path(final))

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.commit()
        else:
            self.discard()
        return False
