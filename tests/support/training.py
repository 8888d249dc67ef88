"""Training runs the tests compare: the engine's `train` command in the test's process, and
the checks on the snapshots they write (weights, momentum history) against a reference's."""
import io

import numpy as np

from sepnets.caffe import files, glog
from sepnets.caffe.db import DatumWriter
from sepnets.caffe.proto import caffe_pb2
from sepnets.engine import commands


def run_engine(argv, cwd, monkeypatch):
    """The engine's `caffe` command in this process; returns its log."""
    log = io.StringIO()
    monkeypatch.chdir(cwd)
    glog.configure(stream=log, min_level=0)
    try:
        assert commands.main([str(a) for a in argv]) == 0
    finally:
        glog.configure(stream=None)
    return log.getvalue()


def write_db(path, images, labels):
    """An LMDB of uint8 (C, H, W) images and their labels."""
    with DatumWriter(path, "lmdb") as out:
        for image, label in zip(images, labels):
            c, h, w = image.shape
            out.put(caffe_pb2.Datum(channels=c, height=h, width=w, data=image.tobytes(),
                                    label=int(label)))
    return path


def assert_models_close(path, ref_path, rtol, exact=()):
    """Every blob within rtol of the reference blob's largest magnitude; layers in `exact`
    bit-identical."""
    ours, ref = files.read_model(path), files.read_model(ref_path)
    assert ours.blobs.keys() == ref.blobs.keys()
    for layer, blobs in ref.blobs.items():
        for i, blob in enumerate(blobs):
            mine = ours.blobs[layer][i].reshape(blob.shape)
            if layer in exact:
                assert np.array_equal(mine, blob), f"{layer}[{i}] is not bit-identical"
            err = np.max(np.abs(mine - blob))
            assert err <= rtol * np.max(np.abs(blob)) + 1e-7, f"{layer}[{i}]: max error {err}"


def assert_history_close(path, ref_path, rtol, atol=1e-9):
    """The .solverstate's iteration, step and history blobs (momentum, or a solver type's
    two histories) against the reference's, each within rtol of its largest magnitude +
    atol; returns ours."""
    ours, ref = files.read_solverstate(path), files.read_solverstate(ref_path)
    assert (ours.iter, ours.current_step) == (ref.iter, ref.current_step)
    assert len(ours.history) == len(ref.history)
    for i, (mine, theirs) in enumerate(zip(ours.history, ref.history)):
        assert mine.shape == theirs.shape, f"history {i}: {mine.shape} vs {theirs.shape}"
        err = np.max(np.abs(mine - theirs))
        assert err <= rtol * np.max(np.abs(theirs)) + atol, f"history {i}: max error {err}"
    return ours
